"""`hydranet explain` and `Model.explain` end to end: the files written, and one clear line for each mistake."""

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from tests.explain.conftest import two_column_table


def test_images_give_a_picture_per_example(cli, digits_model, tmp_path):
    code, out, err = cli("explain", digits_model.run.dir, "--split", "test", "--task", "digit", "--method", "gradcam",
                         "--n", "2", "-o", tmp_path / "cam")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [
        "attributions.safetensors", "example-0.png", "example-1.png", "explanation.json"]
    summary = json.loads((tmp_path / "cam" / "explanation.json").read_text())
    assert summary["method"] == "gradcam" and len(summary["targets"]["digit"]) == 2
    assert load_file(tmp_path / "cam" / "attributions.safetensors")["attributions"].shape == (2, 1, 8, 8)


def test_integrated_gradients_reports_its_completeness(cli, digits_model, tmp_path):
    """Per example: the gap f(x) − f(baseline), Captum's delta and the steps it took to meet the bound."""
    code, out, err = cli("explain", digits_model.run.dir, "--split", "test", "--task", "ink", "--n", "3",
                         "-o", tmp_path / "ig")
    assert code == 0, err
    assert "completeness error within the bound for 3/3 examples" in out
    summary = json.loads((tmp_path / "ig" / "explanation.json").read_text())
    assert summary["method"] == "integrated_gradients"
    report = summary["completeness"]["ink"]
    assert report["within_bound"] == report["examples"] == 3 and report["max_relative_delta"] <= 0.01
    assert len(report["delta"]) == len(report["gap"]) == len(report["steps"]) == 3 and min(report["steps"]) >= 50


def test_table_rows_give_one_column_per_source_column(cli, table_model, tmp_path):
    rows = tmp_path / "rows.csv"
    two_column_table(5, seed=1).to_csv(rows, index=False)
    code, out, err = cli("explain", table_model.run.dir, rows, "--task", "value", "--method", "occlusion",
                         "-o", tmp_path / "rows")
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "rows" / "attributions.csv")
    assert list(frame.columns) == ["input", "target", "noise1", "a", "shade", "b", "noise2"]
    assert len(frame) == 5 and (tmp_path / "rows" / "example-4.png").exists()
    summary = json.loads((tmp_path / "rows" / "explanation.json").read_text())
    assert summary["settings"]["baseline"] == "mean"  # a table's default: zeros would switch every category off
    assert summary["features"] == "source columns (a one-hot group as one feature)"


def test_python_explain_returns_an_array(digits_model, table_model):
    x = (np.random.default_rng(0).integers(0, 17, size=(3, 1, 8, 8))).astype(np.uint8)
    assert digits_model.explain(x, task="parity", method="saliency").shape == (3, 1, 8, 8)
    table = table_model.explain(two_column_table(4), task="label", method="integrated_gradients")
    assert table.shape == (4, 5) and np.isfinite(table).all()


@pytest.mark.parametrize("args, message", [
    (["--task", "value", "--method", "gradcam"], "needs a convolutional trunk"),
    (["--task", "value", "--method", "deeplift"], "--method: 'deeplift' is not an attribution method"),
    (["--task", "label", "--target", "yes"], "--target: task 'label' (binary) has one output"),
    (["--task", "nope"], "--task: 'nope' is not a task"),
    ([], "--task: this run has 2 tasks"),
    (["--task", "value", "--baseline", "blur"], "--baseline: blur is for images"),
    (["--task", "value", "--layer", "trunk"], None),
])
def test_mistakes_are_one_line(cli, table_model, tmp_path, args, message):
    code, out, err = cli("explain", table_model.run.dir, "--split", "test", "--n", "2", "-o", tmp_path / "o", *args)
    if message is None:  # --layer is gradcam's: other methods ignore it
        assert code == 0, err
        return
    assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_inputs_or_split_not_both(cli, table_model, tmp_path):
    rows = tmp_path / "rows.csv"
    two_column_table(3).to_csv(rows, index=False)
    code, _, err = cli("explain", table_model.run.dir, rows, "--split", "test", "--task", "value")
    assert code == 2 and "INPUTS: give input files or --split" in err


def test_a_folder_with_other_files_is_left_alone(cli, table_model, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = cli("explain", table_model.run.dir, "--split", "test", "--task", "value", "-o", tmp_path / "mine")
    assert code == 2 and "holds other files" in err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    code, _, err = cli("explain", table_model.run.dir, "--split", "test", "--task", "value", "--n", "2", "-o", tmp_path / "new")
    code, _, err = cli("explain", table_model.run.dir, "--split", "test", "--task", "value", "--n", "3", "-o", tmp_path / "new")
    assert code == 0, err  # an earlier explanation is replaced as a whole
    assert len(pd.read_csv(tmp_path / "new" / "attributions.csv")) == 3


def test_embedded_categories_are_explained_by_switching_codes_not_by_gradients(cli, tmp_path):
    """A label decided by one category column: codes have no gradient, so gradient methods are refused (they would
    give the column exactly zero), and occlusion against the most frequent code finds the column."""
    import hydranet as hn

    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 300)
    frame = pd.DataFrame({"x": rng.normal(size=300), "colour": colour, "warm": np.where(colour == "red", "yes", "no")})
    frame.to_csv(tmp_path / "colours.csv", index=False)
    run = hn.Experiment({"name": "colours", "seed": 0, "data": {
        "source": "csv", "path": str(tmp_path / "colours.csv"), "split": {"val": 0.1, "test": 0.2},
        "encoder": {"name": "table", "categorical": "embedding"}},
        "tasks": {"warm": {"kind": "binary"}}, "model": {"trunk": {"name": "mlp", "hidden": [16]}},
        "train": {"epochs": 15, "batch_size": 32, "progress": False, "optimizer": {"name": "adamw", "lr": 0.02}}}
    ).fit(tmp_path / "run")
    code, _, err = cli("explain", run.dir, "--split", "test", "--method", "integrated_gradients", "-o", tmp_path / "ig")
    assert code == 2 and err.startswith("error: --method: integrated_gradients differentiates the inputs")
    code, _, err = cli("explain", run.dir, "--split", "test", "--n", "8", "--method", "occlusion", "-o", tmp_path / "o")
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "o" / "attributions.csv")
    assert frame["colour"].abs().mean() > 5 * frame["x"].abs().mean()  # rows of the baseline's colour get 0
