"""CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, 2021, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS): the update that most improves the worst task near the mean gradient.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions
from hydranet.mtl.gram import GramMethod
from hydranet.mtl.simplex import simplex_minimizer
from hydranet.registry import register


def dual_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """w ∈ simplex minimizing F(w) = g_w·g0 + √φ·|g_w| with g_w = Σ w_t g_t, g0 the mean gradient, √φ = c·|g0|.

    The dual of max_d min_t g_t·d s.t. |d − g0| ≤ c|g0|, written with the Gram matrix only, solved exactly by the
    active-set method of `simplex` (real task gradients keep most indices: 2 face solves for 16 MLP heads). It
    replaces the authors' SLSQP, whose per-call overhead in scipy (1.5–5 ms) was most of what CAGrad cost above the
    other gradient methods, and which stopped far from the optimum when the task gradients' norms differ by 10³ or
    more.
    """
    b = gram.mean(axis=1)  # (T,) g_t·g0
    sqrt_phi = c * np.sqrt(max(gram.mean(), 0.0)) + 1e-8
    return simplex_minimizer(gram, b, sqrt_phi)


def cagrad_coefficients(gram: np.ndarray, c: float) -> np.ndarray:
    """(T,) coefficients of the task gradients in d = (g0 + √φ/|g_w|·g_w) / (1 + c²).

    The 1/(1 + c²) rescale is the authors' default (`rescale=1`); with c = 0 this is exactly g0 = mean g_t.
    """
    t = len(gram)
    if c == 0:
        return np.full(t, 1.0 / t)
    w = dual_weights(gram, c)
    sqrt_phi = c * np.sqrt(max(gram.mean(), 0.0)) + 1e-8
    scale = sqrt_phi / (np.sqrt(max(w @ gram @ w, 0.0)) + 1e-8)  # λ = √φ / |g_w|
    return (1.0 / t + scale * w) / (1 + c * c)


class CAGradOptions(GradientOptions):
    """Options of `mtl.balancer: {name: cagrad, …}`."""

    c: float = Field(0.4, ge=0, description="radius c of the ball around the mean gradient (0: the mean gradient)")
    scale: Literal["sum", "mean"] = Field("sum", description="sum: the shared update is T·d, the summed losses' scale, as the authors' code does (c = 0 then equals the equal balancer) | mean: d itself, the mean gradient's scale (1/T of it)")


@register("balancer", "cagrad", options=CAGradOptions)
class CAGrad(GramMethod):
    """Shared parameters get T·d (`scale: sum`, the default: the authors' code multiplies d by T "to match
    the sum loss", so c = 0 gives the `equal` balancer's gradient) or d (`scale: mean`, the mean gradient's
    scale, 1/T of it); task-specific parameters get their own gradient (weight 1), as in the authors' and
    LibMTL's code.

    `c` is the radius of the ball around g0 (c = 0: the plain mean, or sum, of the gradients). Every loss term
    counts as a task. The small dual problem runs on the CPU, so each step syncs with the device once.
    Returned weights: each term's coefficient in the shared gradient.
    """

    def __init__(self, options: CAGradOptions, tasks: dict, seed: int):
        self.c, self.sum_scale, self.level = options.c, options.scale == "sum", options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        factor = len(losses) if self.sum_scale else 1
        return self.gram_backward(losses, shared_params, lambda gram: factor * cagrad_coefficients(gram, self.c))
