"""The HydraNet module: one shared trunk, one head per task, forward → {task: prediction}.

How the trunk is shared (hard, or soft architectures whose trunk returns per-task features) is decided
by the sharing factories in `models/sharing/`; this module only routes features to heads.
"""

from __future__ import annotations

from torch import Tensor, nn


class HydraNet(nn.Module):
    """Trunk features → every task head.

    A trunk returns either one (B, D) tensor shared by all heads (hard sharing) or a dict
    {task: (B, D)} when each task gets its own mixture of shared parts (soft sharing, e.g. MMoE).
    """

    def __init__(self, trunk: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)
        # Temperature scaling (`hydranet calibrate`, set by `load_run` from calibration.json): these tasks' outputs
        # are divided by their T inside forward, so every reader of the model (predict, evaluate, serving, the
        # ONNX export) applies it. Plain floats, not weights: the weights file stays what training wrote.
        self.temperatures: dict[str, float] = {}
        # `model.ensemble: k` (models/ensemble.py): the batch runs once per member, member-major, and the members'
        # predictions are averaged, in training as in evaluation, so every reader sees one prediction per example.
        # In training the members' own outputs (k·B rows, member-major) stay in `member_outputs` for the loss: TabM
        # trains each member on its own loss, not the loss of their average. None when there is nothing to keep.
        self.members = 1
        self.member_outputs: dict[str, Tensor] | None = None
        self.features: Tensor | dict[str, Tensor] | None = None  # the last forward's, for the gradient methods
        self.head_inputs: dict[str, Tensor] | None = None
        # a view of z per head in training, asked for by a representation-level gradient method (mtl/gradients.py)
        self.head_views = False

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.members > 1:
            x = x.repeat(self.members, *[1] * (x.dim() - 1))  # (k·B, …): member 0's rows first
        features = self.trunk(x)
        # kept for methods that work on the shared representation (MGDA-UB); replaced every forward.
        # Soft sharing (mmoe, cgc, cross_stitch) gives a dict {task: (B, D)}: each task's own features.
        self.features = features
        self.head_inputs = head_inputs(features, self.heads, self.training and self.head_views)
        outputs = {task: head(self.head_inputs[task]) for task, head in self.heads.items()}
        self.member_outputs = outputs if self.members > 1 and self.training else None
        if self.members > 1:
            outputs = {task: out.unflatten(0, (self.members, -1)).mean(0) for task, out in outputs.items()}
        for task, temperature in self.temperatures.items():
            outputs[task] = outputs[task] / temperature
        return outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches (gradient-balancing methods act on these).

        The whole trunk, unless the trunk says otherwise with its own `shared_parameters()` (MMoE's
        gates, CGC's task experts are reached by one task's loss only).
        """
        own = getattr(self.trunk, "shared_parameters", None)
        return list(own()) if callable(own) else list(self.trunk.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only this task's loss reaches: its head, plus the trunk's `task_parameters(task)` if any."""
        own = getattr(self.trunk, "task_parameters", None)
        trunk_part = list(own(task)) if callable(own) else []
        return [*self.heads[task].parameters(), *trunk_part]


def head_inputs(features: Tensor | dict[str, Tensor], heads: nn.ModuleDict, views: bool) -> dict[str, Tensor]:
    """What each head reads: its own features under soft sharing; under hard sharing z, or with `views` (training
    under a representation-level gradient method) its own view of z, no copy. A view per head is the autograd node
    where that task's gradient on z arrives alone, so those methods get every task's gradient on z from one backward
    through the heads (`mtl.gradients.head_rows`), not one per task; other runs, evaluation and exports keep the
    graph without them."""
    if isinstance(features, dict):
        return features
    if views and features.requires_grad:
        return {task: features.view_as(features) for task in heads}
    return dict.fromkeys(heads, features)
