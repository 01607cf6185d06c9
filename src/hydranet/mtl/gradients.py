"""Helpers shared by the gradient balancers: per-term gradients on the shared parameters (from train/gradients.py,
which diagnostics share), a combined gradient written into `.grad`, and one backward for everything not shared.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hydranet.train.gradients import flatten, term_gradients  # noqa: F401  (the balancers take them from here)


def independent_backward(losses: dict[str, Tensor]) -> dict[str, float]:
    """With no shared parameter the tasks cannot conflict: the plain sum is every method's answer."""
    sum(losses.values()).backward()
    return {name: 1.0 for name in losses}


def set_grad(params: list[Tensor], flat: Tensor) -> None:
    """Add a flat (P,) gradient into `.grad` of each parameter, as `backward()` would accumulate it.

    The gradient takes the parameter's memory layout, as autograd's does: fused and foreach optimizers step a
    parameter and its gradient in storage order, so a contiguous gradient of a channels_last conv weight would
    update the wrong elements (it did: multidigits' gradient methods lost 9 points of accuracy).
    """
    offset = 0
    for p in params:
        n = p.numel()
        g = torch.empty_like(p).copy_(flat[offset:offset + n].view(p.shape))  # empty_like keeps p's strides
        p.grad = g if p.grad is None else p.grad.add_(g)
        offset += n


def private_leaves(losses: list[Tensor], shared: list[Tensor]) -> list[Tensor]:
    """Leaf tensors the losses reach that are not shared (heads, extra losses' projection layers…).

    Found by walking the autograd graph (~0.03 ms for the quickstart CNN), so no model needs to list its
    task-specific parameters and terms added by extra losses are covered too.
    """
    excluded = {id(p) for p in shared}
    seen, stack, found = set(), [loss.grad_fn for loss in losses], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        leaf = getattr(fn, "variable", None)  # AccumulateGrad nodes hold the leaf they write into
        if leaf is not None:
            if id(leaf) not in excluded:
                found.append(leaf)
            continue
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


def backward_private(losses: dict[str, Tensor], weights: dict[str, float | Tensor], shared: list[Tensor]) -> None:
    """Backward of Σ_t w_t·L_t into the non-shared leaves only; the trunk is not traversed again."""
    terms = [loss for loss in losses.values() if loss.requires_grad]
    leaves = private_leaves(terms, shared)
    if leaves:
        total = sum(weights[name] * loss for name, loss in losses.items() if loss.requires_grad)
        torch.autograd.backward(total, inputs=leaves)


def combine_and_backward(losses: dict[str, Tensor], shared: list[Tensor], grads: Tensor, coeffs: Tensor,
                         head_weights: dict[str, float | Tensor]) -> None:
    """Shared `.grad` = coeffs @ grads ((T,) @ (T, P)); the rest gets the backward of Σ head_weights·L.

    The pattern of every gradient method: grads = term_gradients(…), a method-specific (T,) coefficient
    vector, then this. The trunk is traversed T times (once per term), never T + 1, since the private
    backward stops where the shared parameters begin. CPU coefficients are copied without waiting (a
    blocking host-to-device copy would sync the step).
    """
    coeffs = coeffs.to(grads.device, non_blocking=True).to(grads.dtype)
    set_grad(shared, coeffs @ grads)
    backward_private(losses, head_weights, shared)


def last_matrix(params: list[Tensor]) -> Tensor:
    """The last parameter with ndim ≥ 2 (the last shared layer's weight), else the last parameter."""
    matrices = [p for p in params if p.ndim >= 2]
    return matrices[-1] if matrices else params[-1]
