"""Run-folder integrity: checksummed and run-stamped weights, one clear line for every damaged run file, resume
only on the same data, nothing created by a refused start, Ctrl-C and --resume of a finished run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import hydranet as hn
from hydranet.errors import UserError
from hydranet.files import read_tensors, write_tensors
from hydranet.train import load_run, resume
from tests.conftest import StopAt, tiny_table_config


def _table(path, shift=0.0):
    """A small two-task table (tiny_table_config's columns kind and size) at `path`; `shift` changes one value."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=120), rng.normal(size=120)
    x1[0] += shift
    pd.DataFrame({"x1": x1, "x2": x2, "kind": np.where(x1 > 0, "up", "down"), "size": 3 * x2 + 1}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run (two epochs), copied by each test that damages it."""
    root = tmp_path_factory.mktemp("trained")
    hn.Experiment(tiny_table_config(_table(root / "t.csv"), epochs=2)).fit(root / "run")
    return root / "run"


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def _flip_last_byte(path):
    """Flip one bit in the data region (safetensors puts the tensors' bytes after the header, at the end)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(code, err, *needles):
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


# --- 1. checksums -----------------------------------------------------------------------------------------


def test_a_flipped_bit_is_refused_and_foreign_files_still_load(tmp_path):
    path = tmp_path / "w.safetensors"
    write_tensors(path, {"w": torch.arange(6.0), "b": torch.ones(2, dtype=torch.bfloat16)}, {"note": "kept"})
    tensors, metadata = read_tensors(path)
    assert metadata == {"note": "kept"} and torch.equal(tensors["w"], torch.arange(6.0))
    _flip_last_byte(path)
    with pytest.raises(UserError, match=r"w.safetensors: contents do not match their SHA-256 \(the file is corrupt"):
        read_tensors(path)

    from safetensors.torch import save_file  # a file without hydranet's digest (older runs, other programs)

    save_file({"w": torch.arange(3.0)}, str(tmp_path / "foreign.safetensors"))
    assert torch.equal(read_tensors(tmp_path / "foreign.safetensors")[0]["w"], torch.arange(3.0))


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_refuse_corrupt_weights(cli, run, tmp_path, command):
    _flip_last_byte(run / "model.safetensors")
    args = [tmp_path / "t.csv"] if command == "predict" else []
    if args:
        _table(args[0])
    code, _, err = cli(command, run, *args)
    _one_line_error(code, err, "model.safetensors: contents do not match their SHA-256")


def test_a_corrupt_checkpoint_is_refused_on_resume(cli, tmp_path):
    exp = hn.Experiment(tiny_table_config(_table(tmp_path / "t.csv"), epochs=3))
    with pytest.raises(KeyboardInterrupt):
        exp.fit(tmp_path / "cut", callbacks=[StopAt(2)])
    _flip_last_byte(tmp_path / "cut" / "checkpoint" / "last.safetensors")
    code, _, err = cli("train", "--resume", tmp_path / "cut", "-q")
    _one_line_error(code, err, "last.safetensors: contents do not match their SHA-256")


# --- 2. weights of another run, and weights that do not fit -------------------------------------------------


def test_weights_copied_from_another_run_are_refused(run, trained, tmp_path):
    other = tmp_path / "other"
    hn.Experiment(tiny_table_config(_table(tmp_path / "t.csv"), epochs=1)).fit(other)
    shutil.copy(other / "model.safetensors", run / "model.safetensors")
    with pytest.raises(UserError, match=r"model.safetensors: belongs to another run \(run id \w+, this run's is \w+\)"):
        hn.load(run)
    shutil.copy(other / "checkpoint" / "last.safetensors", run / "checkpoint" / "last.safetensors")
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "status": "interrupted"}))
    with pytest.raises(UserError, match="last.safetensors: belongs to another run"):
        resume(run, progress=False)
    with pytest.raises(UserError, match="model.safetensors: belongs to another run"):  # init_from of a run dir too
        hn.Experiment(tiny_table_config(tmp_path / "t.csv", epochs=1), {"model.init_from": str(run)}).fit(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_weights_that_do_not_fit_name_the_file_and_the_first_key(cli, run):
    state = read_tensors(run / "model.safetensors")[0]
    first = next(iter(state))
    write_tensors(run / "model.safetensors", {**state, first: torch.zeros(3, 3)})  # unstamped, like an old file
    code, _, err = cli("evaluate", run)
    _one_line_error(code, err, f"model.safetensors: does not fit the model the run's config builds: {first} has shape [3, 3]")
    del state[first]
    write_tensors(run / "model.safetensors", state)
    code, _, err = cli("evaluate", run)
    _one_line_error(code, err, f"{first} is missing")


def test_a_checkpoint_that_does_not_fit_the_config_is_one_line_on_resume(cli, tmp_path):
    exp = hn.Experiment(tiny_table_config(_table(tmp_path / "t.csv"), epochs=3))
    with pytest.raises(KeyboardInterrupt):
        exp.fit(tmp_path / "cut", callbacks=[StopAt(1)])
    config = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    config["model"]["trunk"]["hidden"] = [8]  # the config edited after the checkpoint was written
    (tmp_path / "cut" / "config.yaml").write_text(yaml.safe_dump(config))
    code, _, err = cli("train", "--resume", tmp_path / "cut", "-q")
    _one_line_error(code, err, "last.safetensors: does not fit the model the run's config builds: trunk.")


# --- 3. every run file read through one wrapper --------------------------------------------------------------

DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "not UTF-8": lambda p: p.write_bytes(b"\xff\xfe\x00garbage"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "a folder": lambda p: (p.unlink(), p.mkdir()),
    "the wrong type": lambda p: p.write_text("[1, 2]"),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", ["config.yaml", "run.json", "data.json", "summary.json"])
def test_a_damaged_run_file_is_one_line_naming_it(run, name, damage):
    DAMAGE[damage](run / name)
    with pytest.raises(UserError) as caught:
        hn.load(run)
    message = str(caught.value)  # the wrapper's "(expected …)", or the field a truncated config lacks
    assert f"{name}: " in message and ("(expected " in message or "should be" in message)
    assert "\n" not in message


def test_every_reader_goes_through_the_wrapper(cli, run, tmp_path):
    """evaluate, predict, attack, probe, --resume and init_from of a run directory all say the same."""
    (run / "run.json").write_text('{"id": "1234", "status": "fin')
    _table(tmp_path / "t.csv")
    for args in (["evaluate", run], ["predict", run, tmp_path / "t.csv"], ["attack", run, "--eps", "0.1"],
                 ["probe", run], ["train", "--resume", run],
                 ["train", "quickstart", "--set", f"model.init_from={run}", "--run-dir", tmp_path / "new"]):
        code, _, err = cli(*args)
        _one_line_error(code, err, "run.json: is corrupt or truncated", "(expected the run's provenance")
    assert not (tmp_path / "new").exists()


def test_a_missing_data_json_and_a_checkpoint_file_where_a_folder_belongs(cli, run):
    (run / "data.json").unlink()
    with pytest.raises(UserError, match="run has no data.json"):
        load_run(run)
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint").write_text("")
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "status": "interrupted"}))
    code, _, err = cli("train", "--resume", run)
    _one_line_error(code, err, "checkpoint: is a file (expected the run's checkpoint folder)")


# --- 4. resume only on the same data ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["train", "pretrain"])
def test_resume_on_changed_data_is_refused_before_writing(cli, tmp_path, kind):
    options = {"ssl.method": "denoising"} if kind == "pretrain" else {}
    exp = hn.Experiment(tiny_table_config(_table(tmp_path / "t.csv"), epochs=3), options)
    with pytest.raises(KeyboardInterrupt):
        getattr(exp, "fit" if kind == "train" else "pretrain")(tmp_path / "cut", callbacks=[StopAt(1)])
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["data_sha256"]
    before = _snapshot(tmp_path / "cut")
    _table(tmp_path / "t.csv", shift=0.5)
    code, _, err = cli(kind, "--resume", tmp_path / "cut", "-q")
    _one_line_error(code, err, "was started on different data", "resuming would mix two data sets: start a new run")
    assert _snapshot(tmp_path / "cut") == before
    _table(tmp_path / "t.csv")  # the same data again: resumes
    assert cli(kind, "--resume", tmp_path / "cut", "-q")[0] == 0


# --- 5. a refused start leaves no folder -----------------------------------------------------------------------


def _tiny_yaml(folder, **overrides):
    config = tiny_table_config(_table(folder / "t.csv"), epochs=1)
    config["model"].update(overrides)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    return folder / "tiny.yaml"


@pytest.mark.parametrize("mistake", [
    {"init_from": "junk.pt"},  # a file that is not weights
    {"init_from": "other.safetensors", "init_map": {"": "nowhere."}},  # weights that match nothing
])
def test_a_refused_start_leaves_nothing_so_the_same_run_dir_works(cli, tmp_path, mistake):
    (tmp_path / "junk.pt").write_text("not weights")
    write_tensors(tmp_path / "other.safetensors", {"w": torch.ones(2)})
    code, _, err = cli("train", _tiny_yaml(tmp_path, **mistake), "--run-dir", "r", "-q")
    assert code == 2 and "model.init_from" in err, err
    assert not (tmp_path / "r").exists()
    assert cli("train", _tiny_yaml(tmp_path), "--run-dir", "r", "-q")[0] == 0


def test_a_model_that_cannot_be_built_for_the_data_leaves_no_folder(cli, tmp_path):
    small = ["--set", "data.limit=100", "--set", "train.epochs=1"]
    code, _, err = cli("train", "quickstart", *small, "--set", "model.trunk.channels=[8,8,8,8]", "--run-dir", "r", "-q")
    _one_line_error(code, err, "model.trunk.channels: input (1, 8, 8) shrinks to nothing")  # only 8×8 digits show it
    assert not (tmp_path / "r").exists()
    assert cli("train", "quickstart", *small, "--run-dir", "r", "-q")[0] == 0


# --- 6. Ctrl-C ---------------------------------------------------------------------------------------------------


def test_ctrl_c_prints_the_resume_command_and_marks_the_run(cli, tmp_path, monkeypatch):
    """In-process: Ctrl-C arrives right after the first checkpoint is written."""
    from hydranet.train.callbacks import Checkpointer

    save = Checkpointer.on_epoch_end

    def save_then_interrupt(self, trainer, record):
        save(self, trainer, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "on_epoch_end", save_then_interrupt)
    code, _, err = cli("train", _tiny_yaml(tmp_path), "--run-dir", "r", "-q")
    _assert_interrupted(code, err, tmp_path / "r", "r")


@pytest.mark.slow
def test_sigint_prints_the_resume_command_and_marks_the_run(tmp_path):
    """A real SIGINT to `hydranet train`, sent once the first epoch's checkpoint exists."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_table_config(_table(tmp_path / "t.csv"), epochs=100000)))
    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "hydranet.cli", "train", str(config), "-q", "--set", "train.threads=1",
                             "--run-dir", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 120
    while not (run / "checkpoint" / "last.safetensors").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for the first checkpoint, not timing the run
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    _assert_interrupted(proc.returncode, err, run, str(run))


def _assert_interrupted(code, err, run, shown):
    assert code == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: continue with hydranet train --resume {shown}"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert read_tensors(run / "checkpoint" / "last.safetensors")[1]["state"]  # the last complete epoch's state


# --- 7. --resume of a finished run -------------------------------------------------------------------------------


def test_resuming_a_finished_run_shows_its_summary_and_retrains_nothing(cli, run):
    before = _snapshot(run)
    code, out, err = cli("train", "--resume", run, "-q")
    assert code == 0 and "finished already" in err and "nothing was retrained" in err
    assert "tiny — 2 epochs" in out and "accuracy" in out  # the stored summary
    assert _snapshot(run) == before
    (run / "summary.json").unlink()  # a finished run without its results is damaged, not finished
    code, _, err = cli("train", "--resume", run, "-q")
    _one_line_error(code, err, "summary.json: missing (expected the run's results")
