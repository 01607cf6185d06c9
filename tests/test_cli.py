"""The command line end to end: train → evaluate → predict, and the bad inputs a user would make."""

import json

import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import tiny_table_config


def test_experiments_and_config(cli):
    code, out, _ = cli("experiments")
    assert code == 0 and "quickstart" in out and "seed-cnn" in out
    code, out, _ = cli("config", "seed-cnn", "--set", "train.epochs=2")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["train"]["epochs"] == 2 and cfg["model"]["trunk"]["padding"] == "valid"


def test_train_evaluate_predict_table(cli, tiny_csv, tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_table_config(tiny_csv)))
    run = tmp_path / "run"
    code, out, err = cli("train", exp, "--run-dir", run, "-q")
    assert code == 0, err
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "checkpoint/last.safetensors", "summary.json",
                 "plots/curves.png", "data.json", "run.json"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"experiment", "epochs", "train_seconds", "precision", "params", "val", "test"}
    assert {"accuracy", "roc_auc"} <= set(summary["test"]["kind"]) and {"mae", "rmse", "r2"} <= set(summary["test"]["size"])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]

    code, out, err = cli("evaluate", run, "--split", "test")
    assert code == 0, err
    evaluated = json.loads((run / "eval-test.json").read_text())
    for task, metrics in summary["test"].items():
        assert evaluated[task] == pytest.approx(metrics, rel=1e-5)

    new = pd.read_csv(tiny_csv).drop(columns=["kind", "size"]).head(5)
    new.to_csv(tmp_path / "new.csv", index=False)
    code, _, err = cli("predict", run, tmp_path / "new.csv", "--output", tmp_path / "pred.csv")
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["input", "kind_p(up)", "size"] and len(pred) == 5
    assert pred["kind_p(up)"].between(0, 1).all()


def test_predict_images(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("train", "--set", "train.epochs=1", "--set", "data.limit=300", "--run-dir", run, "-q")
    assert code == 0, err
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), color=i * 60).save(folder / f"{i}.png")
    code, _, err = cli("predict", run, folder, "-o", tmp_path / "p.csv")
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["input", "digit", "parity_p(odd)", "ink"] and len(pred) == 3


def _bad_inputs(tmp_path, tiny_csv):
    corrupt = tmp_path / "imgs" / "cat"
    corrupt.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(corrupt / "ok.png")
    (corrupt / "broken.png").write_bytes(b"not an image")
    nolabels = tmp_path / "nolabels.csv"
    pd.DataFrame({"x": [1, 2, 3], "kind": ["?", "", None], "size": [1, 2, 3]}).to_csv(nolabels, index=False)
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    table = tmp_path / "table.yaml"
    table.write_text(yaml.safe_dump(tiny_table_config(tiny_csv)))
    images = tmp_path / "images.yaml"
    images.write_text(yaml.safe_dump({"data": {"source": "image_folder", "path": str(tmp_path / "imgs")},
                                      "tasks": {"label": {"kind": "classification"}}}))
    return [
        (["train", str(tmp_path / "missing.yaml")], "missing.yaml: file not found"),
        (["train", table, "--set", f"data.path={tmp_path / 'nope.csv'}"], "nope.csv"),
        (["train", "--set", "data.source=sql"], "data.source: unknown source 'sql'"),
        (["train", "--set", "model.trunk.name=vgg"], "model.trunk.name: unknown trunk 'vgg'"),
        (["train", "--set", "tasks.digit.kind=ranking"], "tasks.digit.kind"),
        (["train", "--set", "train.lr=0.1"], "unknown key 'train.lr'"),
        (["train", table, "--set", "tasks.kind.column=label"], "no column 'label'"),
        (["train", images], "broken.png"),
        (["train", table, "--set", f"data.path={nolabels}"], "has no labels"),
        (["train", "--resume", str(notrun)], "not a hydranet run directory"),
        (["evaluate", str(notrun)], "not a hydranet run directory"),
    ]


def test_bad_inputs_one_line_exit_2(cli, tmp_path, tiny_csv):
    for args, expected in _bad_inputs(tmp_path, tiny_csv):
        code, _, err = cli(*args)
        assert code == 2, (args, err)
        assert expected in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err


def test_existing_run_is_not_overwritten(cli, tmp_path, tiny_csv):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_table_config(tiny_csv, epochs=1)))
    run = tmp_path / "run"
    assert cli("train", exp, "--run-dir", run, "-q")[0] == 0
    before = (run / "model.safetensors").read_bytes()
    code, _, err = cli("train", exp, "--run-dir", run, "-q")
    assert code == 2 and "already holds a run" in err
    assert (run / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["attack", "nowhere", "--steps", "0", "--eps", "0.1"], "--steps: expected at least 1, got 0"),
    (["attack", "nowhere", "--limit", "0", "--eps", "0.1"], "--limit: expected at least 1, got 0"),
    (["attack", "nowhere", "--restarts", "-1", "--eps", "0.1"], "--restarts: expected at least 1, got -1"),
    (["bench", "mtl", "--seeds", "0"], "--seeds: expected at least 1, got 0"),
])
def test_counts_below_one_are_one_line_errors(cli, args, message):
    code, _, err = cli(*args)
    assert code == 2 and err.strip() == f"error: {message}"


def test_version_and_bare_command(cli):
    import hydranet

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"hydranet {hydranet.__version__}"
    code, out, err = cli()
    assert "Usage" in out + err and "train" in out + err  # the help, with the commands


@pytest.mark.parametrize("args", [
    ["train", "--run-dir", "a-file/run", "-q"],
    ["bench", "mtl", "--out", "a-file/bench", "--seeds", "1"],
    ["tune", "search.yaml", "--dir", "a-file/study", "-n", "1"],
])
def test_output_folders_under_a_file_are_one_line(cli, tmp_path, args):
    (tmp_path / "a-file").write_text("kept")
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(
        {"search": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}}))
    code, _, err = cli(*args)
    target = args[args.index(next(a for a in args if a.startswith("a-file/")))]
    assert code == 2 and err.startswith(f"error: {target}") and err.count("\n") == 1
    assert ": cannot write here (a-file is a file, not a folder); expected a folder that can be created and written" in err
    assert (tmp_path / "a-file").read_text() == "kept"


@pytest.mark.parametrize("args, expected", [
    (["train", "--steps", "3"], "error: hydranet train: No such option: --steps"),
    (["attack"], "error: hydranet attack: Missing argument 'run_dir'."),
    (["attack", "runs/x", "--steps", "abc"], "error: hydranet attack: Invalid value for '--steps': Input should be a valid integer"),
    (["probe", "runs/x", "--labels-fraction", "half"], "error: hydranet probe: Invalid value for '--labels-fraction'"),
    (["trian"], "error: hydranet: No such command 'trian'."),
    (["bench", "mtl", "quickstart", "--seeds"], "error: hydranet: Option '--seeds' requires an argument."),
])
def test_usage_errors_are_one_line_naming_the_option_and_exit_2(cli, args, expected):
    """click's usage errors: one `error:` line instead of its boxed, multi-line panel."""
    code, out, err = cli(*args)
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1 and out == ""


def test_help_is_unchanged_by_the_usage_error_handling(cli):
    code, out, _ = cli("train", "--help")
    assert code == 0 and "Usage: " in out and "--run-dir" in out and "Error" not in out
    code, _, _ = cli("--version")
    assert code == 0
    code, out, err = cli()  # no command: the help, as before, with exit code 2
    assert code == 2 and "Commands" in out + err
