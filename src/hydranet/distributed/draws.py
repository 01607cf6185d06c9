"""Random numbers per example of the global batch: a rank's batch is its equal share of the global batch (rows
[r·b, (r + 1)·b) of W·b), so a draw for it is made for all W·b rows from the generator every rank holds alike, and
the rank keeps its own rows. Example i of the global batch thus gets the same numbers at any world size, and W
ranks × batch b draw what one process × batch W·b draws (self-supervised views, corruptions, masks). In one process
each helper is the plain torch call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hydranet.distributed.context import rank, world_size


def global_rows(rows: int) -> tuple[int, int]:
    """(rows of the global batch, where this rank's `rows` start among them), for equal shares (the batches give
    every rank an equal share, `data/batches.py`)."""
    return rows * world_size(), rows * rank()


def _own(draw: Tensor, rows: int) -> Tensor:
    _, start = global_rows(rows)
    return draw[start:start + rows]


def rand_rows(generator: torch.Generator, rows: int, *shape: int) -> Tensor:
    """torch.rand(rows, *shape) for this rank's rows of the global batch."""
    return _own(torch.rand(global_rows(rows)[0], *shape, generator=generator), rows)


def randn_rows(generator: torch.Generator, rows: int, *shape: int) -> Tensor:
    """torch.randn(rows, *shape) for this rank's rows of the global batch."""
    return _own(torch.randn(global_rows(rows)[0], *shape, generator=generator), rows)


def randint_rows(generator: torch.Generator, high: int, rows: int, *shape: int) -> Tensor:
    """torch.randint(0, high, (rows, *shape)) for this rank's rows of the global batch."""
    return _own(torch.randint(0, high, (global_rows(rows)[0], *shape), generator=generator), rows)
