"""Batched image augmentation: random crop after zero padding, horizontal flip and cutout; dense targets move along.

Whole batches at once with tensor ops (airbench style): random numbers are drawn on a CPU generator, so
a seed gives the same batch on any device, then the ops run where the batch lives.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from hydranet.config import AugmentConfig


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augmented copy of a batch (B, C, H, W); `x` itself is returned when every option is off."""
    params = draw(cfg, x.shape[0], x.shape[2], x.shape[3], generator)
    return apply(x, cfg, {name: value.to(x.device) for name, value in params.items()})


def draw_epoch(cfg: AugmentConfig, n: int, batch_size: int, height: int, width: int,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The choices of every batch of an epoch, drawn batch after batch (so equal to per-batch `draw`s) and
    concatenated: `data.batches` moves them to the device once per epoch, not once per step (on a GPU each
    small copy from the CPU would wait for the queued work)."""
    parts = [draw(cfg, min(batch_size, n - begin), height, width, generator) for begin in range(0, n, batch_size)]
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]} if parts else {}


def apply(x: torch.Tensor, cfg: AugmentConfig, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Augment a batch with choices already drawn (and on x's device)."""
    if cfg.crop_padding:
        x = crop_at(x, cfg.crop_padding, params["top"], params["left"])
    if cfg.flip:
        x = flip_where(x, params["flip"])
    if cfg.cutout:
        x = cut_at(x, cfg.cutout, params["cy"], params["cx"])
    return x


def apply_to_target(y: torch.Tensor, cfg: AugmentConfig, params: dict[str, torch.Tensor],
                    mirror: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Move a dense target (B, H, W[, C]) with its images: the same crops and flips as `apply` (cutout changes the
    picture, not what it shows). Pixels the crop brings in from the padding are missing (-1 or NaN). `mirror` (the
    kind's, `kinds.mirror_values`) turns a flipped example's values into what the mirrored picture shows: a
    normal's x component changes sign."""
    vectors = y.ndim == 4
    y = y.movedim(-1, 1) if vectors else y[:, None]  # (B, C, H, W): the image ops apply
    if cfg.crop_padding:
        fill = float("nan") if y.is_floating_point() else -1
        y = crop_at(y, cfg.crop_padding, params["top"], params["left"], fill)
    if cfg.flip:
        y = flip_where(y, params["flip"])
    y = y.movedim(1, -1) if vectors else y[:, 0]
    if cfg.flip and mirror is not None:
        y = torch.where(params["flip"].view(-1, *[1] * (y.ndim - 1)), mirror(y), y)
    return y


def draw(cfg: AugmentConfig, batch: int, height: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The random choices of one batch, in a fixed order (crop offsets, flips, cutout centres)."""
    params = {}
    if cfg.crop_padding:
        span = 2 * cfg.crop_padding + 1  # offsets 0..2p inside the padded image; p is the identity
        params["top"] = torch.randint(0, span, (batch,), generator=generator)
        params["left"] = torch.randint(0, span, (batch,), generator=generator)
    if cfg.flip:
        params["flip"] = torch.rand(batch, generator=generator) < 0.5
    if cfg.cutout:
        params["cy"] = torch.randint(0, height, (batch,), generator=generator)
        params["cx"] = torch.randint(0, width, (batch,), generator=generator)
    return params


def crop_at(x: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor, fill: float = 0) -> torch.Tensor:
    """Per-example H×W windows of the batch padded with `fill` (zeros), window b starting at (top[b], left[b])."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), value=fill)  # (B, C, H+2p, W+2p), `fill` outside
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    # Channels last for the gather: indices (B, H, W) pick whole pixels, then back to (B, C, H, W).
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the examples where `mask` (B,) is True."""
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def cut_at(x: torch.Tensor, size: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zero a size×size square centred at (cy[b], cx[b]) in each example, clipped at the borders."""
    _, _, h, w = x.shape
    top, left = (cy - size // 2)[:, None], (cx - size // 2)[:, None]  # (B, 1)
    rows = torch.arange(h, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(w, device=x.device)[None, :]  # (1, W)
    inside_rows = (rows >= top) & (rows < top + size)  # (B, H)
    inside_cols = (cols >= left) & (cols < left + size)  # (B, W)
    square = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]  # (B, 1, H, W)
    return x.masked_fill(square, 0)
