"""How tasks share a model, registered by name (`model.sharing`), and `build_model` that picks one.

One module per architecture: hard (one trunk for all), mmoe and cgc (gated experts), cross_stitch
(one column per task, mixed between stages). Importing this package registers all of them.
"""

from __future__ import annotations

from hydranet import registry
from hydranet.config import ModelConfig
from hydranet.models.ensemble import make_ensemble
from hydranet.models.hydranet import HydraNet
from hydranet.models.resize import resize
from hydranet.models.sharing import cgc, cross_stitch, hard, mmoe  # noqa: F401  (register the built-ins)
from hydranet.models.sharing.base import ModelParts
from hydranet.tasks import Task


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task],
                cardinalities: tuple[int, ...] = ()) -> HydraNet:
    """The model of a config: the sharing named by `model.sharing` wires trunk and heads, at the widths structured
    pruning left when `model.pruned` lists them, as `model.ensemble` members. `cardinalities` marks a table's inputs
    that hold category codes (`TableEncoder.cardinalities`)."""
    factory = registry.get("sharing", cfg.sharing.name, "model.sharing")
    model = resize(factory(cfg.sharing.options, ModelParts.of(cfg, input_shape, tasks, cardinalities)), cfg.pruned)
    return make_ensemble(model, cfg.ensemble, cfg.ensemble_style)


__all__ = ["ModelParts", "build_model"]
