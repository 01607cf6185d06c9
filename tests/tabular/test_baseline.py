"""`hydranet baseline`: the run's own test rows, masked labels and units; the linear model is scikit-learn's."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import mean_squared_error, roc_auc_score

import hydranet.train.lifecycle as lifecycle
from hydranet.baseline import baselines
from hydranet.config import validate
from hydranet.data import build_dataset
from tests.conftest import tiny_table_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A trained two-task run on a tiny table (binary `kind`, regression `size` with missing labels), and the
    test rows its training used, recorded as the trainer built its data set."""
    from hydranet.train import fit

    folder = tmp_path_factory.mktemp("baseline")
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=200), rng.normal(size=200)
    size = 3 * x2 + 1 + rng.normal(size=200)
    size[::7] = np.nan
    pd.DataFrame({"x1": x1, "x2": x2, "kind": np.where(x1 + rng.normal(size=200) > 0, "up", "down"),
                  "size": size}).to_csv(folder / "tiny.csv", index=False)
    cfg = validate(tiny_table_config(folder / "tiny.csv", epochs=1) | {"seed": 3})
    used = {}
    original = lifecycle.build_dataset

    def recording(*args, **kwargs):
        data = original(*args, **kwargs)
        used["test"] = data.index["test"].tolist()
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lifecycle, "build_dataset", recording)
        fit(cfg, folder / "run", progress=False)
    return folder / "run", cfg, used["test"]


def test_baselines_use_the_runs_test_rows_and_sit_beside_its_metrics(tiny_run):
    run_dir, _, test_rows = tiny_run
    report = baselines(run_dir)
    assert report["test_rows"] == test_rows
    assert json.loads((run_dir / "baselines.json").read_text())["test_rows"] == test_rows
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["run"] == summary["test"]
    assert set(report["tasks"]) == {"kind", "size"}


def test_linear_models_equal_scikit_learn_run_directly(tiny_run):
    """Logistic regression on the labelled train rows; ridge on the rows with a `size` label, in original units."""
    run_dir, cfg, _ = tiny_run
    data = build_dataset(cfg)
    train, test = data.split("train"), data.split("test")
    logistic = LogisticRegression(max_iter=2000).fit(train["x"].numpy(), train["kind"].numpy().astype(int))
    auc = roc_auc_score(test["kind"].numpy(), logistic.predict_proba(test["x"].numpy())[:, 1])
    labelled, scored = ~np.isnan(train["size"].numpy()), ~np.isnan(test["size"].numpy())
    ridge = Ridge().fit(train["x"].numpy()[labelled], train["size"].numpy()[labelled])
    rmse = mean_squared_error(test["size"].numpy()[scored], ridge.predict(test["x"].numpy()[scored])) ** 0.5
    linear = baselines(run_dir)["tasks"]
    assert linear["kind"]["linear"]["roc_auc"] == pytest.approx(auc, abs=1e-6)
    assert linear["size"]["linear"]["rmse"] == pytest.approx(rmse, rel=1e-5)


def test_without_lightgbm_histgradientboosting_fits(tiny_run, monkeypatch):
    """LightGBM is an optional extra: hidden, scikit-learn's HistGradientBoosting takes its place."""
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    report = baselines(tiny_run[0])
    assert report["booster"] == "hist_gradient_boosting"
    assert set(report["tasks"]["kind"]) == {"hist_gradient_boosting", "linear"}


def test_cli_prints_the_table_and_refuses_images(cli, tiny_run, tmp_path):
    code, out, err = cli("baseline", tiny_run[0])
    assert code == 0, err
    assert "lightgbm" in out and "linear" in out and "baselines.json" in out
    images = tmp_path / "digits.yaml"
    images.write_text(yaml.safe_dump({"data": {"source": "digits"}, "tasks": {"digit": {}}}))
    code, _, err = cli("baseline", images)
    assert code == 2 and err.startswith("error: data.source:") and len(err.strip().splitlines()) == 1
