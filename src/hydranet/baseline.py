"""`hydranet baseline`: gradient-boosted trees and a linear model per task, on exactly a run's rows and targets.

A practitioner judges a deep model on a table against these first; fitting them on the run's own encoded split
(same seed → same train/val/test rows, same masked labels, same example weights) makes the comparison fair.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hydranet.config import Config, load_config
from hydranet.data import build_dataset
from hydranet.data.dataset import Dataset, weight_key
from hydranet.errors import UserError
from hydranet.files import write_json
from hydranet.kinds import baseline_estimator
from hydranet.randomness import Purpose, purpose_seed
from hydranet.rundir import RunDir
from hydranet.tasks import Task

BOOSTING_ROUNDS = 1000  # an upper bound: LightGBM stops 50 rounds after val stops improving (HGB: 20 iterations)
PROBABILITY_FLOOR = 1e-7  # keeps the logits of a certain tree prediction finite


def booster_name() -> str:
    """LightGBM when installed (`pip install hydranet[tabular]`), else scikit-learn's HistGradientBoosting."""
    return "lightgbm" if importlib.util.find_spec("lightgbm") is not None else "hist_gradient_boosting"


def regressor(task: Task) -> bool:
    """Whether the task's kind is fitted with a regressor (values) rather than a classifier (labels)."""
    return baseline_estimator(task.spec) == "regressor"


def linear_model(regression: bool, seed: int) -> Any:
    """Logistic regression for labels, ridge regression for values: scikit-learn's defaults, more iterations."""
    from sklearn.linear_model import LogisticRegression, Ridge

    return Ridge() if regression else LogisticRegression(max_iter=2000, random_state=seed)


def fit_booster(regression: bool, seed: int, train: tuple, val: tuple | None) -> Any:
    """Boosted trees fitted on (x, y, weight) of train, stopping early on val's labelled rows when there are any."""
    x, y, weight = train
    if booster_name() == "lightgbm":
        import lightgbm

        # One thread: on a shared 2-core machine OpenMP threads spin against each other (LightGBM, breast cancer,
        # 400 rows: 1.1 s on one thread, 11 s on all, 33 s on two; HistGradientBoosting alike).
        model = (lightgbm.LGBMRegressor if regression else lightgbm.LGBMClassifier)(
            n_estimators=BOOSTING_ROUNDS, learning_rate=0.05, random_state=seed, verbose=-1, n_jobs=1)
        if val is None:
            return model.fit(x, y, sample_weight=weight)
        return model.fit(x, y, sample_weight=weight, eval_X=(val[0],), eval_y=(val[1],), eval_sample_weight=[val[2]],
                         callbacks=[lightgbm.early_stopping(50, verbose=False)])
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    model = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        max_iter=BOOSTING_ROUNDS, learning_rate=0.05, early_stopping=val is not None, random_state=seed)
    extra = {} if val is None else {"X_val": val[0], "y_val": val[1], "sample_weight_val": val[2]}
    with threadpool_limits(1, user_api="openmp"):  # one OpenMP thread, as LightGBM above
        return model.fit(x, y, sample_weight=weight, **extra)


def labelled(data: Dataset, split: str, task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(x, y, weight) of the split's rows labelled for the task (None: none are); y as the estimator wants it."""
    part = data.split(split)
    keep = task.spec.labeled(part[task.name])
    if not bool(keep.any()):
        return None
    y = part[task.name][keep].numpy()
    weight = part.get(weight_key(task.name), torch.ones(len(keep)))[keep].numpy()
    return part["x"][keep].numpy(), y if regressor(task) else y.astype(np.int64), weight


def as_outputs(task: Task, model: Any, x: np.ndarray) -> torch.Tensor:
    """The estimator's predictions as the network's raw outputs (logits, log-probabilities, standardized values),
    so the task's own metrics score both the same way."""
    if regressor(task):
        return torch.from_numpy((model.predict(x) - task.info.mean) / task.info.std).float()
    proba = np.full((len(x), max(task.info.outputs, 2)), PROBABILITY_FLOOR)
    proba[:, model.classes_] = np.clip(model.predict_proba(x), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if task.spec.squeeze:  # one logit per example (binary): the log-odds
        return torch.from_numpy(np.log(proba[:, 1]) - np.log(proba[:, 0])).float()
    return torch.from_numpy(np.log(proba)).float()


def task_baselines(data: Dataset, task: Task, seed: int) -> dict[str, Any]:
    """{model: {metric: value}} on test for one task, each model with its fitting time in seconds."""
    train = labelled(data, "train", task)
    if train is None:
        raise UserError(f"tasks.{task.name}: no labelled train rows to fit a baseline on")
    test = data.split("test")
    out: dict[str, Any] = {}
    for name, fit in ((booster_name(), lambda: fit_booster(regressor(task), seed, train, labelled(data, "val", task))),
                      ("linear", lambda: linear_model(regressor(task), seed).fit(*train[:2], sample_weight=train[2]))):
        start = time.perf_counter()
        model = fit()
        seconds = time.perf_counter() - start
        out[name] = task.metrics(as_outputs(task, model, test["x"].numpy()), test[task.name]) | {"fit_seconds": seconds}
    return out


def config_and_run(target: str | Path) -> tuple[Config, RunDir | None]:
    """A run directory's config (and the run), or an experiment's (built-in name or YAML file; no run)."""
    if RunDir(target).config.is_file():
        run = RunDir.open(target)
        return run.read_config(), run
    return load_config(str(target)), None


def baseline_config(cfg: Config) -> Config:
    """The config with the default table encoder: the same rows (splits do not depend on the encoding), encoded as
    the baselines expect (one-hot categories, standardized numbers), whatever `data.encoder` the run used: category
    codes read as numbers would handicap the linear model."""
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"encoder": type(cfg.data.encoder)(name="table")})})


def baselines(target: str | Path) -> dict[str, Any]:
    """Fit the baselines of every task; with a run directory, add its own test metrics and write baselines.json."""
    cfg, run = config_and_run(target)
    data = build_dataset(baseline_config(cfg))
    if data.info.is_image:
        raise UserError(f"data.source: baselines fit tables; {cfg.data.source} gives images")
    if len(data.index["test"]) == 0:
        raise UserError("data.split.test: the test split is empty; baselines are scored on test")
    seed = purpose_seed(cfg.seed, Purpose.BASELINE)
    tasks = {name: Task(name, cfg.tasks[name], data.info.tasks[name]) for name in cfg.tasks}
    report: dict[str, Any] = {"booster": booster_name(), "split": "test",
                              "rows": {split: len(data.index[split]) for split in ("train", "val", "test")},
                              "test_rows": data.index["test"].tolist(),  # the source's row numbers: checkably the run's
                              "skipped": {name: f"{task.kind} tasks have no baseline"
                                          for name, task in tasks.items() if baseline_estimator(task.spec) is None},
                              "tasks": {name: task_baselines(data, task, seed)
                                        for name, task in tasks.items() if baseline_estimator(task.spec) is not None}}
    if run is not None:
        report["run"] = run.read_summary().get("test", {})
        write_json(run.baselines, report)
    return report


def by_model(report: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {task: metrics}} (the run first), the shape the CLI's metrics table takes."""
    models = {"run": report.get("run", {})}
    for task, fitted in report["tasks"].items():
        for model, metrics in fitted.items():
            models.setdefault(model, {})[task] = metrics
    return models
