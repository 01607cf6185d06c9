"""Starting a model from saved weights (`model.init_from`): hydranet runs, safetensors or PyTorch files.

Transfer goes wrong silently when keys do not line up, so loading is explicit: source keys are renamed
by `model.init_map` (longest matching prefix), matched by name and shape against the model, and a report
lists what was loaded, what the model still lacks, what the source had in excess and what did not fit.
Loading nothing at all is an error, never a silent random init.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.files import read_tensors
from hydranet.rundir import MODEL_FILE, TRUNK_FILE, RunDir


@dataclass
class LoadReport:
    """What `init_from` did, key by key (model keys after renaming)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys in scope that the source did not provide
    unexpected: list[str] = field(default_factory=list)  # source keys the model does not have
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)  # (key, source, model shape)
    skipped: list[str] = field(default_factory=list)  # head keys left out because init_heads is false

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": self.loaded, "missing": self.missing, "unexpected": self.unexpected,
                "mismatched": [list(m) for m in self.mismatched], "skipped": self.skipped}

    def __str__(self) -> str:
        lines = [f"init_from {self.source}: loaded {len(self.loaded)} tensors, missing {len(self.missing)}, "
                 f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}, skipped heads {len(self.skipped)}"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"  {label}: {_shortlist(keys)}")
        for key, src, dst in self.mismatched[:5]:
            lines.append(f"  shape mismatch: {key} source {src} vs model {dst}")
        return "\n".join(lines)


def _shortlist(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n})" if len(keys) > n else "")


def weights_file(source: str | Path) -> Path:
    """The file behind `init_from`: a run directory's trunk.safetensors (else model.safetensors), or the file."""
    return _source(source)[1]


def _source(source: str | Path) -> tuple[RunDir | None, Path]:
    """The run directory `source` names (opened as every run is read), if it is one, and its weights file."""
    path = Path(source)
    if path.is_dir():
        run = RunDir.open(path)
        found = run.weights()
        if found is None:
            raise UserError(f"model.init_from: {path} holds neither {TRUNK_FILE} nor {MODEL_FILE} (not a finished run?)")
        return run, found
    if not path.exists():
        raise UserError(f"model.init_from: {path} not found (expected a run directory or a weights file)")
    return None, path


def read_weights(source: str | Path) -> tuple[dict[str, Tensor], str]:
    """A state dict from a run directory (its own weights, checksum and run id checked), a .safetensors file, or
    a PyTorch file (.pt/.pth/.bin, loaded with weights_only; a {"state_dict": …} or {"model": …} wrapper is
    unwrapped)."""
    run, path = _source(source)
    if run is not None:
        return run.read_weights(path)[0], str(path)
    if path.suffix == ".safetensors":
        return read_tensors(path)[0], str(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of many kinds: all mean "not a weights file"
        raise UserError(f"model.init_from: {path} is not a safetensors or PyTorch weights file ({type(err).__name__})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise UserError(f"model.init_from: {path} holds no tensors (expected a state dict)")
    return tensors, str(path)


def rename(state: dict[str, Tensor], mapping: dict[str, str]) -> dict[str, Tensor]:
    """Replace the longest matching source prefix of each key (`{"": "trunk."}` prefixes every key)."""
    prefixes = sorted(mapping, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        out[key if prefix is None else mapping[prefix] + key[len(prefix):]] = value
    return out


def init_from(model: nn.Module, source: str | Path, mapping: dict[str, str] | None = None, heads: bool = False) -> LoadReport:
    """Load matching tensors into `model` (in place) and report; the trunk only unless `heads`."""
    state, where = read_weights(source)
    state = rename(state, mapping or {})
    target = model.state_dict()
    report = LoadReport(where)
    matched = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif key.startswith("heads.") and not heads:
            report.skipped.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched.append((key, list(value.shape), list(target[key].shape)))
        else:
            matched[key] = value
    report.loaded = sorted(matched)
    in_scope = [k for k in target if heads or not k.startswith("heads.")]
    report.missing = [k for k in in_scope if k not in matched]
    if not matched:
        raise UserError(f"model.init_from: no tensor of {where} matches the model by name and shape "
                        f"(source keys such as {_shortlist(sorted(state), 3)}; model keys such as "
                        f"{_shortlist(list(target), 3)}); rename prefixes with model.init_map")
    model.load_state_dict(matched, strict=False)
    return report
