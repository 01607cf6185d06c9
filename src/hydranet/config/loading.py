"""Reading an experiment: built-in names and YAML files, `--set` overrides, plugins, then validation.

`load_config` is what the CLI and `hn.Experiment` use for what a user writes; `validate(data, stored=True)` is
for a config read back from a run directory, which may predate a key's move (config/migrate.py).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from hydranet.config.migrate import refuse_old_keys, upgrade
from hydranet.config.overrides import apply_override, parse_override
from hydranet.config.search import check_search
from hydranet.config.sections import Config
from hydranet.config.validation import check
from hydranet.errors import UserError

EXPERIMENTS_DIR = Path(__file__).parent.parent / "experiments"


def experiment_names() -> list[str]:
    """Built-in experiments shipped with hydranet."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def experiment_description(name: str) -> str:
    """The first comment line of a built-in experiment file."""
    for line in (EXPERIMENTS_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _read_yaml(path: Path) -> dict[str, Any]:
    """An experiment file's top-level mapping; every way it can be unreadable is one line naming the file."""
    data = _parse_yaml(_read_text(path), path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (YAML's own encoding), or a UserError saying what it is instead."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (expected an experiment YAML file or a built-in name: {', '.join(experiment_names())})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder (expected an experiment YAML file)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the experiment file ({err.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: byte {raw[err.start]:#04x} is not UTF-8 (save the experiment file as UTF-8)") from None


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}: {where}not valid YAML ({problem})") from None


def experiment_dict(experiment: str | Path | None) -> dict[str, Any]:
    """The raw dict of a built-in name, a YAML path or None (the default, `quickstart`)."""
    if experiment is None:
        experiment = "quickstart"
    text = str(experiment)
    if text in experiment_names():
        return _read_yaml(EXPERIMENTS_DIR / f"{text}.yaml")
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        raise UserError(f"experiment {text!r}: not a built-in experiment ({', '.join(experiment_names())}) nor a YAML file")
    return _read_yaml(path)


def load_config(experiment: str | Path | dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve an experiment (built-in name, YAML path, dict or None) plus overrides into a Config."""
    data = dict(experiment) if isinstance(experiment, dict) else experiment_dict(experiment)
    refuse_old_keys(data)
    _import_plugins(data.get("plugins") or [])  # before overrides: switching to a plugin's method reads its options
    for text in overrides:
        path, value = parse_override(text)
        refuse_old_keys({path[0]: {path[1]: value}} if len(path) == 2 else {})
        apply_override(data, path, value)
        if path == ["plugins"]:
            _import_plugins(value)
    return validate(data)


def validate(data: dict[str, Any], stored: bool = False) -> Config:
    """Validate a raw dict: import its plugins, check schema and method options, then its `search:` space.

    `stored`: the dict was read from a run directory, so keys that moved since are upgraded, not refused, and
    its plugins are imported only if the user allowed them (`allowed_plugins`): a run folder is something
    users share, and reading one must not run code that came with it.
    """
    if not isinstance(data, dict):
        raise UserError(f"config: expected a mapping of config keys, got {type(data).__name__}")
    plugins = data.get("plugins") or []
    if stored:
        _refuse_unallowed(plugins)
    _import_plugins(plugins)
    config = check(upgrade(data) if stored else data)
    if config.search:
        check_search(config)
    if not stored:
        _warn_ignored_weights(config)
    return config


def _warn_ignored_weights(config: Config) -> None:
    """`tasks.<t>.weight` is the `static` balancer's setting; with another balancer it would silently do nothing."""
    weighted = {t: c.weight for t, c in config.tasks.items() if c.weight != 1.0}
    if weighted and config.mtl.balancer.name != "static":
        shown = ", ".join(f"tasks.{t}.weight={w:g}" for t, w in weighted.items())
        warnings.warn(f"{shown}: task weights are used by mtl.balancer static only; {config.mtl.balancer.name} "
                      f"ignores them (set mtl.balancer: static to weight the losses)", UserWarning, stacklevel=2)


ALLOW_ENV = "HYDRANET_ALLOW_PLUGINS"  # comma-separated module names, or * for any


def allowed_plugins() -> set[str]:
    """Modules the user allowed a stored config to import (`hydranet --allow-plugins`, or the environment)."""
    return {m.strip() for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()}


def _refuse_unallowed(modules: Any) -> None:
    """A stored config's plugins that are neither imported already nor allowed are refused, naming them."""
    if not isinstance(modules, list):
        return  # _import_plugins words the type error
    allowed = allowed_plugins()
    refused = [m for m in modules if m not in sys.modules and m not in allowed and "*" not in allowed]
    if refused:
        raise UserError(f"plugins: the run's config imports {', '.join(refused)}; a run folder's code is never run "
                        f"unless you allow it: `hydranet --allow-plugins …` (or {ALLOW_ENV}={','.join(refused)}), "
                        f"or import the module yourself first")


def _import_plugins(modules: Any) -> None:
    """Import the modules that register a run's custom parts (and their options) before names are looked up."""
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise UserError(f"config: plugins: expected a list of module names, got {modules!r}")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UserError(f"plugins: cannot import {module!r} ({err})") from None


def to_yaml(config: Config) -> str:
    """The resolved config as YAML (what runs save, and `hydranet config` prints but for a table default's trunk and
    encoder), each method with its options."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
