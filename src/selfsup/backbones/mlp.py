"""``mlp``: the table encoder, an MLP over numeric columns and embedded categorical codes.

Input (B, F): one column per table feature, as :class:`selfsup.data.TableDataset` holds them,
numeric columns standardized by the Encoder, categorical columns as integer codes (0 = missing
or unseen). Each categorical column gets its own ``embed_dim``-wide embedding (one shared table
with per-column offsets, so the lookup is a single call); the numeric values and the embeddings
are concatenated and go through ``depth`` blocks of Linear + BatchNorm + ReLU of width ``width``.
The default, 4 x 256, is the encoder of SCARF (Bahri et al., "SCARF: Self-Supervised Contrastive
Learning using Random Feature Corruption", ICLR 2022).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import backbone


@backbone("mlp", "table")
class TableMLP(nn.Module):
    """(B, F) table rows -> (B, width) features."""


    def __init__(self, in_channels: int, image_size: int | None = None, cardinalities: list[int] | None = None,
                 width: int = 256, depth: int = 4, embed_dim: int = 8, dropout: float = 0.0):
        super().__init__()
        cards = [0] * in_channels if cardinalities is None else [int(c) for c in cardinalities]
        if len(cards) != in_channels:
            raise ConfigError(f"mlp got {len(cards)} column cardinalities for {in_channels} columns.",
                              "build it from the table's input_spec().")
        if width < 1 or depth < 1 or embed_dim < 1 or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"mlp needs width, depth, embed_dim >= 1 and 0 <= dropout < 1, got {width}, {depth}, "
                              f"{embed_dim}, {dropout}.", "use e.g. width=256 depth=4 embed_dim=8.")
        numeric = [j for j, c in enumerate(cards) if c == 0]
        categorical = [j for j, c in enumerate(cards) if c > 0]
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("categorical_index", torch.tensor(categorical, dtype=torch.long), persistent=False)
        sizes = torch.tensor([cards[j] for j in categorical], dtype=torch.long)
        self.register_buffer("offsets", torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]]) if len(sizes) else sizes,
                             persistent=False)
        self.register_buffer("max_code", sizes - 1, persistent=False)
        self.embedding = nn.Embedding(int(sizes.sum()), embed_dim) if categorical else None
        layers: list[nn.Module] = []
        d_in = len(numeric) + len(categorical) * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(d_in, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d_in = width
        self.layers = nn.Sequential(*layers)
        self.dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, self.numeric_index]]  # (B, F_num)
        if self.embedding is not None:
            codes = x[:, self.categorical_index].round().long()  # (B, F_cat)
            codes = torch.minimum(codes.clamp_min(0), self.max_code)  # a code the table never had -> clamp
            parts.append(self.embedding(codes + self.offsets).flatten(1))  # (B, F_cat * embed_dim)
        return self.layers(torch.cat(parts, dim=1).to(self.layers[0].weight.dtype))
