"""Time-series backbones: (B, C, T) normalized series -> (B, D) features, and (B, T, D) per timestep.

NaN in the input marks a missing value or the padding after a shorter series' end (see
``data/series.py``): each backbone zeroes it after the input projection, as TS2Vec does, and pools
only over observed timesteps. Steps past a series' end are kept at zero through every layer (and
are no attention keys in the patch transformer), so a series' features do not depend on how far
its tensor is padded: the same series gives the same features alone, in a batch of longer ones, or
in a test split padded to another length (in eval mode; ResNet1d's BatchNorm statistics during
training still count the padding). Every backbone here provides ``timesteps`` (``forward_steps(x)``:
one representation per timestep, what TS2Vec's and TS-TCC's temporal losses use); the patch
transformer also provides ``tokens`` (patches with positions, for MAE).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import backbone
from .vit import Block, sincos_1d


def observed_steps(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, T) bool: the timesteps where any channel is observed (not NaN)."""
    return ~torch.isnan(x).all(dim=1)


def inside_steps(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, T) bool: the steps up to each series' last observed one (False: padding after its end)."""
    seen = observed_steps(x).to(torch.int8)
    return seen.flip(1).cummax(dim=1).values.flip(1).bool()


def masked_max(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Max over time of (B, T, D) at the (B, T) `keep` steps; a series with none gives zeros."""
    filled = h.masked_fill(~keep[:, :, None], float("-inf")).amax(dim=1)  # (B, D)
    return torch.where(torch.isfinite(filled), filled, torch.zeros_like(filled))


def masked_mean(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, D) at the (B, T) `keep` steps; a series with none gives zeros."""
    w = keep.to(h.dtype)[:, :, None]  # (B, T, 1)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class SamePadConv1d(nn.Module):
    """A dilated 1-D convolution whose output has the input's length (odd or even receptive field)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=field // 2, dilation=dilation)
        self.trim = 1 if field % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[:, :, :y.shape[2] - self.trim] if self.trim else y


class DilatedBlock(nn.Module):
    """GELU -> dilated conv -> GELU -> dilated conv, plus the (projected) input."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, project: bool):
        super().__init__()
        self.conv1 = SamePadConv1d(c_in, c_out, kernel_size, dilation)
        self.conv2 = SamePadConv1d(c_out, c_out, kernel_size, dilation)
        self.project = nn.Conv1d(c_in, c_out, 1) if project or c_in != c_out else None

    def forward(self, x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """(B, C, T) zero past each series' end, (B, 1, T) float 0/1 `inside` -> (B, C', T), zero there too."""
        skip = x if self.project is None else self.project(x)
        h = self.conv1(F.gelu(x)) * inside  # a zero-padded tensor boundary, wherever the series ends
        return (self.conv2(F.gelu(h)) + skip) * inside


class DilatedCNN(nn.Module):
    """TS2Vec's encoder (Yue et al., "TS2Vec: Towards Universal Representation of Time Series",
    AAAI 2022, arXiv:2106.10466): a linear input projection to `hidden_dim` per timestep, then
    `depth` residual blocks of two dilated convolutions (kernel 3, dilation 2**i, GELU) and a last
    block to `dim`; dropout 0.1 on the output. The paper's defaults: hidden 64, depth 10, dim 320.
    ``forward_steps(x, mask)`` zeroes the latent at unobserved steps and at steps `mask` hides
    (TS2Vec's timestamp masking), ``forward`` max-pools the steps (the paper's instance-level
    representation)."""

    def __init__(self, in_channels: int, length: int | None = None, hidden_dim: int = 64, dim: int = 320,
                 depth: int = 10, kernel_size: int = 3, dropout: float = 0.1):
        super().__init__()
        if min(hidden_dim, dim, depth, kernel_size) < 1 or not 0 <= dropout < 1:
            raise ConfigError(f"ts2vec_cnn needs positive widths, depth and kernel and 0 <= dropout < 1, got "
                              f"hidden_dim={hidden_dim}, dim={dim}, depth={depth}, kernel_size={kernel_size}, "
                              f"dropout={dropout}.", "use e.g. hidden_dim=64, dim=320, depth=10.")
        self.dim = dim
        self.input = nn.Linear(in_channels, hidden_dim)
        widths = [hidden_dim] * depth + [dim]
        self.blocks = nn.Sequential(*(DilatedBlock(widths[i - 1] if i else hidden_dim, widths[i], kernel_size, 2 ** i,
                                                   project=i == len(widths) - 1) for i in range(len(widths))))
        self.dropout = nn.Dropout(dropout)

    def forward_steps(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T), optional (B, T) bool steps to keep -> (B, T, D)."""
        keep = observed_steps(x)
        if mask is not None:
            keep = keep & mask
        h = self.input(torch.nan_to_num(x, nan=0.0).transpose(1, 2))  # (B, T, hidden)
        h = h * keep[:, :, None].to(h.dtype)  # masked steps carry nothing into the convolutions
        inside = inside_steps(x)[:, None, :].to(h.dtype)  # (B, 1, T)
        h = h.transpose(1, 2)
        for block in self.blocks:
            h = block(h, inside)
        return self.dropout(h).transpose(1, 2)  # (B, T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_max(self.forward_steps(x), observed_steps(x))


class ResidualBlock1d(nn.Module):
    """Three conv-BN(-ReLU) layers (kernels 8, 5, 3) and a 1x1 conv-BN shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.convs = nn.ModuleList(SamePadConv1d(c_in if i == 0 else c_out, c_out, k) for i, k in enumerate((8, 5, 3)))
        self.norms = nn.ModuleList(nn.BatchNorm1d(c_out) for _ in range(3))
        self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """(B, C, T) zero past each series' end, (B, 1, T) float 0/1 `inside` -> (B, C', T), zero there too."""
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(conv(h)) * inside
            if i < 2:
                h = F.relu(h)
        return F.relu(h + self.shortcut(x) * inside)


class ResNet1d(nn.Module):
    """The 1-D ResNet of Wang, Yan, Oates ("Time Series Classification from Scratch with Deep Neural
    Networks: A Strong Baseline", IJCNN 2017): three residual blocks of 64, 128, 128 channels with
    kernels 8, 5, 3, then global average pooling over the observed steps."""

    def __init__(self, in_channels: int, length: int | None = None, width: int = 64):
        super().__init__()
        widths = (width, 2 * width, 2 * width)
        self.dim = widths[-1]
        self.blocks = nn.ModuleList(ResidualBlock1d(c_in, c_out) for c_in, c_out in zip((in_channels, *widths[:-1]), widths))

    def forward_steps(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = observed_steps(x)
        if mask is not None:
            keep = keep & mask
        h = torch.nan_to_num(x, nan=0.0) * keep[:, None, :].to(x.dtype)  # (B, C, T)
        inside = inside_steps(x)[:, None, :].to(h.dtype)  # (B, 1, T)
        for block in self.blocks:
            h = block(h, inside)
        return h.transpose(1, 2)  # (B, T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.forward_steps(x), observed_steps(x))


class PatchTransformer(nn.Module):
    """PatchTST-style tokens (Nie, Nguyen, Sinthong, Kalagnanam, "A Time Series is Worth 64 Words",
    ICLR 2023): the series is cut into non-overlapping patches of `patch_len` steps (all channels of
    a patch together: P = patch_len * C values), each embedded linearly, with fixed 1-D sin-cos
    positions and a class token, through `depth` transformer blocks; ``forward`` averages the
    tokens of patches with an observed step. The tokens interface is the ViT's, so MAE runs on it:
    ``patchify`` (targets), ``forward_tokens(x, keep)``, ``decoder_positions(dim)``. Channel mixing
    per patch (not PatchTST's channel independence) keeps one token sequence per series."""

    def __init__(self, in_channels: int, length: int | None = None, patch_len: int = 16, dim: int = 128,
                 depth: int = 3, heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        if length is None:
            raise ConfigError("patchtst needs the series length.", "build it from a series dataset (input_spec()).")
        if patch_len < 1 or dim % heads:
            raise ConfigError(f"patchtst needs patch_len >= 1 and dim divisible by heads, got {patch_len}, {dim}, {heads}.",
                              "use e.g. patch_len=16, dim=128, heads=4.")
        self.in_channels, self.patch_len, self.dim = in_channels, patch_len, dim
        self.num_patches = math.ceil(length / patch_len)
        self.embed = nn.Linear(in_channels * patch_len, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.patch_len

    def decoder_positions(self, dim: int, n: int | None = None) -> torch.Tensor:
        """(1 + N, dim) fixed 1-D sin-cos positions: the class token at 0, patch i at i + 1."""
        n = self.num_patches if n is None else n
        return sincos_1d(dim, torch.arange(n + 1, dtype=torch.float64)).float()

    def _inside_patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, N) bool: the patches that start before each series' end."""
        return inside_steps(x)[:, ::self.patch_len]

    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T) -> ((B, N, P) values with NaN as 0, (B, N) whether a patch has an observed step)."""
        B, C, T = x.shape
        pad = -T % self.patch_len
        if pad:
            x = F.pad(x, (0, pad), value=float("nan"))
        n = x.shape[2] // self.patch_len
        patches = x.reshape(B, C, n, self.patch_len).permute(0, 2, 3, 1).reshape(B, n, self.patch_len * C)  # (B, N, L C)
        seen = ~torch.isnan(patches).all(dim=2)
        return torch.nan_to_num(patches, nan=0.0), seen

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, N, P), each patch its steps' channels (missing values as 0)."""
        return self._patches(x)[0]

    def forward_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T), keep (B, N') patch indices or None -> (B, 1 + N', D) after the final norm."""
        patches, _ = self._patches(x)
        pos = self.decoder_positions(self.dim, patches.shape[1]).to(patches.device, patches.dtype)  # (1 + N, D)
        tokens = self.embed(patches) + pos[1:]  # (B, N, D)
        inside = self._inside_patches(x)  # (B, N): patches past a series' end are no attention keys
        if keep is not None:
            tokens = tokens.gather(1, keep[:, :, None].expand(-1, -1, self.dim))
            inside = inside.gather(1, keep)
        cls = (self.cls_token + pos[:1]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        key_mask = torch.cat([inside.new_ones(inside.shape[0], 1), inside], dim=1)  # (B, 1 + N')
        for block in self.blocks:
            tokens = block(tokens, key_mask)
        return self.norm(tokens)

    def forward_steps(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, T, D): each step gets its patch's token."""
        tokens = self.forward_tokens(x)[:, 1:]  # (B, N, D)
        return tokens.repeat_interleave(self.patch_len, dim=1)[:, :x.shape[2]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, seen = self._patches(x)
        return masked_mean(self.forward_tokens(x)[:, 1:], seen)


@backbone("ts2vec_cnn", "series", provides=("timesteps",))
def ts2vec_cnn(in_channels: int, length: int | None = None, hidden_dim: int = 64, dim: int = 320, depth: int = 10,
               kernel_size: int = 3, dropout: float = 0.1) -> DilatedCNN:
    """TS2Vec's dilated CNN (320-d, 10 blocks of 64)."""
    return DilatedCNN(in_channels, length, hidden_dim, dim, depth, kernel_size, dropout)


@backbone("resnet1d", "series", provides=("timesteps",))
def resnet1d(in_channels: int, length: int | None = None, width: int = 64) -> ResNet1d:
    """The 1-D ResNet baseline (64, 128, 128 channels)."""
    return ResNet1d(in_channels, length, width)


@backbone("patchtst", "series", provides=("timesteps", "tokens"))
def patchtst(in_channels: int, length: int | None = None, patch_len: int = 16, dim: int = 128, depth: int = 3,
             heads: int = 4, mlp_ratio: float = 4.0) -> PatchTransformer:
    """A patch transformer over series patches (tokens for MAE)."""
    return PatchTransformer(in_channels, length, patch_len, dim, depth, heads, mlp_ratio)
