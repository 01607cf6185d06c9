"""Cross-stitch networks (Misra et al., 2016, CVPR): one trunk column per task, mixed between stages.

After every stage a cross-stitch unit, a learned T×T matrix α, replaces each column's activation by
Σ_u α[t, u]·h_u, so the network learns how much to share at each depth instead of a fixed split point. An
encoder–decoder trunk with skip connections (unet: `stage` and `decode` instead of `stages()`) is stitched after every
encoder stage, each column's decoder reading its own stitched skips, and once more after the decoders.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.errors import UserError
from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import ModelParts
from hydranet.registry import register


class CrossStitchOptions(Options):
    """Options of `model.sharing: {name: cross_stitch, …}`."""

    self_weight: float = Field(0.9, gt=0, le=1, description="initial weight of a column on itself; the rest is split evenly among the others")


def unit_init(n_tasks: int, self_weight: float) -> Tensor:
    """(T, T) with `self_weight` on the diagonal and the rest of each row split evenly: rows sum to 1.

    Misra et al. found a near-identity start, (α_S, α_D) = (0.9, 0.1), works best: each column begins
    close to its own single-task network.
    """
    if n_tasks == 1:
        return torch.ones(1, 1)
    unit = torch.full((n_tasks, n_tasks), (1 - self_weight) / (n_tasks - 1))
    return unit.fill_diagonal_(self_weight)


def _weighted_sum(weights: Tensor, maps: list[Tensor]) -> Tensor:
    """Σ_u weights[u]·maps[u] in the maps' dtype (a 0-dim float32 weight does not promote bf16), one fused
    multiply-add per map after the first."""
    total = maps[0] * weights[0]
    for weight, h in zip(weights[1:], maps[1:]):
        total = torch.addcmul(total, h, weight)
    return total


class CrossStitch(nn.Module):
    """Columns split into stages; forward gives {task: (B, D)}, task t reading column t after the last unit.

    The columns' stages are registered here (the trunk objects are not), so each parameter has one name.
    Units are stored flat, (T·T,), so the optimizer treats them like norm scales and does not decay them:
    weight decay would pull every unit toward zero and shrink all activations with it.
    """

    def __init__(self, columns: list[nn.Module], tasks: list[str], self_weight: float):
        super().__init__()
        self.tasks = list(tasks)
        self.columns = nn.ModuleList(nn.ModuleList(column.stages()) for column in columns)  # T × S stages
        n_stages = len(self.columns[0])
        init = unit_init(len(tasks), self_weight).flatten()
        self.units = nn.ParameterList(nn.Parameter(init.clone()) for _ in range(n_stages))
        self.out_dim = int(columns[0].out_dim)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        hidden = [x] * len(self.tasks)  # T × (B, ...)
        for s, unit in enumerate(self.units):
            hidden = self.stitch(unit, [column[s](h) for column, h in zip(self.columns, hidden)])
        return dict(zip(self.tasks, hidden))  # {task: (B, D)}

    def stitch(self, unit: Tensor, outputs: list[Tensor]) -> list[Tensor]:
        """Column t's next input Σ_u α[t, u]·outputs[u], for the T columns' outputs of one stage.

        One (T, T)·(T, N) einsum, except in bf16 on a CPU: there oneDNN's AMX matmul for such thin shapes divides by
        zero for some N (SIGFPE, torch 2.13; N = 2¹⁹ did, pinned by a test), so the maps are summed with T²
        multiply-adds instead, each rounded to bf16 (the einsum rounds once)."""
        alpha = unit.view(len(outputs), len(outputs))
        h = outputs[0]
        if h.device.type == "cpu" and (h.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")):
            return [_weighted_sum(row, outputs) for row in alpha]
        return list(torch.einsum("tu,u...->t...", alpha, torch.stack(outputs)).unbind(0))  # (T, B, ...)

    def mixing(self) -> list[Tensor]:
        """The units as (T, T) matrices, row t = what column t takes from each column (for inspection)."""
        n = len(self.tasks)
        return [unit.detach().view(n, n) for unit in self.units]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Everything: through the off-diagonal α every task's loss reaches every column and every unit."""
        return list(self.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """None: column t is task t's by position only, since the units feed it to every other task."""
        return []


class SkipCrossStitch(CrossStitch):
    """Cross-stitch on encoder–decoder columns with skip connections: a unit after each encoder stage (its mixed
    output goes on down the encoder and into the column's decoder as the skip), then one on the decoders' maps, so
    dense tasks choose how much to share at every scale. Forward gives {task: (B, D, H, W)}.

    The columns are registered whole (their stages and decoders are not split out), so each parameter has one name.
    """

    def __init__(self, columns: list[nn.Module], tasks: list[str], self_weight: float):
        nn.Module.__init__(self)
        self.tasks = list(tasks)
        self.columns = nn.ModuleList(columns)
        init = unit_init(len(tasks), self_weight).flatten()
        self.units = nn.ParameterList(nn.Parameter(init.clone()) for _ in range(columns[0].n_stages + 1))
        self.out_dim = int(columns[0].out_dim)
        self.feature_map = bool(getattr(columns[0], "feature_map", False))
        self.any_size = bool(getattr(columns[0], "any_size", False))  # the units mix channels only

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        hidden = [x] * len(self.tasks)  # T × (B, C, H, W)
        skips: list[list[Tensor]] = [[] for _ in self.tasks]  # per column, each stitched stage output
        for s, unit in enumerate(self.units[:-1]):
            hidden = self.stitch(unit, [column.stage(s, h) for column, h in zip(self.columns, hidden)])
            for own, h in zip(skips, hidden):
                own.append(h)
        decoded = [column.decode(own) for column, own in zip(self.columns, skips)]
        return dict(zip(self.tasks, self.stitch(self.units[-1], decoded)))  # {task: (B, D, H, W)}


@register("sharing", "cross_stitch", options=CrossStitchOptions)
def cross_stitch(options: CrossStitchOptions, parts: ModelParts) -> HydraNet:
    """One independently initialized trunk per task, stitched after each of its stages."""
    columns = [parts.new_trunk() for _ in parts.tasks]
    if callable(getattr(columns[0], "stages", None)):
        return parts.model(CrossStitch(columns, list(parts.tasks), options.self_weight))
    if callable(getattr(columns[0], "decode", None)):
        return parts.model(SkipCrossStitch(columns, list(parts.tasks), options.self_weight))
    raise UserError(
        f"model.sharing: cross_stitch needs a trunk with stages() (the built-in mlp, cnn and resnet have them) or an "
        f"encoder-decoder with n_stages, stage() and decode() (unet); model.trunk.name {parts.trunk.name!r} has neither"
    )
