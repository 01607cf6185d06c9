"""MMoE, Multi-gate Mixture-of-Experts (Ma et al., 2018, KDD): experts shared by every task.

Each task's softmax gate mixes all `model.experts` experts, so related tasks can share experts and
unrelated ones can drift apart without a hand-chosen split point.
"""

from __future__ import annotations

from hydranet.config import ModelConfig
from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import build_heads
from hydranet.models.sharing.experts import GatedExperts, build_experts
from hydranet.registry import register
from hydranet.tasks import Task


@register("sharing", "mmoe")
def mmoe(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task]) -> HydraNet:
    """`model.experts` trunks as experts; every task's gate routes to all of them (all experts are shared)."""
    experts = build_experts(cfg, input_shape, cfg.experts)
    routes = {task: list(range(cfg.experts)) for task in tasks}
    trunk = GatedExperts(experts, routes, input_shape, cfg.gate_pool)
    return HydraNet(trunk, build_heads(cfg, tasks, trunk.out_dim))
