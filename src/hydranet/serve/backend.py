"""Backends: what turns model inputs (the tensor `predict` builds) into raw outputs per task — the run's PyTorch
model, or ONNX Runtime on the run's export or its int8 version. All feed the same decoding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch

from hydranet.errors import UserError
from hydranet.export import export_run
from hydranet.export.inputs import GraphInputs
from hydranet.export.run import FILES, MODEL, OUTPUTS, export_identity
from hydranet.rundir import RunDir
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.run import Run


class Backend(Protocol):
    """Model inputs (N, …) float32 → raw outputs {task: (N, …)} as the model's heads give them."""

    name: str

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class TorchBackend:
    """The run's own model, run as `hydranet predict` runs it (batch size, precision, test-time augmentation)."""

    name = "torch"

    @staticmethod
    def prepare(run: Run) -> None:
        """Nothing to make before the server starts."""

    def __init__(self, run: Run):
        self.model, self.settings = run.model, eval_settings(run.config.train)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return predict_batches(self.model, x, *self.settings)


class OnnxBackend:
    """ONNX Runtime on RUN/export/model.onnx, which is made (or remade) first when missing or older than the
    run's weights; `export_run` checks it against PyTorch before writing it."""

    name = "onnx"

    @staticmethod
    def prepare(run: Run) -> Path:
        """The export folder, made once before the server (and its workers) start."""
        return current_export(run)

    def __init__(self, run: Run):
        import onnxruntime as ort  # only this backend needs it

        folder = self.prepare(run)
        self.tasks = run.tasks
        spec = json.loads((folder / OUTPUTS).read_text(encoding="utf-8"))
        self.inputs = GraphInputs.of(run.info)
        self.outputs = {task: entry["output"] for task, entry in spec["tasks"].items()}
        self.session = ort.InferenceSession(str(folder / MODEL), session_options(ort),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = self.session.run(list(self.outputs.values()), self.inputs.feeds(x))
        # the graph gives what `Task.exported` does (depths in the data's units): back to the heads' raw outputs
        return {task: self.tasks[task].from_exported(torch.from_numpy(values)) for task, values in zip(self.outputs, raw)}


def session_options(ort) -> "ort.SessionOptions":
    """ONNX Runtime on as many threads as torch uses (`--backend torch` and `onnx` then compete equally with the
    server's other work), one operator at a time. Left alone, ORT starts a thread per core and spins them between
    calls, taking the cores the event loop and the request decoding need."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def current_export(run: Run) -> Path:
    """RUN/export, exported now unless it already holds every file of an export of this run made after its weights.
    A folder holding another run's export or other files is refused by `export_run`, with nothing overwritten."""
    folder = run.dir / "export"
    if not is_current_export(folder, RunDir.open(run.dir)):
        export_run(run, folder)
    return folder


def is_current_export(folder: Path, run: RunDir) -> bool:
    """Every file of an export of this run, its model no older than the run's weights."""
    if not all((folder / name).is_file() for name in FILES):
        return False
    return (export_identity(folder) == run.identity()
            and (folder / MODEL).stat().st_mtime >= run.model.stat().st_mtime)


class Int8Backend(OnnxBackend):
    """ONNX Runtime on RUN/export-int8-MODE, the int8 export `hydranet compress RUN --method int8-MODE` (or `qat`,
    static, into its new run) wrote. Not made here: quantizing calibrates on train data and is a choice to measure
    first (quantization.json)."""

    mode = ""

    @classmethod
    def prepare(cls, run: Run) -> Path:
        folder, source = run.dir / f"export-int8-{cls.mode}", RunDir.open(run.dir)
        if not ((folder / MODEL).is_file() and export_identity(folder) == source.identity()
                and (folder / MODEL).stat().st_mtime >= source.model.stat().st_mtime):
            raise UserError(f"--backend {cls.name}: {folder} holds no int8 export of this run's weights; make it with "
                            f"hydranet compress {run.dir} --method int8-{cls.mode}")
        return folder


class DynamicInt8Backend(Int8Backend):
    name, mode = "onnx-int8-dynamic", "dynamic"


class StaticInt8Backend(Int8Backend):
    name, mode = "onnx-int8-static", "static"


BACKENDS = {backend.name: backend for backend in (TorchBackend, OnnxBackend, DynamicInt8Backend, StaticInt8Backend)}


def load_backend(run: Run, name: str) -> Backend:
    """The backend `--backend` names (checked by ServeSettings)."""
    return BACKENDS[name](run)
