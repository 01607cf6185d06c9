"""The Python API: `hn.Experiment(...).fit()` and `hn.load(run_dir).predict(...)`.

An experiment comes from a built-in name, a YAML file, a dict or a `Config`; overrides use the same
dotted keys as the CLI's `--set`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from hydranet.calibrate import calibrate_run
from hydranet.config import Config, apply_override, experiment_dict, validate
from hydranet.config.loading import ALLOW_ENV
from hydranet.data import build_dataset
from hydranet.explain import Settings, default_task, explain_batch, explained_array
from hydranet.export import export_run
from hydranet.fairness import after_training, fit_thresholds
from hydranet.fairness.audit import audit_run
from hydranet.predict import evaluate_run, inputs_from_files, predict_paths, predictions, python_inputs
from hydranet.ssl import pretrain, probe
from hydranet.train import Run, fit, load_run
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.tune.report import TuneResult
from hydranet.tune.study import tune


class Experiment:
    """A validated config ready to train: `Experiment("quickstart", {"train.epochs": 3}).fit()`."""

    def __init__(self, experiment: str | Path | Mapping | Config | None = None, overrides: Mapping[str, Any] | None = None):
        if isinstance(experiment, Config):
            data = experiment.as_experiment()  # a table default keeps choosing its trunk from the data
        elif isinstance(experiment, Mapping):
            data = dict(experiment)
        else:
            data = experiment_dict(experiment)
        for key, value in (overrides or {}).items():
            apply_override(data, key.split("."), value)
        self.config = validate(data)

    def fit(self, run_dir: str | Path | None = None, progress: bool = False, callbacks: Sequence = ()) -> Run:
        """Train into a run directory and return the Run (model, summary, history); `callbacks` are extra
        trainer callbacks (any object with some of the hooks `on_fit_start`, `on_epoch_end`, …)."""
        run = fit(self.config, run_dir, progress=progress, callbacks=callbacks)
        after_training(run)
        return run

    def pretrain(self, run_dir: str | Path | None = None, progress: bool = False, callbacks: Sequence = ()) -> Run:
        """Self-supervised pretraining of the trunk (`ssl.method`); the run directory holds trunk.safetensors,
        which `model.init_from` accepts."""
        return pretrain(self.config, run_dir, progress=progress, callbacks=callbacks)

    def probe(self, run_dir: str | Path | None, mode: str = "linear", labels_fraction: float | None = None) -> dict:
        """Probe the frozen trunk of `run_dir` on this experiment's data and tasks (linear or knn); None
        probes a randomly initialized trunk (the no-pretraining baseline)."""
        return probe(run_dir, mode, labels_fraction, experiment=self.config)

    def tune(self, trials: int = 20, *, objectives: str | Sequence[str] | None = None, **options: Any) -> TuneResult:
        """Search the experiment's `search:` space on Optuna (the options of `hydranet tune`: workers, storage,
        study, sampler, pruner, timeout, dir); returns a TuneResult (study, dir, best config, Pareto trials)."""
        if objectives is not None and not isinstance(objectives, str):
            objectives = ",".join(objectives)
        return tune(self.config, trials, objectives=objectives, **options)


class Model:
    """A trained run's model with the preprocessing it was trained with."""

    def __init__(self, run: Run):
        self.run = run
        self.tasks = run.tasks
        self.config = run.config

    def predict(self, inputs: pd.DataFrame | np.ndarray | torch.Tensor | str | Path | Sequence[str | Path]) -> pd.DataFrame:
        """Decoded predictions, one column per task (a binary task's named `<task>_p(<positive>)`). Inputs: a
        DataFrame (table runs), raw images as an array/tensor (N, C, H, W) at the trained size, uint8 0..255 for
        pixel sources (float sources: float32), or file paths; anything else is a UserError saying what was expected."""
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)) and all(isinstance(p, (str, Path)) for p in inputs):
            return predict_paths(self.run, inputs).drop(columns="input")
        x = python_inputs(self.run.info, inputs)
        return predictions(self.run, self.predict_raw(x), x, inputs if isinstance(inputs, pd.DataFrame) else None,
                           "input")

    def predict_raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs (logits/standardized values) for already-preprocessed inputs."""
        return predict_batches(self.run.model, x, *eval_settings(self.config.train))

    def export(self, folder: str | Path | None = None) -> dict[str, Any]:
        """Export to ONNX (default RUN/export): model.onnx, preprocessing.json, outputs.json, parity.json and
        predict_onnx.py; returns the parity report (max |ONNX Runtime − PyTorch| per task) with `folder`."""
        return export_run(self.run, folder)

    def drift(self, data: pd.DataFrame | str | Path, folder: str | Path | None = None,
              reference_rows: int | None = None) -> dict[str, Any]:
        """`hydranet monitor` in Python: drift of a table (DataFrame or file) and of the predictions on it against
        the reference stored with the run; writes drift.json, drift.png and drift.html to `folder` when given."""
        from hydranet.monitor.report import monitor_table  # scipy only when monitoring

        return monitor_table(self.run, data, folder, reference_rows)

    def explain(self, inputs: Any, task: str | None = None, method: str | None = None, **options: Any) -> np.ndarray:
        """Attributions of one task's predictions (`hydranet explain` in Python), for the inputs `predict` takes:
        (N, C, H, W) for images (gradcam: (N, 1, H, W)), (N, columns) for tables, one column per source column of
        `run.info.features` order (one-hot groups summed). `options`: those of `hydranet explain` (target,
        baseline, steps, samples, layer, region, patch, segments, n_segments); the baseline "mean" builds the run's
        train data. A per-pixel task's attributions are those of one number per image, a region's summed logits
        or mean value (explain/pixels.py)."""
        if isinstance(inputs, (str, Path)) or (isinstance(inputs, (list, tuple)) and inputs
                                               and all(isinstance(p, (str, Path)) for p in inputs)):
            x, _ = inputs_from_files(self.run, [inputs] if isinstance(inputs, (str, Path)) else inputs)
        else:
            x = python_inputs(self.run.info, inputs)
        explained = explain_batch(self.run, x, default_task(self.run, task), Settings(method=method, **options),
                                  lambda: build_dataset(self.config).split("train")["x"].mean(0, keepdim=True))
        return explained_array(self.run, explained)

    def evaluate(self, split: str = "test") -> dict[str, dict[str, float]]:
        return evaluate_run(self.run, split)

    def audit(self, sensitive: Sequence[str] | None = None, split: str = "test",
              folder: str | Path | None = None) -> dict[str, Any]:
        """`hydranet audit` in Python: every task's metrics per group of the sensitive columns (default: the run's
        `fairness.sensitive`) on `split`, with the run's thresholds applied; writes audit.json, audit.md and
        audit.png to `folder` when given. Returns audit.json's content."""
        return audit_run(self.run, list(sensitive) if sensitive is not None else None, split, folder)

    def threshold(self, constraint: str | None = None, tasks: Sequence[str] | None = None) -> dict[str, Any]:
        """`hydranet threshold` in Python: fit fairness thresholds per group of each binary task on val, write
        thresholds.json and apply it from now on (predict, evaluate, audit); returns the file's content."""
        return fit_thresholds(self.run, constraint, list(tasks) if tasks is not None else None)

    def calibrate(self) -> dict[str, Any]:
        """`hydranet calibrate` in Python: fit a temperature per head on val, write calibration.json and apply it to
        this model from now on; returns the file's content (per task T, NLL and ECE before/after on val and test)."""
        return calibrate_run(self.run)


def load(run_dir: str | Path, allow_plugins: bool = False) -> Model:
    """Load a run directory for prediction and evaluation. Plugin modules its config names are imported only
    with `allow_plugins=True` (or when already imported): loading a shared run never runs code that came with it."""
    with plugins_allowed(allow_plugins):
        return Model(load_run(run_dir))


@contextmanager
def plugins_allowed(allow: bool):
    """Within the block, a stored config may import any plugin it names (when `allow`)."""
    old = os.environ.get(ALLOW_ENV)
    if allow:
        os.environ[ALLOW_ENV] = "*"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ALLOW_ENV, None)
        else:
            os.environ[ALLOW_ENV] = old
