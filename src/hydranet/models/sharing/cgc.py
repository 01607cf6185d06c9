"""CGC, Customized Gate Control (Tang et al., 2020, RecSys; one level of PLE): shared plus per-task experts.

Task t's gate mixes its own `task_experts` experts and the `shared_experts` shared ones;
separating the two eases the "seesaw" where one task improves at another's expense.
"""

from __future__ import annotations

from pydantic import Field

from hydranet.errors import UserError
from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import ModelParts
from hydranet.models.sharing.experts import ExpertOptions, GatedExperts, build_experts
from hydranet.registry import register


class CGCOptions(ExpertOptions):
    """Options of `model.sharing: {name: cgc, …}`."""

    shared_experts: int = Field(2, ge=0, description="experts every task's gate may use")
    task_experts: int = Field(1, ge=0, description="experts of each task's own, used by that task's gate only")


def cgc_routes(tasks: list[str], shared: int, own: int) -> dict[str, list[int]]:
    """Experts 0..shared-1 are shared; then each task's own block of `own` experts, in task order."""
    return {task: [*range(shared), *range(shared + i * own, shared + (i + 1) * own)] for i, task in enumerate(tasks)}


@register("sharing", "cgc", options=CGCOptions)
def cgc(options: CGCOptions, parts: ModelParts) -> HydraNet:
    """Shared experts (the shared parameters) plus experts of each task's own, one gate per task."""
    if options.shared_experts + options.task_experts == 0:
        raise UserError("model.sharing.task_experts: cgc needs at least one expert per task; shared_experts and task_experts are both 0")
    n = options.shared_experts + len(parts.tasks) * options.task_experts
    routes = cgc_routes(list(parts.tasks), options.shared_experts, options.task_experts)
    experts = build_experts(parts, n, options.expert_width_mult, "cgc")
    return parts.model(GatedExperts(experts, routes, parts.input_shape, options.gate_pool))
