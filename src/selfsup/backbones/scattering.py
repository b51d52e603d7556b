"""ScatNet: a fixed wavelet scattering front-end with a small trainable adapter (``scatnet``).

From ScatSimCLR (Kinakh, Taran, Voloshynovskiy, "ScatSimCLR: self-supervised contrastive learning
with pretext task regularization for small-scale datasets", ICCV Workshops 2021, arXiv:2108.13939):
replace SimCLR's ResNet by a hand-crafted, geometrically stable 2-D scattering transform (Mallat's
ScatNet: cascades of Morlet wavelet convolutions, complex modulus and a low-pass average) and learn
only a small "adaptive network" on its coefficients, so that far fewer parameters are trained.

    x (B, C, H, W) -> S_J x (B, C * K, H / 2^J, W / 2^J)   fixed, K = 1 + J L + L^2 J (J - 1) / 2
      -> BatchNorm -> conv3x3 (w) + BN + ReLU -> `blocks` residual blocks (2w) -> `blocks` (4w)
      -> global average pool -> (B, D), D = 4w

The scattering is kymatio's ``Scattering2D`` at order 2 with J scales and L orientations (the
paper's J = 2, L = 8: K = 81 channels per input channel at a quarter of the resolution). The adapter
follows the authors' smallest model, ScatSimCLR-8: a 3x3 conv to 32 channels, then 4 residual blocks
at 64 and 4 at 128 channels (w = 32, blocks = 4, the defaults here). Differences from the paper:

- global average pooling to D = 4w (128) features, the backbone contract of this package, where the
  authors keep a 4 x 4 adaptive average pool and flatten it (2048 features); the projector is the
  method's, not part of the backbone;
- a BatchNorm on the scattering coefficients before the adapter (``scatter_norm``): the authors'
  code declares one but its forward does not use it; the zeroth-order coefficient (a local mean)
  is one to two orders of magnitude larger than the second-order ones, and normalizing them
  per channel lets the first conv see them on one scale.

The scattering has no parameters and no gradient: it runs under ``no_grad`` (unless the input itself
requires a gradient), in float32 with autocast off (kymatio's FFTs have no bf16 kernels, and its
filters are float32), on a contiguous copy of the input (kymatio rejects channels_last tensors); its
output is put back in the adapter's memory format. Its filters are constants computed by kymatio from
(J, L, H, W); they are kept in a per-(size, device) cache OUTSIDE the module tree, so they are neither
parameters (the optimizer never sees them) nor state_dict entries: checkpoints and exported encoders
hold only the adapter (0 bytes of scattering; the filters would be 0.09 MB at 28 px, J = 2, L = 8,
1.4 MB at 96 px, L = 16), teacher/student copies stay buffer-for-buffer equal, and any input size
>= 2^J works (global and local views). An encoder therefore rebuilds its filters from its spec with
the installed kymatio (version >= 0.3).

kymatio is optional: ``pip install selfsup[scatter]``; it is imported only when the backbone is built.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .resnet import BasicBlock
from .base import backbone


def _scattering_class():
    """kymatio's torch Scattering2D, or a ConfigError naming the install command."""
    try:
        # The 2-D frontend module directly: kymatio 0.3's `kymatio.torch` also imports its 3-D
        # harmonic scattering, which needs scipy.special.sph_harm, removed in SciPy 1.17.
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D
        return ScatteringTorch2D
    except ImportError as first:
        try:
            from kymatio.torch import Scattering2D
            return Scattering2D
        except ImportError:
            raise ConfigError(f"the scatnet backbone needs kymatio's Scattering2D, which could not be imported ({first}).",
                              "pip install selfsup[scatter]  (installs kymatio>=0.3)") from None


def scattering_channels(in_channels: int, J: int, L: int) -> int:
    """Channels of an order-2 scattering: per input channel 1 (order 0) + J L (order 1) + L^2 J (J - 1) / 2 (order 2)."""
    return in_channels * (1 + J * L + L * L * J * (J - 1) // 2)


@backbone("scatnet", "image", provides=("feature_maps",))
class ScatNet(nn.Module):
    """(B, C, H, W) -> (B, 4 * width): fixed order-2 scattering (J scales, L angles) + trainable adapter.

    ``blocks`` residual blocks at 2w then at 4w channels (paper: w = 32, 4 + 4 blocks); works for any
    input of at least 2^J pixels a side (output maps of about H / 2^J).
    """

    def __init__(self, in_channels: int = 3, image_size: int | None = None, J: int = 2, L: int = 8,
                 width: int = 32, blocks: int = 4, scatter_norm: bool = True):
        super().__init__()
        if J < 1 or L < 1:
            raise ConfigError(f"scatnet needs J >= 1 scales and L >= 1 angles, got J={J}, L={L}.",
                              "use the paper's J=2, L=8 (or L=16 for larger images).")
        if width < 1 or blocks < 0:
            raise ConfigError(f"scatnet needs width >= 1 and blocks >= 0, got width={width}, blocks={blocks}.",
                              "use the paper's width=32, blocks=4, or smaller for quick tests.")
        self._scattering_cls = _scattering_class()  # fails here, at build time, when kymatio is missing
        self.J, self.L = J, L
        self._filters: dict[tuple[int, int, str], nn.Module] = {}  # (H, W, device) -> kymatio module; not a submodule
        if image_size is not None:
            self._scattering(image_size, image_size, torch.device("cpu"))  # checks the size now
        channels = scattering_channels(in_channels, J, L)
        self.scattering_channels = channels
        self.scatter_norm = nn.BatchNorm2d(channels) if scatter_norm else nn.Identity()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.layer1 = self._stage(width, 2 * width, blocks)
        self.layer2 = self._stage(2 * width, 4 * width, blocks)
        self.map_dims = [2 * width, 4 * width]  # channels of each forward_maps entry
        self.dim = 4 * width

    @staticmethod
    def _stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
        # The first block projects c_in -> c_out through a 1x1 shortcut, as in the authors' adapter; stride 1
        # throughout: the scattering has already divided the resolution by 2^J.
        return nn.Sequential(*[BasicBlock(c_in if i == 0 else c_out, c_out) for i in range(blocks)])

    def _scattering(self, height: int, width: int, device: torch.device) -> nn.Module:
        key = (height, width, str(device))
        if key not in self._filters:
            if min(height, width) < 2 ** self.J:
                raise ConfigError(f"scatnet with J={self.J} needs images of at least {2 ** self.J} pixels a side, "
                                  f"got {height} x {width}.", "use a smaller J or larger images (views.size).")
            self._filters[key] = self._scattering_cls(J=self.J, shape=(height, width), L=self.L, max_order=2).to(device)
        return self._filters[key]

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> float32 (B, C * K, H', W') scattering coefficients, in float32 whatever the autocast."""
        height, width = x.shape[-2:]
        scattering = self._scattering(height, width, x.device)
        with torch.autocast(device_type=x.device.type, enabled=False), \
                torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            s = scattering(x.float().contiguous())  # (B, C, K, H', W')
        s = s.flatten(1, 2)  # (B, C * K, H', W'), channel c * K + k
        if self.stem[0].weight.is_contiguous(memory_format=torch.channels_last) and not self.stem[0].weight.is_contiguous():
            s = s.contiguous(memory_format=torch.channels_last)  # follow the adapter's memory format
        return s

    def forward_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The adapter's two stage outputs (B, 2w, H', W') and (B, 4w, H', W'); the last is what ``forward`` pools."""
        h = self.layer1(self.stem(self.scatter_norm(self.scatter(x))))
        return [h, self.layer2(h)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x)[-1].mean(dim=(2, 3))  # (B, 4w, H', W') -> (B, D)
