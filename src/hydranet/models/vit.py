"""The `vit` trunk (Dosovitskiy et al. 2021): images cut into square patches, each patch one token, read by the
transformer's encoder blocks (models/attention.py).

Every patch is real, so there is no padding and no attention mask (SDPA picks its fastest kernel); the image
sides must be multiples of the patch side, so no pixel is cut off or padded in.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.errors import UserError
from hydranet.models.attention import Encoder
from hydranet.registry import register


class ViTOptions(Options):
    """Options of `model.trunk: {name: vit, …}`."""

    patch: int = Field(4, ge=1, description="side of the square patches in pixels (each a token); must divide the image's height and width")
    width: int = Field(128, ge=1, description="model width (patch embedding size)")
    depth: int = Field(4, ge=1, description="encoder blocks")
    heads: int = Field(4, ge=1, description="attention heads (width must be a multiple)")
    mlp_ratio: float = Field(4.0, gt=0, description="hidden width of each block's MLP as a multiple of width")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the patch embeddings and inside the blocks")
    pooling: Literal["cls", "mean"] = Field("mean", description="cls: a learned [CLS] token prepended, its output | mean: mean over the patches")


class ViT(nn.Module):
    """(B, C, H, W) images → patch embedding (a conv of kernel and stride `patch`) + learned positions → encoder
    blocks → [CLS] or mean pooling → (B, width)."""

    def __init__(self, cfg: ViTOptions, input_shape: tuple[int, ...]):
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise UserError(f"model.trunk.name: vit needs image inputs (C, H, W), got shape {shape}; use mlp for tables")
        channels, height, width = shape
        if height % cfg.patch or width % cfg.patch:
            raise UserError(f"model.trunk.patch: {cfg.patch} does not divide images of shape {shape}; expected a "
                            f"divisor of both {height} and {width} (or set data.image_size)")
        if cfg.width % cfg.heads:
            raise UserError(f"model.trunk.width: {cfg.width} is not a multiple of model.trunk.heads {cfg.heads}")
        self.embed = nn.Conv2d(channels, cfg.width, kernel_size=cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.pooling == "cls" else None
        tokens = (height // cfg.patch) * (width // cfg.patch) + (self.cls is not None)
        self.positions = nn.Parameter(torch.randn(1, tokens, cfg.width) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout)
        self.out_dim = cfg.width

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x).flatten(2).transpose(1, 2)  # (B, patches, W), patches row by row
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(h), -1, -1).to(h.dtype), h], dim=1)
        h = self.encoder(self.drop(h + self.positions))  # no padding: no mask
        return h[:, 0] if self.cls is not None else h.mean(dim=1)  # (B, W)


@register("trunk", "vit", options=ViTOptions)
def vit(cfg: ViTOptions, input_shape: tuple[int, ...]) -> ViT:
    return ViT(cfg, input_shape)
