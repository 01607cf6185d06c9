"""Walking the schema by dotted path: which field a key names, its type, and the keys a section allows.

Used to word errors (`allowed: …`), to accept `--set` below a bare method name, and to check `search:` keys.
Inside a method field the keys are the chosen method's options, so the path needs the method's name.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from hydranet.config.methods import Method
from hydranet.config.sections import Config, DataConfig, default_trunk


def _step(node: Any, keys: list[str], i: int) -> tuple[Any, int]:
    """The annotation below `node` for keys[i] (and the next index); a task name is skipped in `tasks`."""
    field = node.model_fields.get(keys[i]) if isinstance(node, type) and issubclass(node, BaseModel) else None
    if field is None:
        return None, i + 1
    ann = field.annotation
    if get_origin(ann) is dict:  # tasks / search: the next key is a name
        return get_args(ann)[1], i + 2
    return ann, i + 1


def field_at(path: list[str], names: dict[str, str] | None = None) -> Any:
    """The annotation of the field at a dotted path (None if there is none). `names` maps a method field's
    dotted path to the chosen method's name, so its options can be looked up (`mtl.balancer` → `dwa`)."""
    names = names or {}
    node: Any = Config
    i = 0
    while i < len(path):
        if isinstance(node, type) and issubclass(node, Method):
            name = names.get(".".join(path[:i]))
            if path[i] == "name":
                node, i = str, i + 1
                continue
            node = _declared(node, name)
            if node is None:
                return None
        node, i = _step(node, path, i)
        if node is None:
            return None
    return _without_none(node)


def _declared(method_type: type[Method], name: str | None) -> type[BaseModel] | None:
    try:
        return method_type(name=name).declared() if name else None
    except ValueError:
        return None


def _without_none(node: Any) -> Any:
    if get_origin(node) in (Union, types.UnionType):
        args = [a for a in get_args(node) if a is not type(None)]
        return args[0] if len(args) == 1 else node
    return node


def is_method_path(path: list[str]) -> bool:
    """Whether a dotted path names a method field (`model.trunk`, `mtl.balancer`, …)."""
    node = field_at(path)
    return isinstance(node, type) and issubclass(node, Method)


def default_method(path: list[str], data: dict[str, Any]) -> str | None:
    """The default method name of the method field at a path (`mtl.balancer` → `equal`) in the raw config `data`
    (the trunk's follows the data source: `--set model.trunk.embedding=plr` on a csv config options an mlp)."""
    if path == ["model", "trunk"]:
        section = data.get("data")
        source = section.get("source") if isinstance(section, dict) else None  # a wrong type: validation says so
        return default_trunk(source if isinstance(source, str) else DataConfig.model_fields["source"].default)
    parent = field_at(path[:-1]) if len(path) > 1 else Config
    field = parent.model_fields[path[-1]]
    return field.get_default(call_default_factory=True).name


def allowed_keys(loc: list[str]) -> list[str]:
    """Field names of the section at a location, so an unknown-key error can list what is allowed."""
    node = field_at(loc) if loc else Config
    if get_origin(node) is dict or not (isinstance(node, type) and issubclass(node, BaseModel)):
        return []
    return sorted(node.model_fields)


def type_name(node: Any) -> str:
    """A readable name of an annotation: `float`, `list[int]`."""
    if isinstance(node, type) and typing.get_origin(node) is None:
        return node.__name__
    return str(node).replace("typing.", "")
