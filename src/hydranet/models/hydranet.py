"""The HydraNet module: one shared trunk, one head per task, forward → {task: prediction}.

How the trunk is shared (hard, or soft architectures whose trunk returns per-task features) is decided
by the sharing factories in `models/sharing.py`; this module only routes features to heads.
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

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.trunk(x)
        # kept for methods that work on the shared representation (MGDA-UB); replaced every forward
        self.features = features
        if isinstance(features, dict):
            return {task: head(features[task]) for task, head in self.heads.items()}
        return {task: head(features) for task, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches (gradient-balancing methods act on these)."""
        return list(self.trunk.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters of one task's head only."""
        return list(self.heads[task].parameters())
