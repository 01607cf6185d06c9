"""The Python API and the default experiment end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

import hydranet as hn
from tests.conftest import tiny_table_config


def test_quickstart_default_meets_its_promise(cli, tmp_path):
    """`hydranet train` with no argument: digit test accuracy ≥ 0.95 and a summary table."""
    code, out, err = cli("train", "--run-dir", tmp_path / "qs", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert summary["experiment"] == "quickstart"
    assert summary["test"]["digit"]["accuracy"] >= 0.95
    assert summary["test"]["ink"]["r2"] > 0.5 and summary["test"]["parity"]["roc_auc"] > 0.9
    assert "digit" in out and "accuracy" in out  # the summary table


def test_experiment_fit_load_predict_images(tmp_path):
    run = hn.Experiment("quickstart", {"train.epochs": 2, "data.limit": 400}).fit(tmp_path / "run")
    model = hn.load(run.dir)
    digits = load_digits()
    raw = np.round(digits.images[:5] * 255 / 16).astype(np.uint8)[:, None]  # (5, 1, 8, 8) like the source
    pred = model.predict(raw)
    assert list(pred.columns) == ["digit", "parity_p(odd)", "ink"] and len(pred) == 5
    assert set(pred["digit"]) <= {str(d) for d in range(10)}
    assert pred["parity_p(odd)"].between(0, 1).all()
    assert model.evaluate("test").keys() == {"digit", "parity", "ink"}


def test_experiment_from_dict_and_table_predict(tmp_path, tiny_csv):
    run = hn.Experiment(tiny_table_config(tiny_csv), {"train.epochs": 2}).fit(tmp_path / "run")
    assert run.summary["epochs"] == 2 and run.config.train.epochs == 2
    frame = pd.read_csv(tiny_csv).head(4)
    pred = hn.load(run.dir).predict(frame.drop(columns=["kind", "size"]))
    assert list(pred.columns) == ["kind_p(up)", "size"] and len(pred) == 4


def test_bad_override_in_api():
    with pytest.raises(hn.UserError, match="unknown key 'train.epoch'"):
        hn.Experiment("quickstart", {"train.epoch": 3})


def test_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    run = hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 200, "train.tensorboard": True}).fit(tmp_path / "run")
    assert list((run.dir / "tensorboard").glob("events.out.tfevents.*"))


def test_registered_custom_balancer_drops_in(tmp_path):
    @hn.register("balancer", "first_only_test")
    class FirstOnly:
        def __init__(self, options, tasks, seed):
            self.calls = 0

        def backward(self, losses, shared_params):
            first = next(iter(losses))
            losses[first].backward()
            return {name: float(name == first) for name in losses}

    run = hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 200, "mtl.balancer": "first_only_test"}).fit(tmp_path / "r")
    assert run.history[0]["weights"] == {"digit": 1.0, "parity": 0.0, "ink": 0.0}


def test_progress_bar_runs_without_warnings(tmp_path, recwarn):
    run = hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 300}).fit(tmp_path / "run", progress=True)
    assert run.summary["epochs"] == 1
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]
