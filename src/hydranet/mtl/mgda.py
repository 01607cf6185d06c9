"""MGDA-UB (Sener & Koltun, 2018, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS): the
task weights are the min-norm point of the convex hull of the task gradients (a common descent direction).
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions, Level
from hydranet.mtl.gram import GramMethod
from hydranet.mtl.min_norm import min_norm_weights
from hydranet.registry import register


class MGDAOptions(GradientOptions):
    """Options of `mtl.balancer: {name: mgda, …}`."""

    gradients: Level = Field("representation", description="representation: MGDA-UB, the min-norm point of the gradients on the shared features z (one pass through the trunk) | parameters: plain MGDA on the shared parameters' gradients (exact)")


@register("balancer", "mgda", options=MGDAOptions)
class MGDA(GramMethod):
    """α = argmin over the simplex of |Σ_t α_t ∇_z L_t|², then the backward of Σ_t α_t L_t (Σ α = 1, as in
    the paper).

    The upper bound (UB, `gradients: representation`, the default) takes gradients on the shared
    representation z = `trainer.model.features` (B, D) rather than the shared parameters: one batched
    backward through the heads, then one normal backward. When z is not usable (soft sharing, a term that
    does not reach z) it falls back to the gradients on the shared parameters (plain MGDA, also what
    `gradients: parameters` asks for). Every loss term counts as a task. The solver runs on the CPU, so each
    step syncs with the device once.
    """

    def __init__(self, options: MGDAOptions, tasks: dict, seed: int):
        self.level = options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        return self.gram_backward(losses, shared_params, min_norm_weights, heads_weighted=True)
