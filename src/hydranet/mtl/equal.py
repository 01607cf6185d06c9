"""Equal weighting: the plain sum of every loss term, the baseline every balancer must beat.

Often competitive in practice (Xin et al., 2022, "Do Current Multi-Task Optimization Methods in Deep
Learning Even Help?", NeurIPS).
"""

from __future__ import annotations

from torch import Tensor, nn

from hydranet.config import Options
from hydranet.registry import register


@register("balancer", "equal")
class Equal:
    """Backward of Σ_t L_t; every term (task, adversarial, self-supervised) gets weight 1."""

    def __init__(self, options: Options, tasks: dict, seed: int):
        self.tasks = tasks

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        sum(losses.values()).backward()
        return {name: 1.0 for name in losses}
