"""Pieces every sharing factory uses: a trunk from the registry, and one head per task.

A factory takes `(ModelConfig, input_shape, tasks)` and returns a HydraNet built from these.
"""

from __future__ import annotations

from torch import nn

from hydranet import registry
from hydranet.config import ModelConfig, TrunkConfig
from hydranet.models import trunks as _trunks  # noqa: F401  (registers the built-in trunks)
from hydranet.tasks import Task


def build_trunk(cfg: TrunkConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """A fresh, independently initialized trunk named by `model.trunk.name`."""
    return registry.get("trunk", cfg.name, "model.trunk.name")(cfg, tuple(input_shape))


def build_heads(cfg: ModelConfig, tasks: dict[str, Task], in_dim: int) -> dict[str, nn.Module]:
    """One head per task on (B, in_dim) features."""
    return {name: task.head(in_dim, cfg.head_hidden, cfg.head_dropout) for name, task in tasks.items()}
