"""`hydranet export`: named outputs mapped to their heads for every sharing architecture, the folder rules
(nothing of the user's overwritten, no half export), and one-line refusals."""

import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tests.export.exportruns import train_digits, train_table
from torch import nn

import hydranet as hn
from hydranet import registry
from hydranet.data import build_dataset
from hydranet.train import load_run

SHARINGS = ["hard", "mmoe", "cgc", "cross_stitch"]


def assert_outputs_match_heads(run_dir, folder):
    """Each named ONNX output equals the torch model's output for that task (their shapes differ by kind)."""
    run = load_run(run_dir)
    x = build_dataset(run.config).split("test")["x"]
    spec = json.loads((folder / "outputs.json").read_text())
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [task["output"] for task in spec["tasks"].values()]
    got = dict(zip(names, session.run(names, {"x": x.numpy()})))
    with torch.no_grad():
        expected = run.model(x)
    assert list(spec["tasks"]) == list(run.tasks)
    for task, out in expected.items():
        assert got[spec["tasks"][task]["output"]].shape == tuple(out.shape), task
        np.testing.assert_allclose(got[spec["tasks"][task]["output"]], out.numpy(), atol=1e-4, err_msg=task)
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] and set(parity["max_abs_diff"]) == set(run.tasks) and parity["batch_sizes"][-1] == 1


@pytest.mark.parametrize("sharing", SHARINGS)
def test_named_outputs_map_to_their_heads_on_a_table(sharing, table_run, tmp_path):
    """The four heads have different widths and kinds; for every sharing each output carries its own head's values."""
    run_dir = table_run if sharing == "hard" else train_table(tmp_path, sharing)
    if sharing != "hard":  # the hard-sharing run was exported by its fixture
        result = hn.load(run_dir).export()
        assert result["passed"] and max(result["max_abs_diff"].values()) <= 1e-4
    assert_outputs_match_heads(run_dir, run_dir / "export")


@pytest.mark.slow
@pytest.mark.parametrize("sharing", SHARINGS)
def test_named_outputs_map_to_their_heads_on_images(sharing, tmp_path):
    run_dir = train_digits(tmp_path, sharing)
    hn.load(run_dir).export(tmp_path / "out")
    assert_outputs_match_heads(run_dir, tmp_path / "out")


def test_export_cli_replaces_a_previous_export_of_the_same_run(cli, table_run, tmp_path):
    folder = table_run / "export"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, out, err = cli("export", table_run)
    assert code == 0, err
    assert "parity on" in out and "exported in" in out
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert sorted(after) == ["model.onnx", "outputs.json", "parity.json", "predict_onnx.py", "preprocessing.json"]
    assert all(after[name] != before[name] for name in after)  # every file is the new export's
    assert not [p for p in table_run.iterdir() if p.name.startswith(".export")]  # no staging folder left
    assert_outputs_match_heads(table_run, folder)


def one_line_error(result, *fragments):
    code, _, err = result
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_a_folder_with_other_files_or_another_runs_export_is_refused_untouched(cli, table_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line_error(cli("export", table_run, "-o", mine), "holds other files (notes.txt)")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "outputs.json").write_text(json.dumps({"run": "0123456789abcdef"}))
    one_line_error(cli("export", table_run, "-o", other), "export of another run")
    one_line_error(cli("export", table_run, "--format", "torchscript"), "--format", "expected onnx")


def test_missing_packages_name_the_extra(cli, table_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    before = (table_run / "export" / "model.onnx").stat().st_mtime_ns
    one_line_error(cli("export", table_run), "onnxscript", "pip install 'hydranet[export]'")
    assert (table_run / "export" / "model.onnx").stat().st_mtime_ns == before


class Branchy(nn.Module):
    """A trunk whose path depends on the data (`if x.sum() > 0`): torch.export, and so ONNX, cannot trace it."""

    def __init__(self, width: int):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(width, 8), 8

    def forward(self, x):
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


class Noisy(nn.Module):
    """A trunk adding uniform noise: ONNX Runtime draws other numbers than PyTorch, so parity fails."""

    def __init__(self, width: int):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(width, 8), 8

    def forward(self, x):
        return self.linear(x + torch.rand_like(x))


class Batched(nn.Module):
    """A trunk reading the batch size with len(): a plain int to the tracer, so the graph takes one batch size."""

    def __init__(self, width: int):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(width, 8), 8

    def forward(self, x):
        return self.linear(x) + torch.zeros(len(x), 8)


@pytest.mark.parametrize("trunk, fragments", [
    (Branchy, ["model.trunk (Branchy) cannot be exported to ONNX", "data-dependent"]),
    (Noisy, ["ONNX Runtime differs from PyTorch on output", "nothing was written"]),
    (Batched, ["ONNX Runtime cannot run the exported graph on a batch of", "nothing was written"]),
])
def test_a_model_that_does_not_export_faithfully_is_refused_with_nothing_written(trunk, fragments, cli, tmp_path,
                                                                              monkeypatch):
    name = f"test_{trunk.__name__.lower()}"
    monkeypatch.setitem(registry._TABLES["trunk"], name, lambda options, shape: trunk(shape[0]))  # this test only
    run_dir = hn.Experiment({
        "name": "odd", "data": {"source": "breast_cancer", "limit": 100}, "tasks": {"diagnosis": {"kind": "binary"}},
        "model": {"trunk": {"name": name}}, "train": {"epochs": 1, "progress": False}}).fit(tmp_path / "run").dir
    one_line_error(cli("export", run_dir), *fragments)
    assert not [p for p in run_dir.iterdir() if "export" in p.name]
