"""Auto-PGD with the cross-entropy loss (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks", Algorithm 1), for L∞ and L2.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from hydranet.robust.attack_loss import loss_and_grad
from hydranet.robust.space import PixelSpace, ascent, check_norm, frozen, project, random_start

MOMENTUM = 0.75  # α in the paper: weight of the new gradient step against the previous move
RHO = 0.75  # halve the step when fewer than this share of steps since the last checkpoint raised the loss


def checkpoints(steps: int) -> list[int]:
    """Iterations w_j = ⌈p_j·N⌉ where the step size may be halved: p₀ = 0, p₁ = 0.22,
    p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (checks grow sparser, then every 6% of the budget)."""
    p = [0.0, 0.22]
    while p[-1] <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 9)) for q in p[1:] if q <= 1} - {0})  # round: 0.57·100 is 57.000…01


def apgd(model: nn.Module, x: Tensor, attack_loss: Callable, space: PixelSpace, eps: float, norm: str = "linf",
         steps: int = 100, restarts: int = 1, random_init: bool = True,
         generator: torch.Generator | None = None, **_: object) -> Tensor:
    """APGD-CE: PGD with momentum and a step size that adapts per example, so it needs no tuning.

    Starts at η = 2·eps; at each checkpoint an example halves η and restarts from its best point when
    (1) the loss rose in fewer than 75% of the steps since the last checkpoint, or (2) η was not halved at
    the last checkpoint and the best loss has not improved since. Returns, per example, the point of
    highest loss over all iterations and restarts (the paper's x_max).
    """
    check_norm(norm)
    with frozen(model):
        x_raw = space.raw(x)
        best_delta, best_loss = torch.zeros_like(x), torch.full((len(x),), -math.inf, device=x.device)
        for _ in range(max(restarts, 1)):
            start = random_start(x_raw, eps, norm, generator) if random_init else torch.zeros_like(x)
            delta, loss = _one_run(model, x, x_raw, attack_loss, space, eps, norm, steps, start)
            better = loss > best_loss
            best_delta = torch.where(_per_example(better, x), delta, best_delta)
            best_loss = torch.where(better, loss, best_loss)
        return space.model_input(x, best_delta).detach()


def _per_example(flags: Tensor, like: Tensor) -> Tensor:
    """(B,) → (B, 1, 1, 1), to select whole examples with torch.where."""
    return flags.view(-1, *[1] * (like.dim() - 1))


def _one_run(model: nn.Module, x: Tensor, x_raw: Tensor, attack_loss: Callable, space: PixelSpace, eps: float,
             norm: str, steps: int, start: Tensor) -> tuple[Tensor, Tensor]:
    """Algorithm 1 from x⁽⁰⁾ = start; returns (x_max − x in raw space, f(x_max)), both per example."""
    eta = torch.full((len(x),), 2.0 * eps, device=x.device)  # (B,) step sizes
    shaped = lambda t: _per_example(t, x)  # noqa: E731
    loss0, grad0 = loss_and_grad(model, space, x, start, attack_loss)
    delta = project(start + shaped(eta) * ascent(grad0, norm), x_raw, eps, norm)  # x⁽¹⁾: a plain step
    loss, grad = loss_and_grad(model, space, x, delta, attack_loss)
    prev = start
    first = loss > loss0
    best, best_loss = torch.where(shaped(first), delta, start), torch.maximum(loss, loss0)
    best_grad = torch.where(shaped(first), grad, grad0)
    increases = first.float()  # (B,) steps since the last checkpoint that raised the loss
    checks, last_check = set(checkpoints(steps)), 0
    halved_last = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best_at_check = best_loss.clone()
    for k in range(1, steps):  # x⁽ᵏ⁾ → x⁽ᵏ⁺¹⁾
        z = project(delta + shaped(eta) * ascent(grad, norm), x_raw, eps, norm)
        nxt = project(delta + MOMENTUM * (z - delta) + (1 - MOMENTUM) * (delta - prev), x_raw, eps, norm)
        nxt_loss, nxt_grad = loss_and_grad(model, space, x, nxt, attack_loss)
        increases += (nxt_loss > loss).float()
        improved = nxt_loss > best_loss
        best = torch.where(shaped(improved), nxt, best)
        best_grad = torch.where(shaped(improved), nxt_grad, best_grad)
        best_loss = torch.where(improved, nxt_loss, best_loss)
        prev, delta, loss, grad = delta, nxt, nxt_loss, nxt_grad
        if k + 1 in checks:
            oscillating = increases < RHO * (k + 1 - last_check)  # condition 1
            stalled = ~halved_last & (best_loss <= best_at_check)  # condition 2
            halve = oscillating | stalled
            eta = torch.where(halve, eta / 2, eta)
            delta = torch.where(shaped(halve), best, delta)  # continue from x_max
            grad = torch.where(shaped(halve), best_grad, grad)
            loss = torch.where(halve, best_loss, loss)
            halved_last, best_at_check = halve, best_loss.clone()
            increases, last_check = torch.zeros_like(increases), k + 1
    return best, best_loss
