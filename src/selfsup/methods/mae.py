"""MAE: encode a random 25% of the patches, reconstruct the values of the other 75% (any token backbone)."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.vit import Block
from ..errors import ConfigError
from ..losses.masked import masked_patch_mse
from ..registry import register
from .base import Batch, Method


@register("method", "mae")
class MAE(Method):
    """Masked autoencoder on a token backbone (the ``tokens`` capability: ``num_patches``,
    ``patch_dim``, ``patchify``, ``forward_tokens(x, keep)``, ``decoder_positions(dim)``): image
    patches of a ViT, series patches of a patch transformer; written once for every modality.

    Stages: ``random_keep`` draws per-sample random patch subsets (argsort of uniform noise);
    the backbone encodes only the kept patches; ``forward_decoder`` embeds them to `decoder_dim`,
    puts a shared learned mask token at every hidden position, adds the backbone's fixed sin-cos
    positions (2-D for images, 1-D for series) and runs `decoder_depth` transformer blocks to predict
    each patch's values; the loss is ``masked_patch_mse`` on the hidden patches, against per-patch
    normalized targets (`norm_pix`).

    Paper defaults: mask_ratio 0.75, decoder 512 wide, 8 blocks, 16 heads. The decoder is thrown
    away after pretraining and only needs to be deep enough to take pixel detail off the encoder;
    for 28x28 images with a tiny ViT, configs shrink it (e.g. 128 wide, 2 blocks, 4 heads).
    The mask noise comes from the global torch RNG, which the trainer seeds at every step.
    """

    requires = ("tokens",)  # a backbone that encodes a subset of its patch tokens (see the docstring)
    preferred_backbones = {"series": "patchtst"}  # backbone.name=auto on series: the patch transformer
    paper = ("He, Chen, Xie, Li, Dollár, Girshick. Masked Autoencoders Are Scalable Vision Learners. "
             "CVPR 2022, arXiv:2111.06377")
    family = "masked"
    batch_terms = "local"  # per-patch reconstruction; each rank draws its own masks
    aux_outputs = ()  # what auxiliaries can read from its forward (see methods.base)
    views = {"n_global": 1, "n_local": 0}

    def __init__(self, backbone: nn.Module, mask_ratio: float = 0.75, decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_heads: int = 16, norm_pix: bool = True):
        super().__init__(backbone)
        if not hasattr(backbone, "forward_tokens"):
            raise ConfigError(f"mae needs a token backbone such as vit_tiny, got {type(backbone).__name__}.",
                              "use --backbone vit_tiny (with patch_size=4 for 28 or 32 px images).")
        num_patches = backbone.num_patches
        self.num_keep = int(num_patches * (1 - mask_ratio))
        if not 0 < mask_ratio < 1 or self.num_keep < 1:
            raise ConfigError(f"mae mask_ratio {mask_ratio} leaves {self.num_keep} of {num_patches} patches visible.",
                              "use a mask_ratio in (0, 1) that keeps at least one patch (the paper uses 0.75).")
        if decoder_dim % decoder_heads:
            raise ConfigError(f"mae decoder_dim {decoder_dim} is not divisible by decoder_heads {decoder_heads}.",
                              "choose decoder_dim as a multiple of decoder_heads (e.g. 512 and 16).")
        self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
        patch_dim = backbone.patch_dim  # P: values per patch
        self.decoder_embed = nn.Linear(backbone.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos", backbone.decoder_positions(decoder_dim)[None], persistent=False)  # (1, 1+N, Dd)
        self.decoder = nn.Sequential(*(Block(decoder_dim, decoder_heads, mlp_ratio=4.0) for _ in range(decoder_depth)))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, patch_dim)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder.modules()]:
            if isinstance(m, nn.Linear):  # xavier for every linear map, as in the paper's code
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def random_keep(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample random patches to keep (B, N') and the mask (B, N), 1 where a patch is hidden."""
        noise = torch.rand(batch_size, self.backbone.num_patches, device=device)  # (B, N)
        keep = noise.argsort(dim=1)[:, :self.num_keep]  # (B, N'): the lowest-noise patches stay visible
        mask = torch.ones_like(noise).scatter_(1, keep, 0.0)
        return keep, mask

    def forward_decoder(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encoded (B, 1 + N', D) tokens of the kept patches `keep` (B, N') -> pixel predictions (B, N, P)."""
        tokens = self.decoder_embed(latent)  # (B, 1 + N', Dd)
        cls, kept = tokens[:, :1], tokens[:, 1:]
        B, N, Dd = kept.shape[0], self.backbone.num_patches, kept.shape[2]
        full = self.mask_token.to(kept.dtype).expand(B, N, Dd)
        full = full.scatter(1, keep[:, :, None].expand(-1, -1, Dd), kept)  # (B, N, Dd): kept tokens back in place
        tokens = torch.cat([cls, full], dim=1) + self.decoder_pos  # (B, 1 + N, Dd)
        tokens = self.decoder_norm(self.decoder(tokens))
        return self.decoder_pred(tokens[:, 1:])  # (B, N, P), class token dropped

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.views[0]  # (B, C, H, W) images, (B, C, T) series, ...
        keep, mask = self.random_keep(x.shape[0], x.device)
        latent = self.backbone.forward_tokens(x, keep)  # (B, 1 + N', D)
        pred = self.forward_decoder(latent, keep)  # (B, N, P)
        return {"loss": masked_patch_mse(pred, self.backbone.patchify(x), mask, norm_pix=self.norm_pix)}
