"""Quantization-aware training and the int8 arithmetic it simulates: the fake-quantized weight is ORT's int8 grid,
ORT's int8 kernels compute what the quantized graph says, and a QAT run's fake-quantized forward predicts its int8
export more closely than its fp32 forward does, and the server answers with that export."""

import json
from pathlib import Path

import pytest
import torch

from hydranet.compress.qat import FakeQuantization, QATOptions, fake_quantize_weight, qat_run
from hydranet.export.inputs import INPUT
from hydranet.serve.app import create_app
from hydranet.serve.settings import ServeSettings
from hydranet.data import build_dataset
from hydranet.train import load_run

CALIBRATION = 128


def test_a_fake_quantized_weight_lies_on_the_int8_grid_of_its_channel():
    """Per output channel, symmetric: scale = max|w| / 64 (7-bit weights), values rounded to multiples of it."""
    weight = torch.tensor([[1.0, -0.5, 0.26], [0.1, 0.0, -0.2]])
    scale = torch.tensor([[1.0 / 64], [0.2 / 64]])
    assert torch.allclose(fake_quantize_weight(weight), torch.round(weight / scale) * scale)
    assert fake_quantize_weight(weight)[0, 2] == pytest.approx(17 / 64)  # 0.26 · 64 = 16.64 → 17 steps


def outputs_of(folder: Path) -> dict[str, str]:
    return {task: entry["output"] for task, entry in json.loads((folder / "outputs.json").read_text())["tasks"].items()}


def run_graph(folder: Path, x: torch.Tensor, fused: bool) -> dict[str, torch.Tensor]:
    """The int8 model.onnx with ORT's fused int8 kernels (graph optimizations on), or op by op in float (off)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_ALL" if fused else "ORT_DISABLE_ALL")
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = outputs_of(folder)
    return dict(zip(names, map(torch.from_numpy, session.run(list(names.values()), {INPUT: x.numpy()}))))


def test_qat_fine_tunes_a_run_whose_fake_quantization_predicts_its_int8_export(digits_run, tmp_path):
    """Also: the static int8 export's fused kernels compute what its graph says (with 8-bit weights the AVX2
    kernels' int16 sums saturate, and the two differ by many output steps)."""
    run, report = qat_run(digits_run, QATOptions(epochs=1, calibration=CALIBRATION), tmp_path / "qat")
    folder = Path(report["folder"])
    assert folder == run.dir / "export-int8-static" and (folder / "model.onnx").is_file()
    assert json.loads((run.dir / "compress.json").read_text())["method"] == "qat"
    assert len(run.history) == 1 and run.config.compress.method.name == "qat"
    assert run.config.train.precision == "fp32"  # the simulation is fp32's, whatever the source trained in
    model = load_run(run.dir).model.eval()  # plain layers again: the run's weights are ordinary fp32 ones
    data = build_dataset(run.config)
    x = data.split("test")["x"]
    int8, reference = run_graph(folder, x, fused=True), run_graph(folder, x, fused=False)
    for task in int8:
        assert (int8[task] - reference[task]).abs().max() < 1e-4, task
    with torch.no_grad():
        fp32 = model(x)
        simulation = FakeQuantization()
        simulation.attach(model)
        model(data.split("train")["x"][:CALIBRATION])  # in eval mode the first batch sets the ranges: ORT's calibration
        simulated = model(x)
    for task in ("digit", "ink"):  # parity's one logit is all but exact in both
        assert (simulated[task] - int8[task]).abs().max() < 0.5 * (fp32[task] - int8[task]).abs().max(), task
    served = create_app(load_run(run.dir), ServeSettings(backend="onnx-int8-static")).state.service.backend
    assert served.name == "onnx-int8-static"
    for task, values in served(x.contiguous()).items():  # `hydranet serve RUN --backend onnx-int8-static`
        assert torch.equal(values, int8[task]), task
