"""Fast Gradient Sign Method (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial Examples"): one
step of size eps along the steepest-ascent direction, for L∞ and L2.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from hydranet.robust.attack_loss import loss_and_grad
from hydranet.robust.space import PixelSpace, ascent, check_norm, frozen, project


def fgsm(model: nn.Module, x: Tensor, attack_loss: Callable, space: PixelSpace, eps: float, norm: str = "linf",
         **_: object) -> Tensor:
    """Adversarial *model* inputs (B, C, H, W) after one step of size eps along the ascent direction.

    For L2 the step is eps·g/‖g‖₂ (the "fast gradient method").
    """
    check_norm(norm)
    with frozen(model):
        x_raw = space.raw(x)
        _, grad = loss_and_grad(model, space, x, torch.zeros_like(x), attack_loss)
        delta = project(eps * ascent(grad, norm), x_raw, eps, norm)
        return space.model_input(x, delta).detach()
