"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", ICML):
two random views of every example, trunk → projection head, and the NT-Xent loss between them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.distributed.gather import all_gather_with_grad, mean_over_ranks
from hydranet.registry import register
from hydranet.ssl.views import ViewMaker


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (Chen et al. 2020): each of this rank's 2b embeddings must pick its partner view among all the other
    embeddings of the global batch by cosine similarity / τ; the mean cross-entropy over all anchors.

    With several processes the candidates are every rank's embeddings (gathered with gradients), so there are
    2N − 2 negatives for a global batch of N, as in one process, and each rank returns its anchors' share of the
    mean (`mean_over_ranks`): the average over ranks, whose gradient the trainer's all-reduce computes, is the one-process loss."""
    local = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2b, d): this rank's view-1 rows, then its view-2 rows
    everyone, start = all_gather_with_grad(local)  # (2N, d): every rank's block in rank order; ours at `start`
    n = z1.shape[0]
    logits = local @ everyone.T / temperature  # (2b, 2N)
    anchor = torch.arange(2 * n, device=local.device)
    logits[anchor, start + anchor] = float("-inf")  # an embedding is not its own positive nor a negative
    partner = start + torch.cat([anchor[n:], anchor[:n]])  # the other view of the same example, by global index
    return mean_over_ranks(F.cross_entropy(logits, partner, reduction="sum"), 2 * n)


def mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear → BatchNorm → ReLU → Linear: SimCLR's projection head and BYOL's projector/predictor."""
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class SimCLROptions(Options):
    """Options of `ssl.method: {name: simclr, …}`."""

    temperature: float = Field(0.5, gt=0, description="temperature τ of the NT-Xent loss")
    projection_dim: int = Field(128, ge=1, description="output width of the projection head")
    projection_hidden: int = Field(512, ge=1, description="hidden width of the projection head")


@register("ssl", "simclr", options=SimCLROptions)
class SimCLR(nn.Module):
    """Trunk → projection head → NT-Xent between two views of every example."""

    name = "simclr"

    def __init__(self, options: SimCLROptions, trunk: nn.Module, views: ViewMaker):
        super().__init__()
        self.options, self.views = options, views
        self.projector = mlp_head(trunk.out_dim, options.projection_hidden, options.projection_dim)

    def on_epoch_start(self, trainer) -> None:
        self.views.on_epoch_start(trainer)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.views.pair(batch["x"])
        with self.views.cast(v1):
            z = self.projector(model.trunk(torch.cat([v1, v2])))  # one pass: BatchNorm sees both views
        z1, z2 = z.chunk(2)
        return {self.name: nt_xent(z1, z2, self.options.temperature)}
