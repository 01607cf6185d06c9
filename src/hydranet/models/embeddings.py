"""Numerical feature embeddings: a trunk front-end that turns each scalar input feature into a vector.

PLR (Gorishniy, Rubachev & Babenko, "On Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022):
per feature, Periodic [cos 2πcx, sin 2πcx] with trained frequencies c, then a Linear layer of its own, then ReLU.
An MLP on these embeddings fits the sharp, non-smooth functions of table columns that it fits poorly on raw numbers.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options


class PLROptions(Options):
    """`model.trunk: {name: mlp, embedding: plr, plr: {…}}`; defaults of the authors' rtdl_num_embeddings package."""

    frequencies: int = Field(48, ge=1, description="PLR: trained frequencies per feature (k)")
    sigma: float = Field(0.01, gt=0, description="PLR: the frequencies start as N(0, sigma²) draws (the paper tunes it per data set)")
    dim: int = Field(24, ge=1, description="PLR: width of each feature's embedding (d)")


class PLR(nn.Module):
    """(B, F) → (B, F·dim): each feature x ↦ ReLU(W_f [cos 2πc_f x, sin 2πc_f x] + b_f), weights per feature."""

    def __init__(self, features: int, cfg: PLROptions):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(features, cfg.frequencies) * cfg.sigma)  # (F, k)
        bound = 1 / math.sqrt(2 * cfg.frequencies)  # nn.Linear's init for fan-in 2k, per feature
        self.weight = nn.Parameter(torch.empty(features, 2 * cfg.frequencies, cfg.dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(features, cfg.dim).uniform_(-bound, bound))
        self.out_dim = features * cfg.dim

    def forward(self, x: Tensor) -> Tensor:
        angles = 2 * math.pi * x.unsqueeze(-1) * self.frequencies  # (B, F, k)
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (B, F, 2k)
        embedded = torch.einsum("bfk,fkd->bfd", periodic, self.weight) + self.bias  # (B, F, d)
        return torch.relu(embedded).flatten(1)  # (B, F·d)


class CategoryEmbedding(nn.Module):
    """Split an encoded row into its numbers and its category codes, and look each code's vector up.

    `cardinalities` has one entry per model input (`TableEncoder.cardinalities`): 0 for a number, else the codes of
    that category column (0: missing or unseen, its own learned vector). One table holds every column's codes at
    its own offset, so the lookup is one gather. (B, F) → numbers (B, N), vectors (B, C, dim).
    """

    def __init__(self, cardinalities: tuple[int, ...], dim: int):
        super().__init__()
        sizes = torch.tensor(cardinalities, dtype=torch.long)
        counts = sizes[sizes > 0]
        # layout, not weights: rebuilt from the data info, so kept out of the state dict
        self.register_buffer("numeric", torch.nonzero(sizes == 0).flatten(), persistent=False)
        self.register_buffer("coded", torch.nonzero(sizes > 0).flatten(), persistent=False)
        self.register_buffer("offsets", torch.cumsum(counts, 0) - counts, persistent=False)
        bound = 1 / math.sqrt(dim)  # rtdl's CategoricalEmbeddings init
        self.vectors = nn.Parameter(torch.empty(int(counts.sum()), dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        codes = x[:, self.coded].long() + self.offsets  # (B, C): each column's codes at its offset
        return x[:, self.numeric], self.vectors[codes]  # (B, N), (B, C, dim)


class EmbeddedColumns(nn.Module):
    """The mlp's front-end for rows with category codes: (B, F) → (B, numbers [PLR-embedded] + C·dim)."""

    def __init__(self, cardinalities: tuple[int, ...], dim: int, plr: PLROptions | None):
        super().__init__()
        self.categories = CategoryEmbedding(cardinalities, dim)
        numbers = len(self.categories.numeric)
        self.plr = PLR(numbers, plr) if plr is not None and numbers else None
        self.out_dim = (self.plr.out_dim if self.plr is not None else numbers) + len(self.categories.coded) * dim

    def forward(self, x: Tensor) -> Tensor:
        numbers, vectors = self.categories(x)
        if self.plr is not None:
            numbers = self.plr(numbers)
        return torch.cat([numbers, vectors.flatten(1)], dim=1)
