"""FairGrad (Ban & Ji, 2024, "Fair Resource Allocation in Multi-Task Learning", ICML): the update that
maximizes the α-fair utility of the tasks' loss decreases, α = 0 the sum, α = 1 proportional fairness.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.optimize import least_squares
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions
from hydranet.mtl.gram import GramMethod
from hydranet.registry import register


def fairgrad_weights(gram: np.ndarray, alpha: float, max_iters: int | None = None) -> np.ndarray:
    """(T,) w > 0 solving (G w)_t = w_t^(−1/α) (the paper's Eq. 4); α = 0 (the utilitarian sum) gives w = 1.

    Solved by bounded least squares from w = 1/T, as the authors' code does, with the exact Jacobian
    G + diag(w^(−1/α − 1)/α) and tight tolerances. A term with no gradient on the shared parameters (a zero
    row: the equation has no solution) gets w = 0, as Nash-MTL's solver does. α = 1 is Nash-MTL's equation.
    """
    gram = np.asarray(gram, dtype=np.float64)
    if alpha == 0:
        return np.ones(len(gram))
    weights = np.zeros(len(gram))
    live = np.diag(gram) > 1e-12 * max(np.diag(gram).max(initial=0.0), 1e-300)
    k = gram[np.ix_(live, live)]
    if not live.any():
        return weights
    power = -1.0 / alpha
    result = least_squares(lambda w: k @ w - w**power, np.full(len(k), 1.0 / len(gram)),
                           jac=lambda w: k - np.diag(power * w ** (power - 1)), bounds=(0, np.inf),
                           xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=max_iters)
    weights[live] = result.x
    return weights


class FairGradOptions(GradientOptions):
    """Options of `mtl.balancer: {name: fairgrad, …}`."""

    alpha: float = Field(1.0, ge=0, description="α of α-fairness: 0 the sum of the loss decreases (equal), 1 proportional fairness (Nash-MTL's weights), larger values favour the worst task more")
    max_iters: int | None = Field(None, ge=1, description="cap on the solver's function evaluations per step (null: scipy's default, 100·T)")


@register("balancer", "fairgrad", options=FairGradOptions)
class FairGrad(GramMethod):
    """Shared parameters get Σ_t w_t g_t with (G w)_t = w_t^(−1/α); task-specific ones the gradient of
    Σ_t w_t L_t, as in the authors' code (a backward of the weighted losses).

    Why: the task t's loss decrease along d = Σ w g is (G w)_t = w_t^(−1/α), and this d maximizes Σ_t u_α of
    those decreases; α trades the sum (α = 0) for the worst task (α → ∞). The solve runs on the CPU, so each
    step syncs once. Returned weights: w.
    """

    def __init__(self, options: FairGradOptions, tasks: dict, seed: int):
        self.alpha, self.max_iters, self.level = options.alpha, options.max_iters, options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        return self.gram_backward(losses, shared_params,
                                  lambda gram: fairgrad_weights(gram, self.alpha, self.max_iters), heads_weighted=True)
