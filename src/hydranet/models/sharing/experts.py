"""Gated mixtures of experts, the common core of MMoE and CGC: experts, softmax gates, routing.

`GatedExperts` computes each expert once and gives every task its own gate-weighted sum of the
experts it routes to; which experts a task may use is the only difference between MMoE and CGC.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.errors import UserError
from hydranet.models.sharing.base import ModelParts


class ExpertOptions(Options):
    """What MMoE and CGC share: how wide each expert is and what its gate sees."""

    expert_width_mult: float = Field(1.0, gt=0, description="scale every trunk width (the trunk's `widths` options) of each expert")
    gate_pool: int = Field(4, ge=1, description="on images: gates see the input average-pooled to this square side (tables: the flat input)")


def build_experts(parts: ModelParts, n: int, width_mult: float, sharing: str) -> list[nn.Module]:
    """`n` independently initialized trunks (different inits let experts specialize); narrower experts
    (`width_mult` < 1) keep an MoE's cost near one trunk's. A trunk the gates cannot mix is refused (`sharing`,
    the method's name, says whose refusal it is)."""
    first = parts.new_trunk(width_mult)
    trunk = parts.trunk.name
    if getattr(first, "token_ids", False):
        raise UserError(f"model.sharing: {sharing} gates read the flattened input, which means nothing for the token "
                        f"ids model.trunk.name {trunk!r} reads here; use model.sharing hard for texts")
    return [first, *(parts.new_trunk(width_mult) for _ in range(n - 1))]


class Gate(nn.Module):
    """Softmax weights over experts computed from the input, (B, ...) → (B, E), rows summing to 1.

    Tables: a linear layer on the flat input, as in Ma et al. (2018). Images: on the input average-pooled
    to a `pool`×`pool` grid, so the gate's size does not grow with the resolution (a flat 224² RGB image
    would give 150k inputs per expert) while it still sees the coarse layout; a global average
    (pool 1) would leave it only each channel's mean. A pool equal to the image side is the flat input.
    """

    def __init__(self, input_shape: tuple[int, ...], n_experts: int, pool: int):
        super().__init__()
        if len(input_shape) == 3:
            self.summary: nn.Module = nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten())
            in_dim = input_shape[0] * pool * pool
        else:
            self.summary = nn.Flatten()
            in_dim = math.prod(input_shape)
        self.linear = nn.Linear(in_dim, n_experts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(self.summary(x)), dim=-1)  # (B, E)


class GatedExperts(nn.Module):
    """Experts shared through per-task gates: task t's features = Σ_e g_t,e(x)·expert_e(x), a dict {t: (B, D)}.

    Experts whose features are a map (unet, `feature_map`) are mixed the same way, one weight per image and expert
    for the whole map (B, D, H, W): a task picks the experts that suit it, as on vectors; dense heads then read
    their task's mixed map.

    `routes[t]` lists the experts (indices) task t's gate mixes. An expert every task routes to is
    shared: every task's loss reaches it. A task's gate and the experts only it routes to are its own.
    """

    def __init__(self, experts: list[nn.Module], routes: dict[str, list[int]], input_shape: tuple[int, ...], pool: int):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.routes = {task: list(route) for task, route in routes.items()}
        self.gates = nn.ModuleDict({task: Gate(input_shape, len(route), pool) for task, route in self.routes.items()})
        self.out_dim = int(experts[0].out_dim)
        self.feature_map = bool(getattr(experts[0], "feature_map", False))
        self.gate_weights: dict[str, Tensor] = {}  # last forward's gates, detached: for diagnostics

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs = [expert(x) for expert in self.experts]  # E × (B, D)
        features = {}
        for task, route in self.routes.items():
            weights = self.gates[task](x)  # (B, E_t)
            stacked = torch.stack([outputs[e] for e in route], dim=1)  # (B, E_t, D[, H, W])
            features[task] = torch.einsum("be,be...->b...", weights, stacked)  # (B, D[, H, W])
            self.gate_weights[task] = weights.detach()
        return features

    def _shared_experts(self) -> set[int]:
        return set.intersection(*(set(route) for route in self.routes.values()))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Experts every task routes to; the gates are not shared (gate t only gets task t's gradient)."""
        return [p for e in sorted(self._shared_experts()) for p in self.experts[e].parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """The task's gate and the experts no other task routes to."""
        others = set().union(*(set(route) for name, route in self.routes.items() if name != task))
        own = [e for e in self.routes[task] if e not in others and e not in self._shared_experts()]
        return [*self.gates[task].parameters(), *(p for e in own for p in self.experts[e].parameters())]
