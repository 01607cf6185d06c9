"""What the audit measures per task kind: per-group metrics through Fairlearn's `MetricFrame`, summary numbers
through Fairlearn's own functions, and the same summaries computed vectorized over bootstrap resamples.

Every summary the audit bootstraps is a function of per-group rates Σ numerator / Σ denominator (selection rate,
accuracy, TPR, FPR, MAE), so one `np.bincount` per rate gives all resamples' per-group values at once.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from sklearn import metrics as skm
from torch import Tensor

from hydranet.kinds import Kind
from hydranet.tasks import Task

RESAMPLE_CELLS = 4_000_000  # resampled indices held at once (32 MB of int64): the chunk size of the bootstrap


@dataclass
class Scored:
    """One task's labelled examples of a split: truth, prediction and (binary) the score, all as numpy."""

    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray | None = None


def roc_auc(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC of the scores; NaN for a group whose examples share one label (it is undefined there)."""
    return float(skm.roc_auc_score(y_true, score)) if len(np.unique(y_true)) == 2 else math.nan


def base_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The share of positive labels (what the selection rate is compared with)."""
    return float(np.mean(y_true))


def spread(values: np.ndarray) -> np.ndarray:
    """max − min over the groups (last axis), ignoring groups absent from a resample."""
    return np.nanmax(values, -1) - np.nanmin(values, -1)


class BinaryAudit:
    """A yes/no decision (logit > 0): the demographic-parity and equalized-odds family."""

    metrics = ("count", "base_rate", "selection_rate", "accuracy", "tpr", "fpr", "roc_auc")
    plotted = ("selection_rate", "accuracy")

    @staticmethod
    def scored(task: Task, target: np.ndarray, output: Tensor) -> Scored:
        logits = output.numpy()
        return Scored(target.astype(int), (logits > 0).astype(int), logits)

    @staticmethod
    def frame_metrics(fl) -> dict[str, Callable]:
        return {"count": fl.count, "base_rate": base_rate, "selection_rate": fl.selection_rate,
                "accuracy": skm.accuracy_score, "tpr": fl.true_positive_rate, "fpr": fl.false_positive_rate,
                "roc_auc": roc_auc}

    @staticmethod
    def rates(s: Scored) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        y, p = s.y_true.astype(float), s.y_pred.astype(float)
        ones = np.ones_like(y)
        return {"selection_rate": (p, ones), "accuracy": ((p == y).astype(float), ones),
                "tpr": (p * y, y), "fpr": (p * (1 - y), 1 - y)}

    @staticmethod
    def summary(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        selection = rates["selection_rate"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.nanmin(selection, -1) / np.nanmax(selection, -1)
        return {"demographic_parity_difference": spread(selection), "demographic_parity_ratio": ratio,
                "equalized_odds_difference": np.maximum(spread(rates["tpr"]), spread(rates["fpr"])),
                "worst_group_accuracy": np.nanmin(rates["accuracy"], -1), "accuracy_difference": spread(rates["accuracy"])}

    @staticmethod
    def fairlearn_summary(fl, s: Scored, groups: np.ndarray, frame) -> dict[str, float]:
        both = dict(y_true=s.y_true, y_pred=s.y_pred, sensitive_features=groups)
        return {"demographic_parity_difference": fl.demographic_parity_difference(**both),
                "demographic_parity_ratio": fl.demographic_parity_ratio(**both),
                "equalized_odds_difference": fl.equalized_odds_difference(**both),
                "worst_group_accuracy": frame.group_min()["accuracy"], "accuracy_difference": frame.difference()["accuracy"]}


class ClassificationAudit:
    """One class of several (argmax): accuracy and macro F1 per group."""

    metrics = ("count", "accuracy", "f1_macro")
    plotted = ("accuracy",)

    @staticmethod
    def scored(task: Task, target: np.ndarray, output: Tensor) -> Scored:
        return Scored(target.astype(int), output.argmax(-1).numpy())

    @staticmethod
    def frame_metrics(fl) -> dict[str, Callable]:
        return {"count": fl.count, "accuracy": skm.accuracy_score,
                "f1_macro": partial(skm.f1_score, average="macro", zero_division=0)}

    @staticmethod
    def rates(s: Scored) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {"accuracy": ((s.y_pred == s.y_true).astype(float), np.ones(len(s.y_true)))}

    @staticmethod
    def summary(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"worst_group_accuracy": np.nanmin(rates["accuracy"], -1), "accuracy_difference": spread(rates["accuracy"])}

    @staticmethod
    def fairlearn_summary(fl, s: Scored, groups: np.ndarray, frame) -> dict[str, float]:
        return {"worst_group_accuracy": frame.group_min()["accuracy"], "accuracy_difference": frame.difference()["accuracy"]}


class RegressionAudit:
    """A value in the target's units: mean absolute error per group (the worst group has the largest)."""

    metrics = ("count", "mae")
    plotted = ("mae",)

    @staticmethod
    def scored(task: Task, target: np.ndarray, output: Tensor) -> Scored:
        """Both in the target's own units (the head predicts standardized values)."""
        return Scored(target.astype(float), task.decode(output).numpy().astype(float))

    @staticmethod
    def frame_metrics(fl) -> dict[str, Callable]:
        return {"count": fl.count, "mae": skm.mean_absolute_error}

    @staticmethod
    def rates(s: Scored) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {"mae": (np.abs(s.y_pred - s.y_true), np.ones(len(s.y_true)))}

    @staticmethod
    def summary(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"worst_group_mae": np.nanmax(rates["mae"], -1), "mae_difference": spread(rates["mae"])}

    @staticmethod
    def fairlearn_summary(fl, s: Scored, groups: np.ndarray, frame) -> dict[str, float]:
        return {"worst_group_mae": frame.group_max()["mae"], "mae_difference": frame.difference()["mae"]}


def audit_for(spec: Kind) -> type | None:
    """The audit of a task kind, from what its record says: one right-or-wrong label that is a single logit (a
    yes/no decision), one of several scored classes, or one value (squeezed, not a label); None: a kind the
    audit does not know (multilabel), which the report names."""
    if spec.single_label:
        return ClassificationAudit if spec.class_scores else BinaryAudit
    return RegressionAudit if spec.squeeze else None


def group_rates(rates: dict[str, tuple[np.ndarray, np.ndarray]], codes: np.ndarray, n_groups: int,
                resamples: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group rates (B, G) of each resample (rows of example indices, (B, n)): NaN for a group a resample
    lacks, 0 for a group present whose denominator is 0 (Fairlearn's convention, e.g. TPR without positives)."""
    rows = len(resamples)
    keys = (np.arange(rows)[:, None] * n_groups + codes[resamples]).ravel()
    cells = rows * n_groups
    present = np.bincount(keys, minlength=cells).reshape(rows, n_groups) > 0
    out = {}
    for name, (numerator, denominator) in rates.items():
        top = np.bincount(keys, numerator[resamples].ravel(), cells).reshape(rows, n_groups)
        bottom = np.bincount(keys, denominator[resamples].ravel(), cells).reshape(rows, n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(present, np.where(bottom > 0, top / bottom, 0.0), np.nan)
    return out


def bootstrap(audit, scored: Scored, codes: np.ndarray, n_groups: int, resamples: int,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each summary's values over `resamples` bootstrap resamples of the examples, drawn in chunks."""
    rates, n = audit.rates(scored), len(codes)
    chunk = max(1, RESAMPLE_CELLS // max(n, 1))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, resamples, chunk):
        drawn = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        with warnings.catch_warnings():  # a resample without any group of a rate: its NaN summary is what is meant
            warnings.simplefilter("ignore", RuntimeWarning)
            parts.append(audit.summary(group_rates(rates, codes, n_groups, drawn)))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}

