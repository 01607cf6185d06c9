"""Ctrl-C: `hydranet tune` stops cleanly, keeps every finished trial and its results; workers get the signal too."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

import hydranet as hn
from hydranet.tune.interrupts import Interrupts
from hydranet.tune.workers import stop_workers

SRC = str(Path(__file__).resolve().parents[2] / "src")


def default_sigint():
    """A background job's children start with SIGINT ignored (then Python raises no KeyboardInterrupt): undo that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def complete_trials(journal: Path) -> list:
    if not journal.exists():
        return []
    try:
        study = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    except KeyError:  # the study is not written yet
        return []
    return [t for t in study.trials if t.state == TrialState.COMPLETE]


def test_sigint_stops_cleanly_and_keeps_the_finished_trials(tiny_search_yaml, tmp_path):
    study_dir = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "hydranet.cli", "tune", str(tiny_search_yaml), "--trials", "1000",
                                "--sampler", "random", "--pruner", "none", "--dir", str(study_dir)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_sigint)  # noqa: PLW1509 (it only resets one signal)
    deadline = time.time() + 120
    while len(complete_trials(study_dir / "journal.log")) < 2:
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no two trials finished within two minutes"
        time.sleep(0.2)
    status = [line for line in Path(f"/proc/{process.pid}/status").read_text().splitlines() if line.startswith("Sig")]
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"still running 120 s after SIGINT; signal status before {status}; stdout {out[-2000:]}; stderr {err[-2000:]}") from None

    assert process.returncode == 130, err
    assert "interrupted: the finished trials are kept" in err and "Traceback" not in err
    trials = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)  # nothing left running
    assert all(t.user_attrs.get("interrupted") for t in trials if t.state == TrialState.FAIL)  # only the one Ctrl-C hit
    assert len(pd.read_csv(study_dir / "trials.csv")) == len(trials)
    assert (study_dir / "best.yaml").exists() and (study_dir / "plots" / "history.png").exists()


def test_the_parent_forwards_ctrl_c_to_workers_that_did_not_get_it():
    """`kill -INT` of the parent alone: it signals the workers still running, which then exit."""
    code = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    raise SystemExit(130)"
    workers = [subprocess.Popen([sys.executable, "-c", code], preexec_fn=default_sigint) for _ in range(2)]  # noqa: PLW1509
    time.sleep(0.5)  # let both reach their sleep
    start = time.time()
    stop_workers(workers, grace=0.1)
    assert [w.returncode for w in workers] == [130, 130] and time.time() - start < 30


def test_ctrl_c_raises_inside_the_training_and_waits_outside_it():
    interrupts = Interrupts()
    with interrupts.installed():
        os.kill(os.getpid(), signal.SIGINT)  # outside the training: only noted
        time.sleep(0.01)
        assert interrupts.pending
        with pytest.raises(KeyboardInterrupt), interrupts.immediate():  # a training that would start now does not
            pass
        interrupts.pending = False
        with pytest.raises(KeyboardInterrupt), interrupts.immediate():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert interrupts.pending  # also noted: a swallowed KeyboardInterrupt still stops the study after the trial
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_ctrl_c_while_optuna_records_a_trial_keeps_the_record(tiny_search, tmp_path, monkeypatch, one_thread):
    """Ctrl-C just as Optuna writes a finished trial: raised there, it would leave the trial running and make Optuna
    fail with UnboundLocalError; noted instead, the record is written, and no next trial starts."""
    real = JournalStorage.set_trial_state_values

    def ctrl_c_then_record(self, trial_id, state, values=None):
        if state == TrialState.COMPLETE:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, trial_id, state, values)

    monkeypatch.setattr(JournalStorage, "set_trial_state_values", ctrl_c_then_record)
    with pytest.raises(KeyboardInterrupt):
        hn.Experiment(tiny_search).tune(5, dir=tmp_path / "s", sampler="random", echo=lambda line: None)
    monkeypatch.undo()
    trials = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(tmp_path / "s" / "journal.log")))).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE]
    assert (tmp_path / "s" / "best.yaml").exists()
