"""Vision Transformer (Dosovitskiy et al., 2021) as a token backbone: vit_tiny, vit_small.

Pre-norm blocks with ``F.scaled_dot_product_attention`` (fused kernels where the device has them),
a class token, and fixed 2-D sin-cos positional embeddings as in MAE (He et al., 2022): they need
no training, so the positions of masked-out patches stay meaningful to a decoder.

Token interface (used by masked objectives such as MAE and I-JEPA):
``patchify(x) -> (B, N, P)`` pixel patches, ``unpatchify`` its inverse, and
``forward_tokens(x, keep) -> (B, 1 + N', D)`` which encodes only the patches at ``keep``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import backbone

POOLS = ("cls", "mean")


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, dim): sin of dim/2 frequencies, then cos of the same ones."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    angles = positions.double()[:, None] * omega[None, :]  # (M, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D positional embedding (1 + grid_size**2 or grid_size**2, dim), float32.

    Half the channels encode the row, half the column; row-major patch order (as ``patchify``).
    The class token, when asked for, gets the zero vector.
    """
    if dim % 4:
        raise ConfigError(f"a 2-D sin-cos positional embedding needs dim divisible by 4, got {dim}.",
                          "choose dim as a multiple of 4 (e.g. 192 or 384).")
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], dim=1)  # (N, dim)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D), optional (B, N) bool keys that may be attended to (False: ignored) -> (B, N, D)."""
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, N, D/heads)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, N)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)  # (B, heads, N, D/heads)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """(B, C, H, W) -> (B, D): the class token (pool="cls") or the mean patch token (pool="mean").

    Square images of side ``image_size`` (required), cut into (image_size / patch_size)**2 patches.
    """

    def __init__(self, in_channels: int = 3, image_size: int | None = None, patch_size: int = 16, dim: int = 192,
                 depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, pool: str = "cls"):
        super().__init__()
        if image_size is None:
            raise ConfigError("a ViT backbone needs image_size (the side of the square input images).",
                              "pass image_size, e.g. 28 for Fashion-MNIST or 32 for CIFAR (with patch_size=4).")
        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} is not divisible by patch_size {patch_size}.",
                              f"choose a patch_size that divides {image_size} (e.g. 4 for 28 or 32 px images).")
        if dim % heads:
            raise ConfigError(f"ViT dim {dim} is not divisible by heads {heads}.", "choose dim as a multiple of heads.")
        if pool not in POOLS:
            raise ConfigError(f"unknown ViT pool {pool!r}.", f"use one of {', '.join(POOLS)}.")
        self.in_channels, self.image_size, self.patch_size = in_channels, image_size, patch_size
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2
        self.dim, self.pool = dim, pool
        # A stride-p conv is a linear map of each flattened patch: same as Linear on patchify's output.
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, self.grid_size)[None], persistent=False)  # (1, 1+N, D)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        # MAE's choices: xavier for every linear map (the patch embedding seen as one), small normal class token.
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def patch_dim(self) -> int:
        """P: the values in one patch (the width of ``patchify``'s output, what MAE reconstructs)."""
        return self.patch_size**2 * self.in_channels

    def decoder_positions(self, dim: int) -> torch.Tensor:
        """(1 + N, dim) fixed 2-D sin-cos positions of the class token and the patches, for a decoder."""
        return sincos_pos_embed_2d(dim, self.grid_size)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, P) with P = patch_size**2 * C, each patch flattened as (p, p, C)."""
        B, C, H, W = x.shape
        p, g = self.patch_size, self.grid_size
        x = x.reshape(B, C, g, p, g, p)  # (B, C, gh, p, gw, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(B, g * g, p * p * C)  # (B, gh, gw, p, p, C) -> (B, N, P)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, P) -> (B, C, H, W), the inverse of ``patchify``."""
        B = patches.shape[0]
        p, g, C = self.patch_size, self.grid_size, self.in_channels
        x = patches.reshape(B, g, g, p, p, C)  # (B, gh, gw, p, p, C)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(B, C, g * p, g * p)  # (B, C, gh, p, gw, p) -> (B, C, H, W)

    def forward_tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W), keep (B, N') patch indices or None -> (B, 1 + N', D) after the final norm.

        Positions are added before the selection, so each kept token knows where it came from.
        """
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]  # (B, D, g, g) -> (B, N, D)
        if keep is not None:
            tokens = tokens.gather(1, keep[:, :, None].expand(-1, -1, self.dim))  # (B, N', D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        tokens = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(x)  # (B, 1 + N, D)
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)


@backbone("vit_tiny", "image", provides=("tokens",))
def vit_tiny(in_channels: int = 3, image_size: int | None = None, patch_size: int = 16, dim: int = 192,
             depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, pool: str = "cls") -> ViT:
    """ViT-Ti: D = 192, 12 blocks, 3 heads (5.49 M parameters with patch 16 and 3 channels)."""
    return ViT(in_channels, image_size, patch_size, dim, depth, heads, mlp_ratio, pool)


@backbone("vit_small", "image", provides=("tokens",))
def vit_small(in_channels: int = 3, image_size: int | None = None, patch_size: int = 16, dim: int = 384,
              depth: int = 12, heads: int = 6, mlp_ratio: float = 4.0, pool: str = "cls") -> ViT:
    """ViT-S: D = 384, 12 blocks, 6 heads (21.59 M parameters with patch 16 and 3 channels)."""
    return ViT(in_channels, image_size, patch_size, dim, depth, heads, mlp_ratio, pool)
