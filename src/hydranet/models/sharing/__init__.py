"""How tasks share a model, registered by name (`model.sharing`), and `build_model` that picks one.

One module per architecture: hard (one trunk for all), mmoe and cgc (gated experts), cross_stitch
(one column per task, mixed between stages). Importing this package registers all of them.
"""

from __future__ import annotations

from hydranet import registry
from hydranet.config import ModelConfig
from hydranet.errors import UserError
from hydranet.models.ensemble import make_ensemble
from hydranet.models.hydranet import HydraNet
from hydranet.models.resize import resize
from hydranet.models.sharing import cgc, cross_stitch, hard, mmoe  # noqa: F401  (register the built-ins)
from hydranet.models.sharing.base import ModelParts
from hydranet.tasks import Task


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], tasks: dict[str, Task],
                cardinalities: tuple[int, ...] = (), new_run: bool = False) -> HydraNet:
    """The model of a config: the sharing named by `model.sharing` wires trunk and heads, at the widths structured
    pruning left when `model.pruned` lists them, as `model.ensemble` members. `cardinalities` marks a table's inputs
    that hold category codes (`TableEncoder.cardinalities`). For a `new_run`, TabM-mini's one adapter is refused
    where the sharing built several trunks (counted by `ModelParts.new_trunk`, so a plugin's sharing is judged as the
    built-ins); runs saved before that refusal still load and resume."""
    factory = registry.get("sharing", cfg.sharing.name, "model.sharing")
    parts = ModelParts.of(cfg, input_shape, tasks, cardinalities)
    model = resize(factory(cfg.sharing.options, parts), cfg.pruned)
    style = cfg.ensemble_style or "tabm"
    if new_run and cfg.ensemble > 1 and style == "mini" and parts.trunks > 1:
        raise UserError(f"model.ensemble_style: mini adapts the first linear layer of one trunk, and model.sharing "
                        f"{cfg.sharing.name} builds {parts.trunks} (its experts or columns), so the members would "
                        f"differ in the first of them alone; use ensemble_style tabm, or model.sharing hard")
    return make_ensemble(model, cfg.ensemble, style)


__all__ = ["ModelParts", "build_model"]
