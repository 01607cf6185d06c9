"""Hard parameter sharing: one trunk feeds every task head.

The default, and hard to beat (Caruana, 1997); every trunk parameter is shared.
"""

from __future__ import annotations

from hydranet.config import NoOptions
from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing.base import ModelParts
from hydranet.registry import register


@register("sharing", "hard")
def hard(options: NoOptions, parts: ModelParts) -> HydraNet:
    """One trunk shared by all tasks, one head each (Caruana, 1997)."""
    return parts.model(parts.new_trunk())
