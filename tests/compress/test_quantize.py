"""int8 quantization of the export: outputs close to fp32 on the quickstart model, an export folder the standalone
predictor reads, and refusals that write nothing."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hydranet.compress.quantize import quantize_run
from hydranet.errors import UserError
from hydranet.train import load_run


@pytest.mark.slow  # exports, quantizes and scores twice: about 15 s each
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_outputs_stay_close_to_fp32(digits_run, tmp_path, mode):
    report = quantize_run(load_run(digits_run), mode, tmp_path / "int8", examples=128, repeats=2)
    saved = json.loads((tmp_path / "int8" / "quantization.json").read_text())
    assert saved["mode"] == mode and saved["int8"]["bytes"] < saved["fp32"]["bytes"]
    for task in ("digit", "parity", "ink"):
        assert report["max_abs_diff"][task] < 0.5, task  # logits of order 10; int8 steps of about 1/100 of a range
    fp32, int8 = report["fp32"]["metrics"], report["int8"]["metrics"]
    assert abs(int8["digit"]["accuracy"] - fp32["digit"]["accuracy"]) <= 0.03
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == [
        "model.onnx", "outputs.json", "predict_onnx.py", "preprocessing.json", "quantization.json"]
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 7, dtype=np.uint8)).save(image)
    script = tmp_path / "int8" / "predict_onnx.py"
    done = subprocess.run([sys.executable, script, tmp_path / "int8", image], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[0].startswith("input,digit"), done.stderr


def test_quantization_refuses_a_folder_that_holds_files(digits_run, tmp_path):
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="is not empty"):
        quantize_run(load_run(digits_run), "dynamic", tmp_path / "int8")
    assert (tmp_path / "int8" / "mine.txt").read_text() == "keep"


def test_an_unknown_quantization_is_one_line(cli, digits_run, tmp_path):
    code, _, err = cli("compress", digits_run, "--method", "int8-weird", "-o", tmp_path / "q")
    assert code == 2 and err.startswith("error: --method: int8-weird") and not (tmp_path / "q").exists()


def test_serving_an_int8_export_that_was_not_made_is_one_line(cli, digits_run):
    code, _, err = cli("serve", digits_run, "--backend", "onnx-int8-static", "--port", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: --backend onnx-int8-static: {digits_run / 'export-int8-static'} holds no int8 export")


@pytest.mark.slow  # exports and quantizes a text run
def test_a_text_run_quantizes_through_its_ids_and_mask(text_run, tmp_path):
    """Calibration and scoring feed the graph's own inputs (input_ids, attention_mask), not one `x`."""
    report = quantize_run(load_run(text_run), "static", tmp_path / "int8", examples=64, repeats=1)
    assert set(report["max_abs_diff"]) == {"topic", "words"} and report["int8"]["metrics"]["topic"]["accuracy"] > 0
