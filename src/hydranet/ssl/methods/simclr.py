"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", ICML):
two random views of every example, trunk → projection head, and the NT-Xent loss between them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.registry import register
from hydranet.ssl.views import ViewMaker

def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (Chen et al. 2020): each of the 2B embeddings must pick its partner view among the other
    2B − 1 by cosine similarity / τ; the mean cross-entropy over all 2B anchors."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # an embedding is not its own positive nor a negative
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


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
