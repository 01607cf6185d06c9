"""`hydranet profile RUN`: what a trained model costs — parameters (trunk, heads, shared), FLOPs per example,
weights on disk, peak memory and latency at batch 1 and 64 — as profile.json and a table; compress measures by it.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from hydranet.files import write_json
from hydranet.models import HydraNet
from hydranet.rundir import RunDir
from hydranet.train.precision import autocast
from hydranet.train.run import Run
from hydranet.tune.objectives import latency_ms

BATCH_SIZES = (1, 64)
WARMUP = 3  # first calls allocate and pick kernels; they are not what a served model costs


def parameter_counts(model: HydraNet) -> dict[str, Any]:
    """Parameters of the trunk and of each head, those every task's loss reaches (shared) and the nonzero ones
    (unstructured pruning zeroes weights without removing them)."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trunk": _count(model.trunk.parameters()),
            "heads": {task: _count(head.parameters()) for task, head in model.heads.items()},
            "shared": _count(model.shared_parameters()),
            "nonzero": sum(int(torch.count_nonzero(p)) for p in params)}


def _count(params) -> int:
    return sum(p.numel() for p in params)


def flops_per_example(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass on one example (torch's FlopCounterMode: a multiply-add counts
    as two; dense arithmetic, so zeroed weights still count)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


class _PeakBytes(TorchDispatchMode):
    """Bytes of the tensors the operations inside it create that are alive at once, at most: every new storage is
    counted until the last tensor viewing it is freed. Works on any device (torch.cuda's counters need a GPU)."""

    def __init__(self, known: list[Tensor]):
        super().__init__()
        self.owners: dict[int, int] = {t.untyped_storage().data_ptr(): -1 for t in known}  # -1: never counted
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(tensor, Tensor):
                self._track(tensor)
        return out

    def _track(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if self.owners.get(key) == -1:
            return
        if key not in self.owners:
            self.owners[key] = 0
            self.live += size
            self.peak = max(self.peak, self.live)
        self.owners[key] += 1
        weakref.finalize(tensor, self._release, key, size)

    def _release(self, key: int, size: int) -> None:
        self.owners[key] -= 1
        if self.owners[key] == 0:
            del self.owners[key]
            self.live -= size


def peak_memory(model: nn.Module, x: Tensor, precision: str = "fp32") -> dict[str, int]:
    """Bytes at the fullest moment of one forward pass over `x`: the weights plus the activations alive at once."""
    state = list(model.state_dict().values())
    weights = sum(t.numel() * t.element_size() for t in state)
    tracker = _PeakBytes([*state, x])
    with torch.inference_mode(), autocast(x.device, precision), tracker:
        model(x)
    return {"weights": weights, "activations": tracker.peak, "total": weights + tracker.peak}


def median_ms(call: Callable[[], Any], repeats: int, warmup: int = WARMUP) -> float:
    """Median wall time of `call` in milliseconds over `repeats` timed calls after `warmup` untimed ones (the tuner's
    latency objective, rounded for the table)."""
    return round(latency_ms(call, repeats, warmup), 4)


def latency(model: nn.Module, input_shape: tuple[int, ...], repeats: int, precision: str = "fp32",
            batch_sizes: tuple[int, ...] = BATCH_SIZES) -> dict[str, float]:
    """Median milliseconds per forward pass at each batch size (random inputs: dense arithmetic costs the same
    whatever the values), in eval mode and inference mode."""
    model.eval()
    result = {}
    for batch in batch_sizes:
        x = torch.randn(batch, *input_shape)

        def forward(x: Tensor = x) -> None:
            with torch.inference_mode(), autocast(x.device, precision):
                model(x)

        result[f"batch_{batch}_ms"] = median_ms(forward, repeats)
    return result


def profile_model(model: HydraNet, input_shape: tuple[int, ...], repeats: int = 20, precision: str = "fp32") -> dict[str, Any]:
    """Everything `hydranet profile` reports of one model, but the file size (a model in memory has none)."""
    model.eval()
    x = torch.zeros(max(BATCH_SIZES), *input_shape)
    return {"params": parameter_counts(model), "flops_per_example": flops_per_example(model, input_shape),
            "peak_memory_bytes": peak_memory(model, x, precision),
            "latency": {**latency(model, input_shape, repeats, precision), "precision": precision, "repeats": repeats,
                        "warmup": WARMUP, "threads": torch.get_num_threads()}}


def profile_run(run: Run, repeats: int = 20, precision: str = "fp32") -> dict[str, Any]:
    """Profile a loaded run, write RUN/profile.json (replacing an earlier one: it is measured again, not kept
    work) and return its content."""
    folder = RunDir(run.dir)
    report = {"run": str(run.dir), "input_shape": list(run.info.input_shape),
              "weights_bytes": Path(folder.model).stat().st_size,
              **profile_model(run.model, tuple(run.info.input_shape), repeats, precision)}
    write_json(folder.profile, report)
    return report
