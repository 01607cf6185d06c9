"""Static weighting: Σ_t w_t·L_t with fixed weights from `tasks.<name>.weight`.

The classic hand-tuned linear scalarization (e.g. Kendall et al., 2018, use it as their baseline);
terms that are not tasks ("digit@adv", "simclr") keep weight 1.
"""

from __future__ import annotations

from torch import Tensor, nn

from hydranet.config import Options
from hydranet.registry import register


@register("balancer", "static")
class Static:
    """Backward of the weighted sum; the weights never change, so there is no state to checkpoint."""

    def __init__(self, options: Options, tasks: dict, seed: int):
        self.weights = {name: task.cfg.weight for name, task in tasks.items()}

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        used = {name: self.weights.get(name, 1.0) for name in losses}
        sum(used[name] * loss for name, loss in losses.items()).backward()
        return used
