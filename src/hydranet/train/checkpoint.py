"""Atomic safetensors files for weights and for whole training states.

A training state is a nested structure (model and optimizer state dicts, counters, history): its tensors
go into safetensors, everything else into JSON in the file's metadata. Files are written to a temporary
name and renamed, so a crash (even SIGKILL) never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hydranet.errors import UserError


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)  # safetensors creates files private; a run directory is meant to be shared
    os.replace(tmp, path)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A flat dict of tensors and the metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None


def save_state(path: Path, state: Any) -> None:
    """Save a nested training state (tensors anywhere inside) as one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "")
    save_tensors(path, tensors, {"state": json.dumps(skeleton)})


def load_state(path: Path) -> Any:
    """Inverse of save_state."""
    tensors, metadata = load_tensors(path)
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
