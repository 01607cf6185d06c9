"""GradDrop, gradient sign dropout (Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, 2020, "Just Pick a
Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS): per coordinate, keep one sign.
"""

from __future__ import annotations

from pydantic import Field
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientMethod, GradientOptions, backward_combined, independent_backward
from hydranet.randomness import Purpose, stream
from hydranet.registry import register


def sign_purity(grads: Tensor) -> Tensor:
    """(P,) P = ½(1 + Σ_t g_t / Σ_t |g_t|): 1 where every gradient is positive, 0 where every one is negative.

    A coordinate where every gradient is 0 gets ½ (its masks only ever keep zeros).
    """
    total = grads.abs().sum(0)
    return 0.5 * (1 + grads.sum(0) / torch.where(total > 0, total, torch.ones_like(total)))


def graddrop_combine(grads: Tensor, uniform: Tensor, leak: float = 0.0) -> Tensor:
    """(P,) Σ_t (leak + (1 − leak)·M_t) ⊙ g_t with M_t = [P > U]·[g_t > 0] + [P < U]·[g_t < 0] (Algorithm 1).

    `uniform` (P,) holds the U ~ Uniform(0, 1) draws: per coordinate one sign survives, the positive one with
    probability P, so a coordinate where the tasks agree passes whole.
    """
    purity = sign_purity(grads)
    keep_positive, keep_negative = purity > uniform, purity < uniform  # (P,) each
    masks = keep_positive & (grads > 0) | keep_negative & (grads < 0)  # (T, P)
    return ((leak + (1 - leak) * masks.to(grads.dtype)) * grads).sum(0)


class GradDropOptions(GradientOptions):
    """Options of `mtl.balancer: {name: graddrop, …}`."""

    leak: float = Field(0.0, ge=0, le=1, description="fraction of every task gradient that passes unmasked (the paper's leak; 1: the plain sum)")


@register("balancer", "graddrop", options=GradDropOptions)
class GradDrop(GradientMethod):
    """Shared parameters get the sign-dropped sum of the task gradients; task-specific ones their own gradient.

    The paper applies the mask to gradients on a shared activation: `gradients: representation` does that, per
    coordinate of the shared features z (one per example and feature), then backpropagates the masked sum
    through the trunk. By default it masks the gradients on the shared parameters, as torchjd's `GradDrop`
    does, which works with soft sharing too. The uniform draws come from the `GRADDROP` stream (a CPU
    generator, checkpointed: exact resume), one per coordinate and step;
    nothing syncs with the device. Returned weights: 1 per term (the mask is per coordinate, not per term).
    """

    def __init__(self, options: GradDropOptions, tasks: dict, seed: int):
        self.leak, self.level = options.leak, options.gradients
        self.generator = stream(seed, Purpose.GRADDROP)

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        if not shared_params:
            return independent_backward(losses)
        weights = {name: 1.0 for name in losses}
        grads = self.task_gradients(losses, shared_params)  # (T, P), or (T, B·D) on the features
        uniform = torch.rand(grads.matrix.shape[1], generator=self.generator, dtype=grads.matrix.dtype)
        combined = graddrop_combine(grads.matrix, uniform.to(grads.matrix.device, non_blocking=True), self.leak)
        backward_combined(losses, shared_params, grads, combined, weights)
        return weights

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].clone())
