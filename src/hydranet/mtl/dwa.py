"""Dynamic Weight Average (Liu, Johns & Davison, 2019, "End-to-End Multi-Task Learning with Attention",
CVPR): weights from how fast each term's mean training loss fell over the last two epochs.
"""

from __future__ import annotations

import math

from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.registry import register


def dwa_weights(before: dict[str, float], last: dict[str, float], temperature: float) -> dict[str, float]:
    """w_t = T·softmax(r_t / temperature), r_t = L_t(e−1) / L_t(e−2); a ratio that is not finite counts as 1."""
    ratios = {}
    for name, loss in last.items():
        ratio = loss / before[name] if before.get(name) else math.nan
        ratios[name] = ratio if math.isfinite(ratio) else 1.0
    top = max(ratios.values())  # subtracted before exp for stability; softmax is unchanged
    exps = {name: math.exp((r - top) / temperature) for name, r in ratios.items()}
    scale = len(exps) / sum(exps.values())
    return {name: e * scale for name, e in exps.items()}


class DWAOptions(Options):
    """Options of `mtl.balancer: {name: dwa, …}`."""

    temperature: float = Field(2.0, gt=0, description="softmax temperature of the loss-descent ratios (Liu et al., 2019)")


@register("balancer", "dwa", options=DWAOptions)
class DWA:
    """Weights change once per epoch (in `on_epoch_end`), so a step is one backward and never syncs.

    Weight 1 for every term during the first two epochs (no ratio yet), as in the paper; a term first seen
    later keeps weight 1 until it has two epochs of history. Every loss term counts as a task.
    """

    def __init__(self, options: DWAOptions, tasks: dict, seed: int):
        self.temperature = options.temperature
        self.epoch_losses: list[dict[str, float]] = []  # mean train loss per term of the last two epochs
        self.weights: dict[str, float] = {}

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        used = {name: self.weights.get(name, 1.0) for name in losses}
        sum(used[name] * loss for name, loss in losses.items()).backward()
        return used

    def on_epoch_end(self, trainer, record: dict) -> None:
        train = record["train"]
        means = {name: v["loss"] for name, v in train.items() if isinstance(v, dict) and "loss" in v}
        self.epoch_losses = [*self.epoch_losses, means][-2:]
        self.update()

    def update(self) -> None:
        if len(self.epoch_losses) < 2:
            self.weights = {}
            return
        before, last = self.epoch_losses
        known = {name: loss for name, loss in last.items() if name in before}
        self.weights = dwa_weights(before, known, self.temperature) if known else {}

    def state_dict(self) -> dict:
        return {"epoch_losses": [dict(e) for e in self.epoch_losses]}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_losses = [dict(e) for e in state["epoch_losses"]]
        self.update()
