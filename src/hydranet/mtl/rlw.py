"""Random Loss Weighting (Lin, Ye, Xu, Shi & Zhang, 2022, "Reasonable Effectiveness of Random Weighting:
A Litmus Test for Multi-Task Learning", TMLR; arXiv 2021): fresh random weights every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.randomness import Purpose, stream
from hydranet.registry import register


@register("balancer", "rlw")
class RLW:
    """w = T·softmax(z), z ~ N(0, I_T) drawn each step; backward of Σ_t w_t·L_t.

    The paper's softmax weights sum to 1; they are scaled by T here so that the step size matches
    `equal` (Σ w = T) and a learning rate tuned for the plain sum still fits. The draws come from a CPU
    generator seeded from `seed` whose state is checkpointed, so a resumed run draws what the
    uninterrupted one would have; moving T numbers to the device never waits for it.
    """

    def __init__(self, options: Options, tasks: dict, seed: int):
        self.generator = stream(seed, Purpose.RLW)

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor]:
        names = list(losses)
        draw = torch.randn(len(names), generator=self.generator)  # (T,) on the CPU
        weights = len(names) * torch.softmax(draw, dim=0)
        device = next(iter(losses.values())).device
        on_device = weights.to(device, non_blocking=True)
        sum(on_device[i] * losses[name] for i, name in enumerate(names)).backward()
        return {name: weights[i] for i, name in enumerate(names)}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].clone())
