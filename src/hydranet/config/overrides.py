"""`--set a.b=value`: parsing the text and setting the nested key in a raw experiment dict.

A key below a method field written as a bare name (`balancer: dwa`) turns the name into `{name: dwa}` first,
so `--set mtl.balancer.temperature=3` works whichever way the experiment names its method.
"""

from __future__ import annotations

from typing import Any

import yaml

from hydranet.config.fields import default_method, field_at, is_method_path
from hydranet.errors import UserError


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` → (['a', 'b'], value); the value is read as YAML so `3`, `0.1`, `[32,64]`, `null` work."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: expected KEY=VALUE, for example train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set a nested key, creating intermediate mappings (validation happens afterwards). Under `search` the
    rest of the path is one key, itself a dotted config key: `search.train.optimizer.lr={type: float, …}`."""
    if path[0] == "search" and len(path) > 2:
        path = ["search", ".".join(path[1:])]
    node = data
    for i, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None or isinstance(child, str):
            method = is_method_path(path[: i + 1])  # a method's option: the method keeps (or gets) its name
            name = child if child is not None else default_method(path[: i + 1], data) if method else None
            child = node[key] = {"name": name} if method else {} if child is None else child
        if not isinstance(child, dict):
            raise UserError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is a value, not a section")
        node = child
    if path[-1] == "name" and len(path) > 1 and node.get("name") != value and is_method_path(path[:-1]):
        keep_declared(node, path[:-1], value)
    node[path[-1]] = value


def keep_declared(method: dict[str, Any], path: list[str], name: Any) -> None:
    """Switching a method by its name keeps only the options the new method declares too
    (`--set model.trunk.name=resnet` keeps `channels`, drops the cnn's `dense`)."""
    try:
        fields = field_at(path)(name=name).declared().model_fields
    except (ValueError, TypeError):
        return  # not a known name: validation says so, naming the key
    for key in [k for k in method if k != "name" and k not in fields]:
        del method[key]
