"""Transformer encoder blocks on `F.scaled_dot_product_attention`, independent of what the positions hold (tokens,
time steps, table columns): pre-LayerNorm (Xiong et al. 2020: stable without warmup tricks) with a padding mask.

`keep` is a (B, T) bool mask, True where a position is real; padded positions are never attended to, so a real
position's output does not depend on how much padding follows it, in train and eval mode alike. Inputs without
padding (image patches) pass `keep=None`: no mask, so SDPA may choose its fastest kernel.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Multi-head self-attention: one fused qkv projection, SDPA (flash/memory-efficient kernels where available)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, D) each
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, T): every query may attend to every real key
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, steps, width))


class EncoderBlock(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x)); dropout on each branch's output."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attention(self.norm1(x), keep))
        return x + self.drop(self.mlp(self.norm2(x)))  # (B, T, width)


class Encoder(nn.Module):
    """`depth` EncoderBlocks and the final LayerNorm that pre-LN stacks need (their residual stream is unnormalized)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x)
