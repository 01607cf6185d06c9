"""Checking the `search:` section of `hydranet tune` against the real config fields, before any trial runs.

A key is a dotted config path (`train.optimizer.lr`, a method's option such as `mtl.balancer.temperature`, or
a method field itself such as `mtl.balancer` to search over method names); every end of a range and every
choice must be a value the field accepts.
"""

from __future__ import annotations

import copy
from typing import Any

from hydranet.config.fields import field_at, type_name
from hydranet.config.methods import Method, method_fields
from hydranet.config.overrides import apply_override
from hydranet.config.sections import Config, SearchParam
from hydranet.config.validation import check
from hydranet.errors import UserError


def plain_experiment(config: Config) -> dict[str, Any]:
    """The config as a dict without its `search:` section, every field named (what a search key must exist in)."""
    data = config.model_dump(mode="json")
    data["search"] = {}
    return data


def check_search(config: Config) -> None:
    """Every searched key is an existing field, its type fits the field, and every choice and end of a range
    is a value the field accepts: a bad space is refused before any trial has run."""
    base = plain_experiment(config)
    names = {path: method.name for path, method in method_fields(config)}
    for key, param in config.search.items():
        where = f"config: search.{key}"
        path = key.split(".")
        _check_path(base, path, where, names)
        _check_type(path, param, where, names)
        for label, value in _candidates(param):
            data = copy.deepcopy(base)
            apply_override(data, path, value)
            try:
                check(data)
            except UserError as err:
                raise UserError(f"{where}: {label} {value!r} is refused ({err.message.removeprefix('config: ')})") from None


def _check_path(data: dict[str, Any], path: list[str], where: str, names: dict[str, str]) -> None:
    """The key must name a field that holds a value, or a method field (tasks.<name>.… only for existing tasks)."""
    if path[0] == "search":
        raise UserError(f"{where}: the search section cannot search itself")
    node: Any = data
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            known = ", ".join(node) if isinstance(node, dict) else ""
            shown = ".".join(path[:i + 1])
            raise UserError(f"{where}: {shown!r} is not a config field" + (f" (known here: {known})" if known else ""))
        node = node[key]
    if isinstance(node, dict) and ".".join(path) not in names:
        raise UserError(f"{where}: {'.'.join(path)} is a section; search one of its fields ({', '.join(node)})")


def _check_type(path: list[str], param: SearchParam, where: str, names: dict[str, str]) -> None:
    """A float range needs a float field; an int range a numeric one (categorical fits any field)."""
    if param.type == "categorical":
        return
    field = field_at(path, names)
    allowed = (float,) if param.type == "float" else (int, float)
    if field not in allowed:
        is_method = isinstance(field, type) and issubclass(field, Method)
        name = "method names" if is_method else f"{type_name(field)} values"
        hint = "int" if field is int else "categorical"
        raise UserError(f"{where}: type {param.type} does not fit {'.'.join(path)}, which holds {name} (use type: {hint})")


def _candidates(param: SearchParam) -> list[tuple[str, Any]]:
    """The values whose acceptance proves the whole space valid: both ends of a range, or every choice."""
    if param.type == "categorical":
        return [("choice", c) for c in param.choices]
    cast = int if param.type == "int" else float
    return [("low", cast(param.low)), ("high", cast(param.high))]
