"""GradVac, gradient vaccine (Wang, Tsvetkov, Firat & Cao, 2021, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR): raise each pair's cosine to its moving average.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions, independent_backward
from hydranet.mtl.gram import GramMethod
from hydranet.randomness import Purpose, stream
from hydranet.registry import register

EPS = 1e-8  # in the denominators, as in torchjd's and LibMTL's code


def vaccine_weight(norm_i: float, norm_j: float, phi: float, target: float) -> float:
    """w with cos(g_i + w·g_j, g_j) = target, for cos(g_i, g_j) = phi (the paper's closed form, Eq. 4)."""
    return norm_i * (target * np.sqrt(max(1 - phi * phi, 0.0)) - phi * np.sqrt(max(1 - target * target, 0.0))) / (
        norm_j * np.sqrt(max(1 - target * target, 0.0)) + EPS)


def gradvac_coefficients(gram: np.ndarray, targets: np.ndarray, orders: list[list[int]], beta: float) -> np.ndarray:
    """(T,) c with Σ_i g_i^GV = Σ_t c_t g_t; updates `targets` (T, T), the moving averages φ̂_ij, in place.

    g_i^GV starts as g_i; for each j in orders[i], when cos(g_i^GV, g_j) = φ is below φ̂_ij, it gains w·g_j so
    that the cosine becomes φ̂_ij; then φ̂_ij ← (1 − β)·φ̂_ij + β·φ. Each g_i^GV stays a combination of the
    original gradients (row i of C), so everything follows from the Gram matrix, as in torchjd's `GradVac`.
    """
    gram = np.asarray(gram, dtype=np.float64)
    coeffs = np.eye(len(gram))
    for i, order in enumerate(orders):
        for j in order:
            row = coeffs[i]
            norm_i, norm_j = np.sqrt(max(row @ gram @ row, 0.0)), np.sqrt(max(gram[j, j], 0.0))
            phi = (row @ gram[:, j]) / (norm_i * norm_j + EPS)
            if phi < targets[i, j]:
                coeffs[i, j] += vaccine_weight(norm_i, norm_j, phi, targets[i, j])
            targets[i, j] = (1 - beta) * targets[i, j] + beta * phi
    return coeffs.sum(axis=0)


class GradVacOptions(GradientOptions):
    """Options of `mtl.balancer: {name: gradvac, …}`."""

    beta: float = Field(0.5, ge=0, le=1, description="β of the cosine targets' moving average φ̂ ← (1 − β)·φ̂ + β·φ (0.5 as in torchjd and LibMTL; the paper used 0.01)")


@register("balancer", "gradvac", options=GradVacOptions)
class GradVac(GramMethod):
    """Shared parameters get Σ_i g_i^GV (the paper's sum); task-specific ones their own gradient (weight 1).

    The cosine of each pair is raised to its target φ̂ (which starts at 0, so the first steps act as PCGrad
    does on conflicting pairs) and pairs that agree more than usual are left alone. Gradients are taken on
    all shared parameters together (torchjd's `whole_model`; the paper also groups them by layer), or on the
    shared features with `gradients: representation`. Each task visits the others in a fresh random order every
    step from the `GRADVAC` stream. The targets φ̂ and the generator are checkpointed (exact resume); the loop
    runs on the CPU, so each step syncs once.
    Returned weights: each term's coefficient in the shared gradient.
    """

    def __init__(self, options: GradVacOptions, tasks: dict, seed: int):
        self.beta, self.level = options.beta, options.gradients
        self.generator = stream(seed, Purpose.GRADVAC)
        self.targets: np.ndarray | None = None  # (T, T) φ̂

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        if not shared_params:
            return independent_backward(losses)
        t = len(losses)
        if self.targets is None or self.targets.shape != (t, t):
            self.targets = np.zeros((t, t))
        orders = [[j for j in torch.randperm(t, generator=self.generator).tolist() if j != i] for i in range(t)]
        return self.gram_backward(losses, shared_params,
                                  lambda gram: gradvac_coefficients(gram, self.targets, orders, self.beta))

    def state_dict(self) -> dict:
        targets = torch.zeros(0) if self.targets is None else torch.from_numpy(self.targets.copy())
        return {"generator": self.generator.get_state(), "targets": targets}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].clone())
        self.targets = state["targets"].double().numpy().copy() if state["targets"].numel() else None
