"""Name → implementation tables for the extension points of DESIGN.md.

YAML names a source, table encoder, trunk, sharing, balancer, perturbation, (extra) loss, self-supervised method, fairness
mitigation, meta-learning or compression method by string; `@register(kind, name, options=Model)` adds one together with the
pydantic model of its own config options, so users can plug in their own, with validated settings, without touching
hydranet. Some kinds are not named in YAML: `run_parts`, the builders through which a feature adds components to every training run
(train/surface.py), and `report_section`/`study_section`, the parts of `hydranet report` (report/context.py).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

from hydranet.errors import UserError

KINDS = ("source", "encoder", "trunk", "balancer", "sharing", "perturbation", "loss", "ssl", "mitigation", "meta", "compress",
         "run_parts", "report_section", "study_section")
_TABLES: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_OPTIONS: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}  # kind → name → options model (or None)
# Modules whose import registers the built-in implementations (imported lazily on first lookup).
_BUILTINS = ("hydranet.data.sources", "hydranet.data.tabular", "hydranet.models.trunks", "hydranet.models.ft_transformer", "hydranet.models.sequence", "hydranet.models.vit", "hydranet.models.sharing", "hydranet.mtl",
             "hydranet.robust.defenses", "hydranet.ssl.methods", "hydranet.fairness", "hydranet.monitor.reference",
             "hydranet.meta.methods", "hydranet.train.distill", "hydranet.compress.methods")
_loaded = False


def register(kind: str, name: str, options: Any = None) -> Callable[[Any], Any]:
    """Decorator: `@register("balancer", "my_method", options=MyOptions)` makes
    `mtl.balancer: {name: my_method, <option>: …}` work; the factory then receives a validated `MyOptions`.
    Without `options`, the implementation's own `Options` attribute is used if it has one (else: no options)."""
    if kind not in _TABLES:
        raise ValueError(f"unknown extension kind {kind!r} (known: {', '.join(KINDS)})")

    def add(obj: Any) -> Any:
        old = _TABLES[kind].get(name)
        if old is not None and getattr(old, "__qualname__", None) != getattr(obj, "__qualname__", None):
            warnings.warn(f"{kind} {name!r} registered again: {obj!r} replaces {old!r}", stacklevel=2)
        _TABLES[kind][name] = obj
        _OPTIONS[kind][name] = options if options is not None else getattr(obj, "Options", None)
        return obj

    return add


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTINS:
            importlib.import_module(module)


def names(kind: str) -> list[str]:
    """The registered names of one kind, sorted."""
    _load_builtins()
    return sorted(_TABLES[kind])


def get(kind: str, name: str, field: str | None = None) -> Any:
    """Look a name up; an unknown one is a UserError naming the config field and the known names."""
    _load_builtins()
    try:
        return _TABLES[kind][name]
    except KeyError:
        where = f"{field}: " if field else ""
        raise UserError(f"{where}unknown {kind} {name!r} (known: {', '.join(names(kind))})") from None


def options(kind: str, name: str) -> Any:
    """The options model a method declared (None: it takes none)."""
    _load_builtins()
    return _OPTIONS[kind].get(name)


def find(name: str, kinds: tuple[str, ...]) -> tuple[str, Any] | None:
    """(kind, implementation) of a name registered under one of `kinds` (an adversarial method is a
    perturbation or an extra loss), or None."""
    _load_builtins()
    return next(((kind, _TABLES[kind][name]) for kind in kinds if name in _TABLES[kind]), None)
