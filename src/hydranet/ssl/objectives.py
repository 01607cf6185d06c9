"""Self-supervised objectives for `hydranet pretrain`, registered under the `ssl` kind.

An objective is an nn.Module made by `factory(cfg, trunk, info)`; the trainer calls it like any other
objective, `objective(model, batch) → {name: loss}`, optimizes its own parameters (projection heads,
decoders) with the trunk, checkpoints its state and calls its hooks. Views are drawn from a generator
reseeded every epoch, so a resumed pretraining replays the same views.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydranet.config import Config
from hydranet.randomness import Purpose, stream
from hydranet.registry import register
from hydranet.ssl.views import image_view, scarf
from hydranet.train.precision import autocast


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


class ViewMaker(nn.Module):
    """Base of objectives that draw random views or corruptions: a per-epoch generator, image or table
    views, and the run's train.precision (bf16 autocast) around their forward passes."""

    def __init__(self, cfg: Config, info: dict):
        super().__init__()
        self.cfg, self.ssl = cfg, cfg.ssl
        self.is_image = info.get("kind") == "image"
        if self.is_image:
            self.register_buffer("mean", torch.tensor(info["mean"]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(info["std"]).view(1, -1, 1, 1), persistent=False)
        self.generator = stream(cfg.seed, Purpose.SSL_VIEWS, 0)

    def on_epoch_start(self, trainer) -> None:
        self.generator = stream(self.cfg.seed, Purpose.SSL_VIEWS, trainer.epoch)

    def cast(self, x: Tensor):
        return autocast(x.device, self.cfg.train.precision)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Two views: two random image views, or for tables the row and its SCARF corruption."""
        if self.is_image:
            return (image_view(x, self.ssl, self.mean, self.std, self.generator),
                    image_view(x, self.ssl, self.mean, self.std, self.generator))
        return x, scarf(x, self.ssl.corruption, self.generator)


class SimCLR(ViewMaker):
    """Trunk → projection head → NT-Xent between two views of every example."""

    name = "simclr"

    def __init__(self, cfg: Config, trunk: nn.Module, info: dict):
        super().__init__(cfg, info)
        self.projector = mlp_head(trunk.out_dim, self.ssl.projection_hidden, self.ssl.projection_dim)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.views(batch["x"])
        with self.cast(v1):
            z = self.projector(model.trunk(torch.cat([v1, v2])))  # one pass: BatchNorm sees both views
        z1, z2 = z.chunk(2)
        return {self.name: nt_xent(z1, z2, self.ssl.temperature)}


class BYOL(ViewMaker):
    """Online trunk → projector → predictor regresses the target network's projection of the other view
    (Grill et al. 2020); the target is an EMA of the online trunk and projector, never optimized."""

    name = "byol"

    def __init__(self, cfg: Config, trunk: nn.Module, info: dict):
        super().__init__(cfg, info)
        hidden, out = self.ssl.projection_hidden, self.ssl.projection_dim
        self.projector = mlp_head(trunk.out_dim, hidden, out)
        self.predictor = mlp_head(out, hidden, out)
        self.target = nn.ModuleDict({"trunk": copy.deepcopy(trunk), "projector": copy.deepcopy(self.projector)})
        self.target.requires_grad_(False)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.views(batch["x"])
        both = torch.cat([v1, v2])
        with self.cast(both):
            p1, p2 = self.predictor(self.projector(model.trunk(both))).chunk(2)
            with torch.no_grad():
                t1, t2 = self.target["projector"](self.target["trunk"](both)).chunk(2)
        loss = _regression(p1, t2) + _regression(p2, t1)  # symmetrized, as in the paper
        return {self.name: loss}

    def tau(self, step: int, total: int) -> float:
        """τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2: from τ_base up to 1 at the end of training."""
        return 1 - (1 - self.ssl.byol_tau) * (math.cos(math.pi * step / max(1, total)) + 1) / 2

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
    """BYOL's 2 − 2·cos(p, z), averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=-1)).mean()


class Denoising(ViewMaker):
    """Denoising autoencoder (Vincent et al. 2008): zero a random share of the input values and add
    Gaussian noise, encode with the trunk, reconstruct the clean input with a light MLP decoder (MSE)."""

    name = "denoising"

    def __init__(self, cfg: Config, trunk: nn.Module, info: dict):
        super().__init__(cfg, info)
        size = int(torch.Size(info["input_shape"]).numel())
        self.decoder = nn.Sequential(nn.Linear(trunk.out_dim, self.ssl.decoder_hidden), nn.ReLU(),
                                     nn.Linear(self.ssl.decoder_hidden, size))

    def corrupt(self, x: Tensor) -> Tensor:
        keep = (torch.rand(x.shape, generator=self.generator) >= self.ssl.mask_ratio).to(x.device)
        noise = torch.randn(x.shape, generator=self.generator).to(x.device) * self.ssl.noise_std
        return torch.where(keep, x, torch.zeros((), device=x.device)) + noise

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["x"]
        with self.cast(x):
            recon = self.decoder(model.trunk(self.corrupt(x)))
        return {self.name: F.mse_loss(recon.float(), x.flatten(1).float())}


register("ssl", "simclr")(SimCLR)
register("ssl", "byol")(BYOL)
register("ssl", "denoising")(Denoising)
