"""int8 quantization of a run's ONNX export with ONNX Runtime's quantizer (torch.ao.quantization is deprecated in
torch 2.13): dynamic (weights int8, activations quantized per call; linear layers) or static (conv and linear, with
activation ranges calibrated on train batches). The result is an export folder, as `hydranet export` writes one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from hydranet.compress.profile import median_ms
from hydranet.data import Dataset, build_dataset
from hydranet.errors import UserError
from hydranet.export import export_run
from hydranet.export.inputs import GraphInputs
from hydranet.export.run import MODEL, OUTPUTS, PARITY
from hydranet.files import atomic_folder, atomic_path, write_json
from hydranet.train.evaluation import evaluate_split
from hydranet.train.run import Run

MODES = ("dynamic", "static")
REPORT = "quantization.json"
CALIBRATION_BATCH = 64
STATIC_OPS = ["Conv", "Gemm", "MatMul"]  # the conv and linear layers, exactly what QAT's fake quantization simulates
# Static int8 gets 7-bit weights (ORT's reduce_range): ORT's fused x86 QLinear kernels multiply uint8 × int8 with a
# pairwise add that saturates at int16 on CPUs without VNNI (this AVX2 one), so with 8-bit weights they differed from
# what the quantized graph says by up to 13 output steps on the quickstart model. Dynamic int8's kernels do not.
REDUCE_RANGE = True


class OnnxModule(nn.Module):
    """An ONNX Runtime session as a module returning {task: output}, so evaluate_split scores it as it scores the
    PyTorch model (same decoding, same metrics)."""

    def __init__(self, path: Path, outputs: dict[str, str], inputs: GraphInputs):
        super().__init__()
        import onnxruntime as ort  # the export extra

        self.outputs, self.inputs = outputs, inputs
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many as torch, so the latencies compare
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def of(cls, path: Path, info) -> OnnxModule:
        """The graph at `path` with the task outputs that its folder's outputs.json names, for a run of `info`."""
        tasks = json.loads((path.parent / OUTPUTS).read_text())["tasks"]
        return cls(path, {task: entry["output"] for task, entry in tasks.items()}, GraphInputs.of(info))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raw = self.session.run(list(self.outputs.values()), self.inputs.feeds(x))
        return {task: torch.from_numpy(values) for task, values in zip(self.outputs, raw)}


def calibration_batches(data: Dataset, examples: int) -> Iterator[dict[str, np.ndarray]]:
    """The first `examples` train examples (the split is already seeded and shuffled) as model inputs, in batches."""
    x, inputs = data.split("train")["x"][:examples], GraphInputs.of(data.info)
    for start in range(0, len(x), CALIBRATION_BATCH):
        yield inputs.feeds(x[start:start + CALIBRATION_BATCH])


def quantize_file(source: Path, target: Path, mode: str, data: Dataset, examples: int) -> None:
    """Write the int8 version of the ONNX model `source` to `target`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if mode == "dynamic":  # Gemm/MatMul only: ORT's dynamic ConvInteger is slower than fp32 conv on CPUs
        quantize_dynamic(source, target, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        return

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration_batches(data, examples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(source, target, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, reduce_range=REDUCE_RANGE,
                    op_types_to_quantize=STATIC_OPS)


def quantize_run(run: Run, mode: str, out: str | Path | None = None, examples: int = 512,
                 repeats: int = 20) -> dict[str, Any]:
    """Export `run`, quantize its graph to int8 and write the folder `out` (default RUN/export-int8-MODE; refused
    if it holds anything): the export's files with the int8 model.onnx and quantization.json, which compares it
    with the fp32 export (max |int8 − fp32| per output, test metrics, latency at batch 1 and 64)."""
    if mode not in MODES:
        raise UserError(f"--method: int8-{mode} is not a quantization (expected int8-dynamic or int8-static)")
    folder = Path(out) if out is not None else run.dir / f"export-int8-{mode}"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder}: exists and is not empty; quantization writes a new folder, so nothing in it is overwritten")
    data = build_dataset(run.config)
    with atomic_folder(folder) as staging:
        fp32 = staging / ".fp32"
        export_run(run, fp32)
        for item in fp32.iterdir():
            if item.name not in (MODEL, PARITY):  # the parity measured the fp32 graph; quantization.json replaces it
                shutil.copy2(item, staging / item.name)
        with atomic_path(staging / MODEL) as tmp:
            quantize_file(fp32 / MODEL, tmp, mode, data, examples)
        report = compare(run, fp32 / MODEL, staging / MODEL, data, mode, repeats)
        write_json(staging / REPORT, {**report, "calibration_examples": examples if mode == "static" else 0})
        shutil.rmtree(fp32)
    return {**report, "folder": str(folder)}


def compare(run: Run, fp32: Path, int8: Path, data: Dataset, mode: str, repeats: int) -> dict[str, Any]:
    """int8 against fp32 ONNX on the test split (else val): largest output difference, metrics, latency."""
    split = "test" if len(data.index["test"]) else "val"
    held = data.split(split)
    models = {name: OnnxModule.of(path, data.info) for name, path in (("fp32", fp32), ("int8", int8))}
    outputs = models["fp32"].outputs
    with torch.inference_mode():
        raw = {name: model(held["x"]) for name, model in models.items()}
    report: dict[str, Any] = {"mode": mode, "split": split, "threads": torch.get_num_threads(),
                              "max_abs_diff": {t: float((raw["int8"][t] - raw["fp32"][t]).abs().max()) for t in outputs}}
    for name, model in models.items():
        report[name] = {"metrics": evaluate_split(model, run.tasks, held, run.config.train.eval_batch_size),
                        "bytes": (fp32 if name == "fp32" else int8).stat().st_size,
                        **{f"batch_{b}_ms": median_ms(lambda m=model, x=held["x"][:b]: m(x), repeats) for b in (1, 64)}}
    return report
