"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): `calibrate_run` fits
one temperature T > 0 per head on the val split and writes calibration.json, which `load_run` then applies.

A head's logits z become z / T: the argmax (and so accuracy) is unchanged, only the confidence moves. As in Guo et
al.'s reference code (gpleiss/temperature_scaling), the val logits are computed once and T minimizes their NLL by
LBFGS; here over log T, so T stays positive, with a strong-Wolfe line search, so it converges without tuning a rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.kinds.calibration import ECE_BINS
from hydranet.rundir import RunDir
from hydranet.tasks import Task
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.run import Run

# T is kept within [1/100, 100]: a val split the model separates perfectly drives the NLL's optimum towards T → 0
# (infinite confidence), which no held-out example supports.
LOG_T_RANGE = (-math.log(100.0), math.log(100.0))


def calibrate_run(run: Run) -> dict[str, Any]:
    """Fit T for each head whose kind has logits to scale (classification, binary, multilabel) on the run's val
    split, write calibration.json (replacing an earlier one) and set the temperatures on `run.model`.

    Returns calibration.json's content: per task T and, on val and test, the NLL and (where the kind reports it)
    the ECE before and after. Regression heads are left as they are; a task without val labels is left out."""
    tasks = {name: task for name, task in run.tasks.items() if task.spec.temperature_scaling}
    if not tasks:
        raise UserError(f"{run.dir}: no task to calibrate (temperature scaling needs a classification, binary or "
                        f"multilabel task; this run has {', '.join(f'{t.name} ({t.kind})' for t in run.tasks.values())})")
    data = build_dataset(run.config)
    if len(data.index["val"]) == 0:
        raise UserError("data.split.val: this run has no val split, and calibration fits its temperatures on val "
                        "(train with data.split.val > 0, e.g. --set data.split.val=0.1)")
    run.model.temperatures = {}  # fit on the uncalibrated outputs, so recalibrating reproduces the same T
    splits = {name: data.split(name) for name in ("val", "test") if len(data.index[name])}
    outputs = {name: predict_batches(run.model, split["x"], *eval_settings(run.config.train)) for name, split in splits.items()}
    report: dict[str, Any] = {}
    for name, task in tasks.items():
        val_logits, val_target = labeled_part(task, outputs["val"][name], splits["val"][name])
        if len(val_target) == 0:
            continue
        temperature = fit_temperature(task, val_logits, val_target)
        report[name] = {"temperature": temperature} | {
            split: before_after(task, *labeled_part(task, outputs[split][name], splits[split][name]), temperature)
            for split in splits}
    calibration = {"method": "temperature_scaling", "fitted_on": "val", "ece_bins": ECE_BINS, "tasks": report}
    RunDir(run.dir).write_calibration(calibration)
    run.model.temperatures = {name: entry["temperature"] for name, entry in report.items()}
    return calibration


def labeled_part(task: Task, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The examples with a label (multilabel: at least one labeled cell), as a normal tensor on the logits' device
    (predict_batches returns inference tensors, which autograd refuses)."""
    target = target.to(logits.device)
    rows = task.spec.labeled(target).reshape(len(target), -1).any(1)
    return logits[rows].float().clone(), target[rows]


def nll(task: Task, logits: Tensor, target: Tensor) -> Tensor:
    """Mean negative log-likelihood over labeled examples, without label smoothing (the quantity T minimizes)."""
    return task.example_losses(logits, target).mean()


def fit_temperature(task: Task, logits: Tensor, target: Tensor) -> float:
    """The T > 0 that minimizes the NLL of logits / T on labeled (val) examples, by LBFGS on log T from T = 1.

    The logits are fixed: each LBFGS step only rescales them, so the model is never re-run."""
    if not torch.isfinite(logits).all():
        raise UserError(f"task {task.name!r}: the model's val outputs hold NaN or inf (a diverged run); "
                        f"there is nothing to calibrate")
    log_t = torch.zeros((), device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nll(task, logits / log_t.clamp(*LOG_T_RANGE).exp(), target)
        loss.backward()
        return loss

    with torch.enable_grad():  # LBFGS needs gradients, even when called under torch.no_grad()
        optimizer.step(closure)
    return float(log_t.detach().clamp(*LOG_T_RANGE).exp())


def before_after(task: Task, logits: Tensor, target: Tensor, temperature: float) -> dict[str, float]:
    """NLL and ECE (where the kind reports it) of labeled examples' raw logits and of logits / T; {} without any."""
    if len(target) == 0:
        return {}
    result = {"nll_before": float(nll(task, logits, target)), "nll_after": float(nll(task, logits / temperature, target))}
    if "ece" in task.spec.metric_names:
        result |= {"ece_before": task.metrics(logits, target)["ece"],
                   "ece_after": task.metrics(logits / temperature, target)["ece"]}
    return result
