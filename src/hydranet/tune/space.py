"""The search space of `hydranet tune`: checking `search:` against the real config fields, sampling a
trial's values from Optuna, and turning them into the trial's complete config.

Nothing here imports Optuna, so `hydranet config` can check a search space without it installed.
"""

from __future__ import annotations

import copy
import json
import math
import types
import typing
from typing import Any, Union

from hydranet.config import Config, SearchParam, apply_override, validate
from hydranet.errors import UserError

# Optuna stores only these as categorical choices; other choices (lists, mappings) travel as JSON text.
PRIMITIVE = (type(None), bool, int, float, str)


def check_search(config: Config) -> None:
    """Every searched key is an existing field, its type fits the field, and every choice and end of a range
    is a value the field accepts: a bad space is refused before any trial has run."""
    base = plain_experiment(config)
    for key, param in config.search.items():
        where = f"config: search.{key}"
        path = key.split(".")
        _check_path(base, path, where)
        _check_type(path, param, where)
        for label, value in _candidates(param):
            data = copy.deepcopy(base)
            apply_override(data, path, value)
            try:
                validate(data)
            except UserError as err:
                raise UserError(f"{where}: {label} {value!r} is refused ({err.message.removeprefix('config: ')})") from None


def plain_experiment(config: Config) -> dict[str, Any]:
    """The config as a dict without its `search:` section: what each trial starts from."""
    data = config.model_dump(mode="json")
    data["search"] = {}
    return data


def _check_path(data: dict[str, Any], path: list[str], where: str) -> None:
    """The key must name a field that holds a value (tasks.<name>.… only for existing tasks)."""
    if path[0] == "search":
        raise UserError(f"{where}: the search section cannot search itself")
    node: Any = data
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            known = ", ".join(node) if isinstance(node, dict) else ""
            shown = ".".join(path[:i + 1])
            raise UserError(f"{where}: {shown!r} is not a config field" + (f" (known here: {known})" if known else ""))
        node = node[key]
    if isinstance(node, dict):
        raise UserError(f"{where}: {'.'.join(path)} is a section; search one of its fields ({', '.join(node)})")


def _field_type(path: list[str]) -> Any:
    """The annotation of the field at a dotted path, with `| None` removed."""
    node: Any = Config
    keys = iter(path)
    for key in keys:
        node = node.model_fields[key].annotation
        if typing.get_origin(node) is dict:  # tasks: the next key is a task name
            node = typing.get_args(node)[1]
            next(keys, None)
    if typing.get_origin(node) in (Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        node = args[0] if len(args) == 1 else node
    return node


def _check_type(path: list[str], param: SearchParam, where: str) -> None:
    """A float range needs a float field; an int range a numeric one (categorical fits any field)."""
    if param.type == "categorical":
        return
    field = _field_type(path)
    allowed = (float,) if param.type == "float" else (int, float)
    if field not in allowed:
        name = field.__name__ if isinstance(field, type) and typing.get_origin(field) is None else str(field).replace("typing.", "")
        hint = "int" if field is int else "categorical"
        raise UserError(f"{where}: type {param.type} does not fit {'.'.join(path)}, which holds {name} values (use type: {hint})")


def _candidates(param: SearchParam) -> list[tuple[str, Any]]:
    """The values whose acceptance proves the whole space valid: both ends of a range, or every choice."""
    if param.type == "categorical":
        return [("choice", c) for c in param.choices]
    cast = int if param.type == "int" else float
    return [("low", cast(param.low)), ("high", cast(param.high))]


# --- sampling -------------------------------------------------------------------------------


def encoded_choices(param: SearchParam) -> list[Any]:
    """Choices as Optuna stores them: as they are when all are plain values, else each as JSON text."""
    if all(isinstance(c, PRIMITIVE) for c in param.choices):
        return list(param.choices)
    return [json.dumps(c) for c in param.choices]


def decode_choice(param: SearchParam, value: Any) -> Any:
    plain = all(isinstance(c, PRIMITIVE) for c in param.choices)
    return value if plain else json.loads(value)


def suggest(trial: Any, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per searched key; returns {dotted key: config value}."""
    values = {}
    for key, p in space.items():
        if p.type == "float":
            values[key] = trial.suggest_float(key, float(p.low), float(p.high), log=p.log, step=p.step)
        elif p.type == "int":
            values[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            values[key] = decode_choice(p, trial.suggest_categorical(key, encoded_choices(p)))
    return values


def trial_config(base: dict[str, Any], values: dict[str, Any]) -> Config:
    """The complete experiment of one trial: the plain experiment with the sampled values set."""
    data = copy.deepcopy(base)
    for key, value in values.items():
        apply_override(data, key.split("."), value)
    return validate(data)


def grid(space: dict[str, SearchParam]) -> dict[str, list[Any]]:
    """The grid sampler's values per key; a continuous float has no grid, so it needs a step."""
    out: dict[str, list[Any]] = {}
    for key, p in space.items():
        if p.type == "categorical":
            out[key] = encoded_choices(p)
        elif p.type == "int":
            out[key] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        elif p.step is None:
            raise UserError(f"--sampler grid: search.{key} is a continuous float range; give it a step or make it categorical")
        else:
            count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
            out[key] = [round(p.low + i * p.step, 12) for i in range(count)]
    return out
