"""CGC, Customized Gate Control (Tang et al., 2020, RecSys; one level of PLE): shared plus per-task experts.

Task t's gate mixes its own `model.task_experts` experts and the `model.shared_experts` shared ones;
separating the two eases the "seesaw" where one task improves at another's expense.
"""

from __future__ import annotations

from hydranet.config import ModelConfig
from hydranet.errors import UserError
from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import build_heads
from hydranet.models.sharing.experts import GatedExperts, build_experts
from hydranet.registry import register
from hydranet.tasks import Task


def cgc_routes(tasks: list[str], shared: int, own: int) -> dict[str, list[int]]:
    """Experts 0..shared-1 are shared; then each task's own block of `own` experts, in task order."""
    return {task: [*range(shared), *range(shared + i * own, shared + (i + 1) * own)] for i, task in enumerate(tasks)}


@register("sharing", "cgc")
def cgc(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task]) -> HydraNet:
    """Shared experts (the shared parameters) plus experts of each task's own, one gate per task."""
    if cfg.shared_experts + cfg.task_experts == 0:
        raise UserError("model.task_experts: cgc needs at least one expert per task; model.shared_experts and model.task_experts are both 0")
    n = cfg.shared_experts + len(tasks) * cfg.task_experts
    routes = cgc_routes(list(tasks), cfg.shared_experts, cfg.task_experts)
    trunk = GatedExperts(build_experts(cfg, input_shape, n), routes, input_shape, cfg.gate_pool)
    return HydraNet(trunk, build_heads(cfg, tasks, trunk.out_dim))
