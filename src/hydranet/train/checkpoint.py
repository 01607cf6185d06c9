"""Whole training states as one safetensors file: what a checkpoint holds and `--resume` reads.

A training state is a nested structure (model and optimizer state dicts, counters, history): its tensors
go into safetensors, everything else into JSON in the file's metadata. The bytes are written by
`hydranet.files` (temporary file, fsync, rename), so a crash (even SIGKILL) never leaves half a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hydranet.files import read_tensors, write_tensors


def save_state(path: Path, state: Any, metadata: dict[str, str] | None = None) -> None:
    """Save a nested training state (tensors anywhere inside) as one safetensors file, with extra `metadata`
    (the run's id)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "")
    write_tensors(path, tensors, {**(metadata or {}), "state": json.dumps(skeleton)})


def load_state(path: Path) -> Any:
    """Inverse of save_state."""
    return state_from(*read_tensors(path))


def state_from(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Any:
    """The nested state from a checkpoint's tensors and metadata, read by whoever checked the file."""
    return _join(json.loads(metadata["state"]), tensors)


def _split(node: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """Replace tensors by references; keep dict keys' types (optimizer states are keyed by int)."""
    if isinstance(node, torch.Tensor):
        tensors[key] = node
        return {"__tensor__": key}
    if isinstance(node, dict):
        return {"__items__": [[k, _split(v, tensors, f"{key}/{k}")] for k, v in node.items()]}
    if isinstance(node, (list, tuple)):
        return {"__list__": [_split(v, tensors, f"{key}/{i}") for i, v in enumerate(node)], "tuple": isinstance(node, tuple)}
    return node


def _join(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__items__" in node:
            return {k: _join(v, tensors) for k, v in node["__items__"]}
        if "__list__" in node:
            items = [_join(v, tensors) for v in node["__list__"]]
            return tuple(items) if node["tuple"] else items
    return node
