"""UPGrad, unconflicting projection of gradients (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective
Optimization", arXiv:2406.16232; torchjd's default aggregator): each task gradient projected onto the dual cone.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions
from hydranet.mtl.gram import GramMethod
from hydranet.registry import register


def dual_cone_weights(gram: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """w ≥ floor minimizing wᵀ G w: the projection Σ_k w_k g_k of Σ_k floor_k g_k onto the dual cone {v: g_t·v ≥ 0}.

    The dual of min ‖v − u‖² s.t. g_t·v ≥ 0 (Quinton & Rey, Prop. 1). With G = AᵀA (A = Λ^½ Vᵀ from the
    eigendecomposition, negative round-off eigenvalues clipped) and w = floor + z, it is the non-negative least
    squares min_{z ≥ 0} ‖A z + A·floor‖², which Lawson-Hanson (scipy's `nnls`) solves exactly in a few steps.
    """
    eigenvalues, vectors = np.linalg.eigh(gram)
    a = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * vectors.T  # (T, T), AᵀA = G
    z, _ = nnls(a, -a @ floor)
    return floor + z


def upgrad_coefficients(gram: np.ndarray) -> np.ndarray:
    """(T,) c with Σ_t c_t g_t = Σ_i (g_i projected onto the dual cone of all g_t).

    The Gram matrix is divided by its trace first (the problem is scale-free; this keeps `nnls` well conditioned).
    """
    gram = np.asarray(gram, dtype=np.float64)
    trace = np.trace(gram)
    if trace <= 0:
        return np.ones(len(gram))
    gram = gram / trace
    return sum(dual_cone_weights(gram, row) for row in np.eye(len(gram)))


@register("balancer", "upgrad", options=GradientOptions)
class UPGrad(GramMethod):
    """Shared parameters get Σ_i π(g_i), π the projection onto the dual cone of the task gradients; task-specific
    ones their own gradient (weight 1).

    Why: the result has a non-negative inner product with every g_t (no task's loss rises to first order),
    its norm is bounded by the gradients', and when the gradients do not conflict it is their plain sum, the
    `equal` balancer's gradient. The sum (torchjd's default weights 1/T give the mean, 1/T of this) keeps the
    learning rate tuned for `equal`. The QP runs on the CPU from the Gram matrix, so each step syncs once.
    Returned weights: each term's coefficient in the shared gradient.
    """

    def __init__(self, options: GradientOptions, tasks: dict, seed: int):
        self.level = options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        return self.gram_backward(losses, shared_params, upgrad_coefficients)
