"""hydranet.rundir: claiming, reading and checking run directories, and the layout named in one place."""

import ast
import json
from pathlib import Path

import pytest

from hydranet.config import load_config
from hydranet.errors import UserError
from hydranet.rundir import RunDir

SRC = Path(__file__).resolve().parents[1] / "src" / "hydranet"
# (not "plots": a study directory has its own)
LAYOUT = {"config.yaml", "run.json", "data.json", "metrics.jsonl", "model.safetensors", "trunk.safetensors",
          "checkpoint", "last.safetensors", "best.safetensors", "best_robust.safetensors", "summary.json",
          "init.json", "tensorboard", "reference.json", "reference_rows.parquet"}


def test_a_new_run_is_claimed_once(tmp_path):
    cfg = load_config("quickstart", ["train.epochs=1"])
    run = RunDir.create(cfg, tmp_path / "r", "pretrain")
    assert run.checkpoint_dir.is_dir() and run.read_config() == cfg
    meta = json.loads(run.run_json.read_text())
    assert meta["kind"] == "pretrain" and meta["status"] == "running" and meta["hydranet"]
    run.finish({"epochs": 1})
    assert json.loads(run.run_json.read_text()) == {**meta, "status": "finished"}  # provenance written once
    assert json.loads(run.summary.read_text()) == {"epochs": 1}
    with pytest.raises(UserError, match="already holds a run"):
        RunDir.create(cfg, tmp_path / "r", "train")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="exists and is not a folder"):
        RunDir.create(cfg, tmp_path / "file", "train")


def test_reading_checks_it_is_a_run(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        RunDir.open(tmp_path / "missing")
    with pytest.raises(UserError, match=r"not a hydranet run directory \(no config.yaml\)"):
        RunDir.open(tmp_path)
    run = RunDir.create(load_config("quickstart"), tmp_path / "r", "train")
    with pytest.raises(UserError, match=r"run has no model.safetensors \(did training finish"):
        RunDir.open(run.path).require(run.model)
    assert run.read_summary() == {} and run.weights() is None
    run.model.write_bytes(b"")
    run.trunk.write_bytes(b"")
    assert run.weights() == run.trunk  # a pretrained trunk is what another run starts from


def test_a_config_cut_short_at_a_line_is_refused_and_one_without_the_markers_reads(tmp_path):
    """Every field has a default: without the closing line, a config.yaml cut between two lines would load with
    its tail defaulted (the train section's later fields, `monitor:`, `search:`), silently."""
    cfg = load_config("quickstart", ["train.epochs=1"])
    run = RunDir.create(cfg, tmp_path / "r", "train")
    whole = run.config.read_text()
    lines = whole.splitlines(keepends=True)
    for keep in (len(lines) // 2, len(lines) - 1):
        run.config.write_text("".join(lines[:keep]))
        with pytest.raises(UserError, match=r"config.yaml: is corrupt or truncated \(ValueError: cut short"):
            RunDir.open(run.path).read_config()
    run.config.write_text("".join(lines[1:-1]))  # as written before the markers: read as it stands
    assert RunDir.open(run.path).read_config() == cfg
    run.config.write_text(whole)
    assert RunDir.open(run.path).read_config() == cfg


def test_the_layout_is_named_only_in_rundir_py():
    """File names of a run directory as string literals (docstrings aside) appear in rundir.py alone."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "rundir.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        offenders += [f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and node.value in LAYOUT and id(node) not in docstrings]
    assert not offenders, "name run files through hydranet.rundir.RunDir:\n" + "\n".join(offenders)


def test_a_new_run_needs_a_missing_or_empty_folder(tmp_path):
    """A folder holding a user's own files (no config.yaml) is refused and left as it was."""
    from hydranet.config import load_config
    from hydranet.errors import UserError
    from hydranet.rundir import RunDir

    cfg = load_config("quickstart")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.json").write_text("my own numbers")
    with pytest.raises(UserError, match=r"is not empty \(summary.json\); a new run needs a missing or empty folder"):
        RunDir.create(cfg, mine, "train")
    assert sorted(p.name for p in mine.iterdir()) == ["summary.json"]
    assert (mine / "summary.json").read_text() == "my own numbers"
    empty = tmp_path / "empty"
    empty.mkdir()
    run = RunDir.create(cfg, empty, "train")
    assert run.config.exists() and not (empty / ".claiming").exists()
    RunDir.create(cfg, tmp_path / "new" / "deeper", "train")  # a missing folder is made


def test_a_folder_being_claimed_is_refused(tmp_path):
    """Two runs started in one folder at once: the second finds the first's claim and stops, naming the folder."""
    from hydranet.config import load_config
    from hydranet.errors import UserError
    from hydranet.rundir import RunDir

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".claiming").touch()  # what the first run holds while it writes config.yaml
    with pytest.raises(UserError, match="another run is being started in this folder"):
        RunDir.create(load_config("quickstart"), tmp_path / "run", "train")
