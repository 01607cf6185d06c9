"""What every sharing factory wires together: trunks of the configured kind and one head per task.

A sharing factory takes `(options, parts)`: its own validated options (`model.sharing: {name, …}`) and these
`ModelParts`, and returns a HydraNet; it never sees the rest of the config.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hydranet import registry
from hydranet.config import Method, ModelConfig
from hydranet.models import trunks as _trunks, unet as _unet  # noqa: F401  (register the built-in trunks)
from hydranet.models.hydranet import HydraNet
from hydranet.tasks import Task


def scaled(options, mult: float):
    """A trunk's options with every width (the options its class lists in `widths`) scaled by `mult`."""
    if mult == 1.0:
        return options
    names = getattr(type(options), "widths", ())
    return options.model_copy(update={n: [max(1, round(w * mult)) for w in getattr(options, n)] for n in names})


@dataclass
class ModelParts:
    """The trunk method, input shape, tasks and head settings of one model."""

    trunk: Method
    input_shape: tuple[int, ...]
    tasks: dict[str, Task]
    head_hidden: tuple[int, ...] = ()
    head_dropout: float = 0.0

    @classmethod
    def of(cls, cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task]) -> "ModelParts":
        return cls(cfg.trunk, tuple(input_shape), tasks, tuple(cfg.head_hidden), cfg.head_dropout)

    def new_trunk(self, width_mult: float = 1.0) -> nn.Module:
        """A fresh, independently initialized trunk (widths scaled by `width_mult`, for narrower experts)."""
        factory = registry.get("trunk", self.trunk.name, "model.trunk.name")
        return factory(scaled(self.trunk.options, width_mult), self.input_shape)

    def heads(self, in_dim: int, feature_map: bool = False) -> dict[str, nn.Module]:
        """One head per task on (B, in_dim) features, or on a (B, in_dim, H, W) map when `feature_map`."""
        return {name: task.head(in_dim, self.head_hidden, self.head_dropout, feature_map) for name, task in self.tasks.items()}

    def model(self, trunk: nn.Module) -> HydraNet:
        """The HydraNet of a (possibly composite) trunk with one head per task on its features (a trunk whose
        `feature_map` is true gives a map: dense tasks get conv heads, the others pool it)."""
        return HydraNet(trunk, self.heads(trunk.out_dim, bool(getattr(trunk, "feature_map", False))))
