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
