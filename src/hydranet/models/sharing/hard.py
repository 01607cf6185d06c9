"""Hard parameter sharing: one trunk feeds every task head.

The default, and hard to beat (Caruana, 1997); every trunk parameter is shared.
"""

from __future__ import annotations

from hydranet.config import ModelConfig
from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import build_heads, build_trunk
from hydranet.registry import register
from hydranet.tasks import Task


@register("sharing", "hard")
def hard(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task]) -> HydraNet:
    """One trunk shared by all tasks, one head each (Caruana, 1997)."""
    trunk = build_trunk(cfg.trunk, input_shape)
    return HydraNet(trunk, build_heads(cfg, tasks, trunk.out_dim))
