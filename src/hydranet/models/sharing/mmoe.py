"""MMoE, Multi-gate Mixture-of-Experts (Ma et al., 2018, KDD): experts shared by every task.

Each task's softmax gate mixes all `experts` experts, so related tasks can share experts and
unrelated ones can drift apart without a hand-chosen split point.
"""

from __future__ import annotations

from pydantic import Field

from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import ModelParts
from hydranet.models.sharing.experts import ExpertOptions, GatedExperts, build_experts
from hydranet.registry import register


class MMoEOptions(ExpertOptions):
    """Options of `model.sharing: {name: mmoe, …}`."""

    experts: int = Field(4, ge=1, description="experts (each a copy of the trunk) mixed by one softmax gate per task")


@register("sharing", "mmoe", options=MMoEOptions)
def mmoe(options: MMoEOptions, parts: ModelParts) -> HydraNet:
    """`experts` trunks as experts; every task's gate routes to all of them (all experts are shared)."""
    experts = build_experts(parts, options.experts, options.expert_width_mult, "mmoe")
    routes = {task: list(range(options.experts)) for task in parts.tasks}
    return parts.model(GatedExperts(experts, routes, parts.input_shape, options.gate_pool))
