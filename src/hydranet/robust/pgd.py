"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial
Attacks"): ascent steps on the attack loss, each projected back onto the eps-ball, with random restarts.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from hydranet.robust.attack_loss import loss_and_grad
from hydranet.robust.space import PixelSpace, ascent, check_norm, frozen, project, random_start


def pgd(model: nn.Module, x: Tensor, attack_loss: Callable, space: PixelSpace, eps: float, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, restarts: int = 1, random_init: bool = True,
        generator: torch.Generator | None = None) -> Tensor:
    """Adversarial *model* inputs (B, C, H, W) after `steps` ascent steps, each projected back.

    Default step size 2.5·eps/steps (Madry et al.), so the walk can cross the ball and back. Each restart
    starts from a new random point; each example keeps the restart whose final loss is highest.
    """
    check_norm(norm)
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    with frozen(model):
        x_raw = space.raw(x)
        best_delta, best_loss = torch.zeros_like(x), torch.full((len(x),), -math.inf, device=x.device)
        for _ in range(max(restarts, 1)):
            delta = random_start(x_raw, eps, norm, generator) if random_init else torch.zeros_like(x)
            for _ in range(steps):
                _, grad = loss_and_grad(model, space, x, delta, attack_loss)
                delta = project(delta + alpha * ascent(grad, norm), x_raw, eps, norm)
            with torch.no_grad():
                loss = attack_loss(model(space.model_input(x, delta)))  # (B,)
            better = loss > best_loss
            best_delta = torch.where(better.view(-1, *[1] * (x.dim() - 1)), delta, best_delta)
            best_loss = torch.where(better, loss, best_loss)
        return space.model_input(x, best_delta).detach()
