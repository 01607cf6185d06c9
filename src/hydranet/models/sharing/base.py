"""What every sharing factory wires together: trunks of the configured kind and one head per task.

A sharing factory takes `(options, parts)`: its own validated options (`model.sharing: {name, …}`) and these
`ModelParts`, and returns a HydraNet; it never sees the rest of the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hydranet import registry
from hydranet.config import Method, ModelConfig
from hydranet.errors import UserError
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
    """The trunk method, input shape, tasks and head settings of one model; `cardinalities` marks a table's inputs
    that hold category codes (`TableEncoder.cardinalities`: 0 for a number; empty for other inputs)."""

    trunk: Method
    input_shape: tuple[int, ...]
    tasks: dict[str, Task]
    head_hidden: tuple[int, ...] = ()
    head_dropout: float = 0.0
    cardinalities: tuple[int, ...] = ()
    trunks: int = field(default=0, compare=False)  # how many `new_trunk` built: experts or columns of soft sharing

    @classmethod
    def of(cls, cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task],
           cardinalities: tuple[int, ...] = ()) -> "ModelParts":
        return cls(cfg.trunk, tuple(input_shape), tasks, tuple(cfg.head_hidden), cfg.head_dropout, tuple(cardinalities))

    def new_trunk(self, width_mult: float = 1.0) -> nn.Module:
        """A fresh, independently initialized trunk (widths scaled by `width_mult`, for narrower experts).

        Inputs that hold category codes go only to a trunk that embeds them (its factory says so with
        `embeds_categories` and takes the cardinalities): any other trunk would read the codes as numbers.
        """
        factory = registry.get("trunk", self.trunk.name, "model.trunk.name")
        options = scaled(self.trunk.options, width_mult)
        self.trunks += 1
        if not any(self.cardinalities):
            return factory(options, self.input_shape)
        if not getattr(factory, "embeds_categories", False):
            takes = ", ".join(n for n in registry.names("trunk") if getattr(registry.get("trunk", n), "embeds_categories", False))
            raise UserError(f"model.trunk.name: {self.trunk.name} does not embed category codes "
                            f"(data.encoder.categorical: embedding); expected one of {takes}, or categorical: onehot")
        return factory(options, self.input_shape, self.cardinalities)

    def heads(self, in_dim: int, feature_map: bool = False) -> dict[str, nn.Module]:
        """One head per task on (B, in_dim) features, or on a (B, in_dim, H, W) map when `feature_map`."""
        return {name: task.head(in_dim, self.head_hidden, self.head_dropout, feature_map) for name, task in self.tasks.items()}

    def model(self, trunk: nn.Module) -> HydraNet:
        """The HydraNet of a (possibly composite) trunk with one head per task on its features (a trunk whose
        `feature_map` is true gives a map: dense tasks get conv heads, the others pool it)."""
        return HydraNet(trunk, self.heads(trunk.out_dim, bool(getattr(trunk, "feature_map", False))))
