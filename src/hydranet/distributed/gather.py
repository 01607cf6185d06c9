"""Collectives that autograd differentiates through, for losses that need every rank's examples: contrastive
negatives from the global batch (SimCLR) and BatchNorm statistics over it (batchnorm.py). In one process each
one is the identity, so a method calls them unconditionally.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from hydranet.distributed.context import exchanging, rank, world_size
from hydranet.distributed.reduce import global_mean, summed


class Gathered(NamedTuple):
    """Every rank's rows in rank order, and where this rank's own rows start among them."""

    rows: Tensor
    start: int


def all_gather_with_grad(x: Tensor) -> Gathered:
    """The concatenation of every rank's `x` (rows in rank order; ranks may hold different numbers of rows), with
    gradients flowing back into this rank's part. In one process: `x` itself, starting at row 0.

    Why the backward sums over ranks first: data-parallel training minimizes L = (1/W) Σ_r L_r, the average of the
    W ranks' losses, and every rank's L_r reads the gathered rows, so ∂L/∂x_s = (1/W) Σ_r ∂L_r/∂rows[slice of s].
    Rank s can only backpropagate into its own x_s, so its backward must return Σ_r ∂L_r/∂rows[slice of s]: an
    all-reduce (sum) of the gathered rows' gradient, then its own slice; the trainer's average of the parameter
    gradients over the ranks adds the 1/W.
    Taking the local slice of the local gradient alone would drop what the other ranks' losses say about x_s
    (for SimCLR: x_s as their negatives), and the gradient would differ from one process's on the global batch.
    """
    here, world = rank(), world_size()
    if world == 1:
        return Gathered(x, 0)
    sizes = _row_counts(len(x), x.device, world)
    return Gathered(_AllGather.apply(x, sizes, here), sum(sizes[:here]))


def all_reduce_with_grad(x: Tensor) -> Tensor:
    """The sum of every rank's `x` (same shape on every rank), differentiable: as every rank's loss reads the sum,
    the gradient of each rank's `x` is the sum of every rank's gradient of it (the reasoning of
    `all_gather_with_grad`). In one process: `x` itself."""
    if world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


def mean_over_ranks(total: Tensor, count: int | Tensor) -> Tensor:
    """This rank's share of a mean over every rank's examples, where `total` sums this rank's `count` per-example
    losses: its gradient is W/C·∇total (C = Σ_r count_r), so the trainer's average of the W ranks' gradients is the
    gradient of the one-process mean on the global batch, however the batch is shared out; a per-rank mean would
    weigh each example by 1/(W · its rank's count) instead. Its value is that global mean on every rank. In one
    process: total / count (0 when count is 0)."""
    count = torch.as_tensor(count, device=total.device)
    return global_mean(total / count.clamp_min(1), count)


def _summed(x: Tensor) -> Tensor:
    """A contiguous copy of `x` summed over ranks (`reduce.summed`: collectives work in place, and autograd's
    tensors must not change)."""
    return summed(x.contiguous(), "a differentiable sum")


def _row_counts(rows: int, device: torch.device, world: int) -> list[int]:
    """How many rows each rank holds, in rank order (on `device`: NCCL moves only GPU tensors)."""
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    with exchanging("the gathered row counts"):
        dist.all_gather(counts, torch.tensor([rows], device=device))
    return [int(c) for c in counts]


class _AllGather(torch.autograd.Function):
    """Forward: every rank's rows (padded to the longest for the collective, unpadded after). Backward: the summed
    gradient's slice of this rank (see `all_gather_with_grad`)."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:
        ctx.start, ctx.rows = sum(sizes[:rank]), sizes[rank]
        longest = max(sizes)
        if len(x) < longest:
            x = torch.cat([x, x.new_zeros((longest - len(x), *x.shape[1:]))])
        parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in sizes]
        with exchanging("the gathered rows"):
            dist.all_gather(parts, x.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return _summed(grad)[ctx.start:ctx.start + ctx.rows], None, None


class _AllReduceSum(torch.autograd.Function):
    """Forward and backward: the sum over ranks."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _summed(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _summed(grad)
