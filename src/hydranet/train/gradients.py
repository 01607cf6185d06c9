"""Per-term gradients on the shared parameters: what gradient diagnostics measure and gradient balancers combine.

Here, below both, so the trainer's diagnostics need nothing from `mtl`; the balancers' other helpers stay in mtl/gradients.py.
"""

from __future__ import annotations

import torch
from torch import Tensor


def term_gradients(losses: list[Tensor], params: list[Tensor]) -> Tensor:
    """(T, P) flat float32 gradients of each loss on `params`; the graph is kept for the backward after.

    A loss that does not reach a parameter (or no parameter at all) contributes zeros there.
    """
    rows = []
    for loss in losses:
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        else:
            grads = (None,) * len(params)
        rows.append(flatten(grads, params))
    return torch.stack(rows)  # (T, P)


def flatten(grads: tuple[Tensor | None, ...] | list[Tensor | None], params: list[Tensor]) -> Tensor:
    """One (P,) float32 vector; None (an unused parameter) becomes zeros of that parameter's size."""
    parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params)]
    return torch.cat(parts)
