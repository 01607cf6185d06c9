"""The `ft_transformer` trunk (Gorishniy, Rubachev, Khrulkov & Babenko, "Revisiting Deep Learning Models for Tabular
Data", NeurIPS 2021): one token per table column, a [CLS] token, the transformer blocks of models/attention.py.

A numeric input x_j becomes the token x_j·w_j + b_j, a category code its column's learned vector + b_j; no position
is added, so the columns are a set: which column a token is comes from its own weights, not from its place.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.errors import UserError
from hydranet.models.attention import Encoder
from hydranet.models.embeddings import CategoryEmbedding
from hydranet.registry import register


class FTTransformerOptions(Options):
    """Options of `model.trunk: {name: ft_transformer, …}`; the paper's default is width 192 with 3 blocks and 8
    heads, narrowed here to 64 so that a 2-core CPU trains Adult in minutes."""

    width: int = Field(64, ge=1, description="token width (d)")
    depth: int = Field(3, ge=1, description="transformer blocks")
    heads: int = Field(8, ge=1, description="attention heads (width must be a multiple)")
    mlp_ratio: float = Field(4 / 3, gt=0, description="hidden width of each block's MLP as a multiple of width (the paper's 4/3)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the attention weights and on each block's branches")


class FeatureTokenizer(nn.Module):
    """(B, F) encoded row → (B, F, width) tokens: numbers x·w + b, category codes their vector + b."""

    def __init__(self, cardinalities: tuple[int, ...], width: int):
        super().__init__()
        self.cardinalities = tuple(cardinalities)
        self.categories = CategoryEmbedding(cardinalities, width)
        bound = 1 / math.sqrt(width)  # the paper's (rtdl's) init of the tokenizer
        numbers, tokens = len(self.categories.numeric), len(cardinalities)
        self.weight = nn.Parameter(torch.empty(numbers, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(tokens, width).uniform_(-bound, bound))  # numbers' first, then codes'

    def forward(self, x: Tensor) -> Tensor:
        numbers, vectors = self.categories(x)  # (B, N), (B, C, width)
        return torch.cat([numbers.unsqueeze(-1) * self.weight, vectors], dim=1) + self.bias


class FTTransformer(nn.Module):
    """Tokens + [CLS] → Encoder → ReLU(LayerNorm(h_[CLS])) as the (B, width) features (the paper's prediction
    block without its last Linear, which is each task's head)."""

    def __init__(self, cfg: FTTransformerOptions, input_shape: tuple[int, ...], cardinalities: tuple[int, ...] = ()):
        super().__init__()
        if len(input_shape) != 1:
            raise UserError(f"model.trunk.name: ft_transformer needs table inputs (F,), got shape {tuple(input_shape)}")
        if cfg.width % cfg.heads:
            raise UserError(f"model.trunk.width: {cfg.width} is not a multiple of model.trunk.heads {cfg.heads}")
        self.tokenizer = FeatureTokenizer(tuple(cardinalities) or (0,) * input_shape[0], cfg.width)
        self.cls = nn.Parameter(torch.empty(1, 1, cfg.width).uniform_(-1 / math.sqrt(cfg.width), 1 / math.sqrt(cfg.width)))
        self.encoder = Encoder(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout)
        self.out_dim = cfg.width

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.tokenizer(x)  # (B, F, W)
        # shape[0], not len(): the exporter keeps it symbolic, where len() would fix the graph's batch size
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)  # (B, 1 + F, W)
        keep = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)  # every column is real
        return torch.relu(self.encoder(tokens, keep)[:, 0])  # (B, W): the [CLS] token's output


@register("trunk", "ft_transformer", options=FTTransformerOptions)
def ft_transformer(cfg: FTTransformerOptions, input_shape: tuple[int, ...],
                   cardinalities: tuple[int, ...] = ()) -> FTTransformer:
    return FTTransformer(cfg, input_shape, cardinalities)


ft_transformer.embeds_categories = True  # takes `cardinalities` (sharing/base.py)
