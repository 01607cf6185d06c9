"""How tasks share a model, registered by name (`model.sharing`), and `build_model` that picks one.

A sharing factory takes `(ModelConfig, input_shape, tasks)` and returns a HydraNet; hard sharing is
one trunk feeding every head, soft architectures (MMoE, CGC/PLE, cross-stitch) plug in beside it.
"""

from __future__ import annotations

from hydranet import registry
from hydranet.config import ModelConfig
from hydranet.models import trunks as _trunks  # noqa: F401  (registers the built-in trunks)
from hydranet.models.hydranet import HydraNet
from hydranet.registry import register
from hydranet.tasks import Task


@register("sharing", "hard")
def hard(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task]) -> HydraNet:
    """One trunk shared by all tasks, one head each (Caruana, 1997): the default, and hard to beat."""
    trunk = registry.get("trunk", cfg.trunk.name, "model.trunk.name")(cfg.trunk, tuple(input_shape))
    heads = {name: task.head(trunk.out_dim, cfg.head_hidden, cfg.head_dropout) for name, task in tasks.items()}
    return HydraNet(trunk, heads)


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task]) -> HydraNet:
    """The model of a config: the sharing named by `model.sharing` wires trunk and heads."""
    return registry.get("sharing", cfg.sharing, "model.sharing")(cfg, tuple(input_shape), tasks)
