"""Feature groups of images for the methods that switch groups on and off (kernel_shap, lime, occlusion): a grid of
square patches, or SLIC superpixels (k-means in colour and position) computed as batched tensor ops.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SEGMENTATIONS = ("grid", "slic")
COMPACTNESS = 0.1  # weight of one grid step of distance against colour in [0, 1]: colour edges win over squareness
ITERATIONS = 10  # k-means rounds (scikit-image's default); superpixels barely move after about 5
CELLS = 1 << 24  # at most this many floats of (example, pixel, centre) scores at once, to bound memory on large images


def patch_mask(shape: tuple[int, ...], patch: int) -> Tensor:
    """(1, 1, H, W) group ids of a grid of patch × patch squares (the last row/column may be smaller)."""
    _, height, width = shape
    rows = torch.arange(height) // patch
    cols = torch.arange(width) // patch
    per_row = (width + patch - 1) // patch
    return (rows[:, None] * per_row + cols[None, :])[None, None]


def default_patch(shape: tuple[int, ...]) -> int:
    """An 8 × 8 grid: 1-pixel patches on 8×8 digits, 4-pixel patches on 32×32 CIFAR-10."""
    return max(1, -(-min(shape[1:]) // 8))


def slic(x: Tensor, segments: int, compactness: float = COMPACTNESS, iterations: int = ITERATIONS) -> Tensor:
    """(N, C, H, W) images → (N, 1, H, W) int64 superpixel ids, numbered 0.. per image without gaps.

    SLIC (Achanta et al. 2012): about `segments` centres start on a regular grid of step S; each round every pixel
    joins the nearest of the centres that started in its own or the 8 neighbouring grid cells, by the distance
    √(Δcolour² + (compactness · Δxy / S)²), and each centre moves to the mean colour and position of its pixels.
    Colours are the image scaled to [0, 1] (its own minimum and maximum). Unlike scikit-image, no step joins a
    superpixel's disconnected pieces."""
    n, channels, height, width = x.shape
    rows = max(1, min(height, round(math.sqrt(segments * height / width))))
    cols = max(1, min(width, round(segments / rows)))
    per_chunk = max(1, CELLS // (height * width * (rows * cols + 9 * (channels + 2))))
    return torch.cat([_slic_chunk(part, rows, cols, compactness, iterations) for part in x.split(per_chunk)])


def _slic_chunk(x: Tensor, rows: int, cols: int, compactness: float, iterations: int) -> Tensor:
    n, _, height, width = x.shape
    colour = x.detach().float().flatten(2)  # (N, C, P)
    low, high = colour.amin((1, 2), keepdim=True), colour.amax((1, 2), keepdim=True)
    colour = ((colour - low) / (high - low).clamp_min(1e-12)).transpose(1, 2)  # (N, P, C) in [0, 1]
    place = torch.stack(torch.meshgrid(torch.arange(height, device=x.device), torch.arange(width, device=x.device),
                                       indexing="ij"), -1).flatten(0, 1).float()  # (P, 2) pixel positions y, x
    step = torch.tensor([height / rows, width / cols], device=x.device)  # (2,) grid step in pixels
    pixels = torch.cat([colour, (place * compactness / step.prod().sqrt()).expand(n, -1, -1)], 2)  # (N, P, C + 2)
    cell = (place / step).long().minimum(torch.tensor([rows - 1, cols - 1], device=x.device))  # (P, 2)
    centres = pixels[:, _grid_centres(step, rows, cols, width)]  # (N, K, C + 2)
    candidates = _neighbour_cells(cell, rows, cols)  # (P, 9)
    for _ in range(iterations):
        centres = _means(pixels, _nearest(pixels, centres, candidates), centres)
    return _renumber(_nearest(pixels, centres, candidates)).view(n, 1, height, width)


def _grid_centres(step: Tensor, rows: int, cols: int, width: int) -> Tensor:
    """(K,) the pixel at the middle of each grid cell (row-major), as an index into the flattened image."""
    device = step.device
    y = ((torch.arange(rows, device=device) + 0.5) * step[0]).long()
    x = ((torch.arange(cols, device=device) + 0.5) * step[1]).long()
    return (y[:, None] * width + x[None, :]).flatten()


def _neighbour_cells(cell: Tensor, rows: int, cols: int) -> Tensor:
    """(P, 9) the centres a pixel may join: those of its grid cell and the 8 around it (clamped at the border,
    so a border pixel lists some twice). A centre rarely drifts a whole step, so this is SLIC's 2S window."""
    shifts = torch.tensor([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], device=cell.device)  # (9, 2)
    near = cell[:, None] + shifts  # (P, 9, 2)
    return near[..., 0].clamp(0, rows - 1) * cols + near[..., 1].clamp(0, cols - 1)


def _nearest(pixels: Tensor, centres: Tensor, candidates: Tensor) -> Tensor:
    """(N, P) for every pixel the id of its nearest candidate centre: |c − p|² = |c|² − 2 c·p + |p|², of which the
    last term is the same for every centre of a pixel, so one batched matrix product scores them all."""
    score = centres.square().sum(-1)[:, None, :] - 2 * pixels @ centres.transpose(1, 2)  # (N, P, K)
    near = candidates.expand(len(pixels), -1, -1)  # (N, P, 9)
    return near.gather(2, score.gather(2, near).argmin(-1, keepdim=True))[..., 0]


def _means(pixels: Tensor, labels: Tensor, centres: Tensor) -> Tensor:
    """Each centre moved to the mean of its pixels; a centre that lost all its pixels stays where it was."""
    sums = torch.zeros_like(centres).scatter_add_(1, labels[..., None].expand_as(pixels), pixels)
    counts = torch.zeros_like(centres[..., :1]).scatter_add_(1, labels[..., None], torch.ones_like(pixels[..., :1]))
    return torch.where(counts > 0, sums / counts.clamp_min(1), centres)


def _renumber(labels: Tensor) -> Tensor:
    """(N, P) labels → 0..G−1 per image in order of id, skipping ids no pixel has (an emptied centre)."""
    used = torch.zeros(len(labels), int(labels.max()) + 1, dtype=torch.long, device=labels.device)
    used.scatter_(1, labels, 1)
    return (used.cumsum(1) - 1).gather(1, labels)
