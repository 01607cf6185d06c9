"""`hydranet tune` at tiny budgets: results, best.yaml, resume, failures, pruning, two workers, several objectives."""

import json
import os
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

import hydranet as hn
from hydranet.config import load_config
from hydranet.errors import UserError
from hydranet.tune import workers
from hydranet.tune.settings import Settings, make_pruner

QUIET = {"echo": lambda line: None}


def test_tune_writes_results_and_best_yaml_reproduces_the_best_trial(cli, tiny_search_yaml, tmp_path, one_thread):
    code, out, err = cli("tune", tiny_search_yaml, "--trials", 3, "--sampler", "random", "--dir", "study")
    assert code == 0, err
    study = tmp_path / "study"
    frame = pd.read_csv(study / "trials.csv")
    assert list(frame["state"]) == ["COMPLETE"] * 3 and list(frame["number"]) == [0, 1, 2]
    best = frame.loc[frame["val/loss"].idxmin()]
    best_run = Path(best["run_dir"])
    summary = json.loads((best_run / "summary.json").read_text())
    assert best["val/loss"] == pytest.approx(sum(m["loss"] for m in summary["val"].values()))  # the final weights' val loss
    assert load_config(study / "best.yaml") == load_config(best_run / "config.yaml")
    assert yaml.safe_load((study / "best.yaml").read_text())["search"] == {}
    assert f"best trial {best['number']}" in (study / "best.yaml").read_text().splitlines()[0]
    for plot in ("history", "importances", "parallel"):
        assert (study / "plots" / f"{plot}.png").stat().st_size > 1000
        assert "plotly.min.js" in (study / "plots" / f"{plot}.html").read_text()
    assert "best trial" in out

    code, _, err = cli("train", study / "best.yaml", "--run-dir", "again", "-q")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["val"] == summary["val"]  # `hydranet train best.yaml` reproduces the trial exactly


def test_rerunning_resumes_the_study_up_to_its_budget(tiny_search, tmp_path, one_thread):
    experiment = hn.Experiment(tiny_search)
    first = experiment.tune(2, dir=tmp_path / "s", sampler="random", **QUIET)
    assert [t.number for t in first.study.trials] == [0, 1]
    second = experiment.tune(3, dir=tmp_path / "s", sampler="random", **QUIET)
    trials = second.study.trials
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[2].params not in (trials[0].params, trials[1].params)  # the resumed sampler does not replay draws
    again = experiment.tune(2, dir=tmp_path / "again", sampler="random", **QUIET).study.trials
    assert [t.params for t in again] == [t.params for t in trials[:2]]  # one worker, same seed: the same study
    assert second.best == load_config(tmp_path / "s" / "best.yaml")
    assert len(experiment.tune(3, dir=tmp_path / "s", **QUIET).study.trials) == 3  # budget reached: nothing to run
    with pytest.raises(UserError, match=r"optimizes val/loss:min, not params:min; use the same objectives or another --study"):
        experiment.tune(4, dir=tmp_path / "s", objectives=["params:min"], **QUIET)


def test_a_crashing_trial_is_recorded_failed_and_the_study_goes_on(tmp_path, one_thread):
    """padding `valid` shrinks 8×8 digits to nothing in two conv/pool layers: that trial fails when its model is built."""
    experiment = hn.Experiment("quickstart", {
        "data.limit": 200, "train.epochs": 1, "train.threads": 1, "train.progress": False,
        "search.model.trunk.padding": {"type": "categorical", "choices": ["valid", "same"]},
    })
    result = experiment.tune(2, dir=tmp_path / "s", sampler="grid", **QUIET)
    states = {t.params["model.trunk.padding"]: t for t in result.study.trials}
    assert states["valid"].state == TrialState.FAIL and states["same"].state == TrialState.COMPLETE
    assert "shrinks to nothing" in states["valid"].user_attrs["error"]
    assert "Traceback" in (Path(states["valid"].user_attrs["run_dir"]) / "error.txt").read_text()
    assert "shrinks to nothing" in pd.read_csv(tmp_path / "s" / "trials.csv").set_index("state").loc["FAIL", "error"]
    assert result.best.model.trunk.padding == "same"


class PruneFromEpoch(optuna.pruners.BasePruner):
    """Prunes every trial once it has reported `epoch` epochs: a pruner whose decisions a test can predict."""

    def __init__(self, epoch):
        self.epoch = epoch

    def prune(self, study, trial):
        return trial.last_step is not None and trial.last_step >= self.epoch


def test_pruned_trials_stop_early_after_reporting_every_epoch(tiny_search, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(workers, "make_pruner", lambda settings, optuna: PruneFromEpoch(2))
    tiny_search["train"]["epochs"] = 5
    result = hn.Experiment(tiny_search).tune(2, dir=tmp_path / "s", sampler="random", **QUIET)
    for trial in result.study.trials:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 2
        history = [json.loads(line) for line in (Path(trial.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert trial.intermediate_values == {1: history[0]["val_loss"], 2: history[1]["val_loss"]}
    assert not (tmp_path / "s" / "best.yaml").exists() and result.best is None
    assert list(pd.read_csv(tmp_path / "s" / "trials.csv")["state"]) == ["PRUNED", "PRUNED"]


@pytest.mark.parametrize("name, kind", [("median", "MedianPruner"), ("asha", "SuccessiveHalvingPruner"),
                                        ("hyperband", "HyperbandPruner"), ("none", "NopPruner")])
def test_pruner_names(name, kind):
    settings = Settings(base={"train": {"epochs": 9}}, space={}, objectives=[], study="s", dir=".",
                        storage=None, sampler="tpe", pruner=name, budget=1)
    assert type(make_pruner(settings, optuna)).__name__ == kind


def test_two_worker_processes_share_one_study(tiny_search, tmp_path, monkeypatch):
    """Each worker is a fresh Python process (a few seconds to import torch): one trial each keeps this short.
    A `yaml.py` in the working folder is never imported by a worker (they start with `python -P`)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yaml.py").write_text("open('imported-from-cwd', 'w').close()\nfrom yaml import *\n")
    result = hn.Experiment(tiny_search).tune(2, workers=2, dir=tmp_path / "s", sampler="random", **QUIET)
    assert not (tmp_path / "imported-from-cwd").exists()
    trials = result.study.trials
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran a trial
    assert trials[0].params != trials[1].params  # seeded per worker: the two did not draw the same values
    assert all((Path(t.user_attrs["run_dir"]) / "summary.json").exists() for t in trials)


def test_workers_import_this_hydranet_and_the_callers_path_but_never_the_working_folder(monkeypatch, tmp_path):
    """An empty PYTHONPATH entry (`PYTHONPATH=:/x`) would mean the working folder again: it is dropped."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["", "plugins", "", "/opt/x"]))
    entries = workers.worker_import_path().split(os.pathsep)
    assert entries == [str(Path(workers.__file__).resolve().parents[2]), str(tmp_path / "plugins"), "/opt/x"]


def dominates(a, b, maximize):
    better_or_equal = all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximize))
    return better_or_equal and any(x != y for x, y in zip(a, b))


def test_several_objectives_give_the_pareto_front(cli, tiny_search_yaml, tmp_path, one_thread):
    names = ["val/kind/accuracy", "params", "latency"]
    code, out, err = cli("tune", tiny_search_yaml, "--trials", 4, "--sampler", "random", "--dir", "mo",
                         "--objectives", "val/kind/accuracy:max,params:min,latency:min")
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "mo" / "trials.csv")
    for _, row in frame.iterrows():
        model = hn.load(row["run_dir"]).run.model
        assert row["params"] == sum(p.numel() for p in model.parameters())
        assert row["latency"] > 0
    points = {row["number"]: [row[n] for n in names] for _, row in frame.iterrows()}
    front = sorted(n for n, p in points.items() if not any(dominates(q, p, [True, False, False]) for q in points.values()))
    assert sorted(pd.read_csv(tmp_path / "mo" / "pareto.csv")["number"]) == front
    run_dirs = frame.set_index("number")["run_dir"]
    for number in front:
        trial_yaml = tmp_path / "mo" / "pareto" / f"trial-{number:04d}.yaml"
        assert load_config(trial_yaml) == load_config(Path(run_dirs[number]) / "config.yaml")
    assert (tmp_path / "mo" / "plots" / "pareto.png").exists() and not (tmp_path / "mo" / "best.yaml").exists()
    assert "Pareto front" in out


@pytest.mark.parametrize("args, expected", [
    (["--pruner", "median", "--objectives", "val/loss,params"], "--pruner median: pruning needs one objective that is a val metric"),
    (["--sampler", "grid"], "--sampler grid: search.train.optimizer.lr is a continuous float range"),
    (["--sampler", "bayes"], "--sampler: unknown sampler 'bayes' (known: tpe, random, cmaes, grid)"),
    (["--sampler", "cmaes", "--objectives", "val/loss,params"], "--sampler cmaes: CMA-ES optimizes one objective"),
    (["--storage", "nosuchdb://x"], "--storage: cannot open 'nosuchdb://x'"),
    (["--trials", "0"], "--trials: expected at least 1, got 0"),
])
def test_bad_options_are_one_line_and_exit_2(cli, tiny_search_yaml, tmp_path, args, expected):
    code, _, err = cli("tune", tiny_search_yaml, *args, "--dir", "s")
    assert code == 2 and expected in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_an_experiment_without_search_is_refused(cli):
    code, _, err = cli("tune", "quickstart")
    assert code == 2 and "search: the experiment has nothing to search" in err
