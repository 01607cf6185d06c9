"""Per-term gradients on the shared parameters: what gradient diagnostics measure and gradient balancers combine.

Here, below both, so the trainer's diagnostics need nothing from `mtl`; the balancers' other helpers stay in mtl/gradients.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_ROWS = 16  # terms per vectorized backward: each row carries its own copy of every intermediate gradient
_UNBATCHABLE: set[tuple[int, ...]] = set()  # parameter lists whose graph had no batching rule: the loop serves them


def term_gradients(losses: list[Tensor], params: list[Tensor], max_rows: int = MAX_ROWS,
                   batched: bool | None = None) -> Tensor:
    """(T, P) flat float32 gradients of each loss on `params`; the graph is kept for the backward after.

    Batched (the default off the CPU): one vectorized backward (`is_grads_batched`: vmap over the VJP with
    one-hot cotangents) computes all rows at once, `max_rows` terms per pass (halved after an out-of-memory
    error). The FLOPs are those of T backward passes (plus T² small head passes: every head sees all T rows),
    but on an accelerator they run as one wide pass instead of T narrow ones. On the CPU there is no launch
    cost to save, and the batched pass measured 5–179 % slower than the loop (docs/multitask.md), so the
    loop stays the default there.
    Where an op has no batching rule (a custom autograd.Function that reads a value, for instance) the rows
    come from one backward per term; every built-in trunk and sharing batches (tested).
    A loss that does not reach a parameter (or no parameter at all) contributes zeros there.
    """
    live = [i for i, loss in enumerate(losses) if loss.requires_grad]
    device = _device(losses, params)
    batched = device.type != "cpu" if batched is None else batched
    if params and len(live) == len(losses):
        return _live_rows(losses, params, max_rows, batched)
    rows = torch.zeros(len(losses), sum(p.numel() for p in params), device=device)
    if live and params:
        rows[live] = _live_rows([losses[i] for i in live], params, max_rows, batched)
    return rows


def _live_rows(losses: list[Tensor], params: list[Tensor], max_rows: int, batched: bool) -> Tensor:
    """Rows of losses that all require grad: batched in chunks, or the loop (asked for, or batching failed before)."""
    key = tuple(id(p) for p in params)
    if not batched or key in _UNBATCHABLE:
        return loop_rows(losses, params)
    try:
        return torch.cat([batched_rows(losses[i:i + max_rows], params) for i in range(0, len(losses), max_rows)])
    except torch.OutOfMemoryError:
        if max_rows == 1:
            raise
        return _live_rows(losses, params, max(1, max_rows // 2), batched)
    except RuntimeError:  # no batching rule for some op: the loop re-raises what is a real error
        rows = loop_rows(losses, params)
        _UNBATCHABLE.add(key)
        return rows


def batched_rows(losses: list[Tensor], params: list[Tensor]) -> Tensor:
    """(n, P): one backward with grad_outputs = I (n, n) over the stacked losses; row i is ∇ losses[i]."""
    stacked = torch.stack([loss.float() for loss in losses])  # (n,)
    eye = torch.eye(len(losses), device=stacked.device, dtype=stacked.dtype)
    grads = torch.autograd.grad(stacked, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True,
                                allow_unused=True)  # each (n, *p.shape) or None
    parts = [(g.reshape(len(losses), -1) if g is not None else torch.zeros(len(losses), p.numel(), device=p.device))
             for g, p in zip(grads, params)]
    return torch.cat(parts, dim=1).float()


def loop_rows(losses: list[Tensor], params: list[Tensor]) -> Tensor:
    """(n, P): one backward per loss (the reference the batched pass is tested against)."""
    return torch.stack([flatten(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)
                        for loss in losses])


def flatten(grads: tuple[Tensor | None, ...] | list[Tensor | None], params: list[Tensor]) -> Tensor:
    """One (P,) float32 vector; None (an unused parameter) becomes zeros of that parameter's size."""
    parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params)]
    return torch.cat(parts)


def _device(losses: list[Tensor], params: list[Tensor]) -> torch.device:
    return params[0].device if params else (losses[0].device if losses else torch.device("cpu"))
