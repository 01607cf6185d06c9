"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", NeurIPS): the online trunk → projector → predictor
regresses a slowly moving target network's projection of the other view, with no negatives.

Its loss is per example, so several processes need no gathering; what couples a batch's examples is the
BatchNorm of the projector and predictor (and the target's), synchronized by `train.sync_batch_norm` as the
paper's global BatchNorm over all TPU cores.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.distributed.gather import mean_over_ranks
from hydranet.registry import register
from hydranet.ssl.methods.simclr import mlp_head
from hydranet.ssl.views import ViewMaker


class BYOLOptions(Options):
    """Options of `ssl.method: {name: byol, …}`."""

    projection_dim: int = Field(128, ge=1, description="output width of the projector and predictor")
    projection_hidden: int = Field(512, ge=1, description="hidden width of the projector and predictor")
    tau: float = Field(0.99, ge=0, le=1, description="base EMA rate of the target network, raised to 1 along a cosine over training")


@register("ssl", "byol", options=BYOLOptions)
class BYOL(nn.Module):
    """Online trunk → projector → predictor regresses the target network's projection of the other view
    (Grill et al. 2020); the target is an EMA of the online trunk and projector, never optimized."""

    name = "byol"

    def __init__(self, options: BYOLOptions, trunk: nn.Module, views: ViewMaker):
        super().__init__()
        self.options, self.views = options, views
        hidden, out = options.projection_hidden, options.projection_dim
        self.projector = mlp_head(trunk.out_dim, hidden, out)
        self.predictor = mlp_head(out, hidden, out)
        self.target = nn.ModuleDict({"trunk": copy.deepcopy(trunk), "projector": copy.deepcopy(self.projector)})
        self.target.requires_grad_(False)

    def on_epoch_start(self, trainer) -> None:
        self.views.on_epoch_start(trainer)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.views.pair(batch["x"])
        both = torch.cat([v1, v2])
        with self.views.cast(both):
            p1, p2 = self.predictor(self.projector(model.trunk(both))).chunk(2)
            with torch.no_grad():
                t1, t2 = self.target["projector"](self.target["trunk"](both)).chunk(2)
        loss = _regression(p1, t2) + _regression(p2, t1)  # symmetrized, as in the paper
        return {self.name: mean_over_ranks(loss, len(p1))}

    def tau(self, step: int, total: int) -> float:
        """τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2: from τ_base up to 1 at the end of training."""
        return 1 - (1 - self.options.tau) * (math.cos(math.pi * step / max(1, total)) + 1) / 2

    @torch.no_grad()
    def on_step_end(self, trainer, losses: dict) -> None:
        tau = self.tau(trainer.step, trainer.total_steps)
        online = [*trainer.model.trunk.parameters(), *self.projector.parameters()]
        target = [*self.target["trunk"].parameters(), *self.target["projector"].parameters()]
        torch._foreach_lerp_(target, online, 1 - tau)  # target ← τ·target + (1 − τ)·online
        for t, o in zip([*self.target["trunk"].buffers(), *self.target["projector"].buffers()],
                        [*trainer.model.trunk.buffers(), *self.projector.buffers()]):
            t.copy_(o)  # BatchNorm statistics follow the online network


def _regression(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's 2 − 2·cos(p, z), summed over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=-1)).sum()
