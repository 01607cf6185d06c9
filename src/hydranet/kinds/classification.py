"""The classification kind: one label among K classes, a head of K scores, softmax cross-entropy.

Targets are class indices (int64), -1 where the label is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

from hydranet.kinds.calibration import expected_calibration_error, softmax_confidence
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.masking import masked_mean


def sorted_values(present: np.ndarray) -> tuple[list, list[str]]:
    """Distinct values in natural order (numerically when they are all numbers) and their display names."""
    numbers = pd.to_numeric(pd.Series(present), errors="coerce")
    if not numbers.isna().any():
        distinct = sorted(set(numbers.tolist()))
        names = [str(int(v)) if float(v).is_integer() else str(v) for v in distinct]
        return distinct, names
    distinct = sorted({str(v).strip() for v in present})
    return distinct, distinct


def codes(values: np.ndarray, missing: np.ndarray, distinct: list) -> np.ndarray:
    """Index of each value in `distinct`, -1 where missing."""
    numeric = not isinstance(distinct[0], str)
    keys = pd.Series(values[~missing])
    keys = pd.to_numeric(keys) if numeric else keys.map(lambda v: str(v).strip())
    out = np.full(len(values), -1, dtype=np.int64)
    out[~missing] = pd.Categorical(keys, categories=distinct).codes
    return out


def categorical_kl(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """KL(softmax(clean) ‖ softmax(adv)) per example (B,), in float32 (TRADES' divergence)."""
    p_log = F.log_softmax(clean_logits.float(), -1)
    return (p_log.exp() * (p_log - F.log_softmax(adv_logits.float(), -1))).sum(-1)


class Classification:
    """Softmax over K classes. Its predictions are right or wrong (accuracy, robust accuracy, kNN votes,
    stratified splits), and the head scores every class, so a targeted attack can aim at any of them."""

    name = "classification"
    metric_names = ("loss", "accuracy", "f1_macro", "ece")
    main_metric = "accuracy"
    lower_is_better = frozenset({"loss", "ece"})
    squeeze = False  # (B, K) scores
    single_label = True
    class_scores = True
    divergence = staticmethod(categorical_kl)
    temperature_scaling = True
    baseline = "classifier"  # `hydranet baseline` fits a scikit-learn classifier

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        """Class names sorted naturally; the target is the index of each value's class."""
        distinct, names = sorted_values(values[~missing])
        return torch.from_numpy(codes(values, missing, distinct)), TaskInfo(kind=self.name, outputs=len(distinct), classes=names)

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Nothing to learn from the train split's targets."""

    def labeled(self, target: Tensor) -> Tensor:
        return target != -1

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        if weight is not None:
            terms = F.cross_entropy(pred, target, ignore_index=-1, reduction="none", label_smoothing=cfg.label_smoothing)
            return masked_mean(terms, target != -1, weight)
        # The fast path: ignore_index already zeroes missing rows, fewer ops per step than masking.
        total = F.cross_entropy(pred, target, ignore_index=-1, reduction="sum", label_smoothing=cfg.label_smoothing)
        return total / (target != -1).sum().clamp(min=1)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return F.cross_entropy(pred, target, ignore_index=-1, reduction="none")

    def correct(self, pred: Tensor, target: Tensor) -> Tensor:
        return pred.argmax(-1) == target

    def class_index(self, target: Tensor) -> Tensor:
        return target

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        return pred.argmax(-1)

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        keep = target != -1
        y, y_hat = target[keep], pred[keep].argmax(-1)
        return {
            "accuracy": float(skm.accuracy_score(y, y_hat)),
            "f1_macro": float(skm.f1_score(y, y_hat, average="macro", zero_division=0)),
            # Guo et al.'s ECE: confidence is the softmax probability of the predicted (top) class
            "ece": expected_calibration_error(softmax_confidence(pred[keep]), y_hat == y),
        }

    def column(self, decoded: np.ndarray, info: TaskInfo, cfg: Any) -> Any:
        """The class's name."""
        return np.asarray(info.classes, dtype=object)[decoded]

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The class (as `column` names it) and every class's softmax probability."""
        labels = self.column(self.decode(pred, info).cpu().numpy(), info, cfg)
        probabilities = torch.softmax(pred.float(), -1).tolist()
        return [{"label": label, "probabilities": dict(zip(info.classes, row))} for label, row in zip(labels, probabilities)]

    def column_name(self, task: str, info: TaskInfo) -> str:
        """The task's name: its values say what they are."""
        return task

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """The class is classes[argmax(scores)]; softmax(scores) gives the class probabilities."""
        return {"decode": "argmax", "classes": list(info.classes or []), "probabilities": "softmax"}

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """One-hot rows: their neighbour-weighted mean is the share of each class (Wu et al.'s vote)."""
        return F.one_hot(target, info.outputs).float()

    def from_average(self, average: Tensor) -> Tensor:
        """Class shares → log-probabilities, i.e. scores the loss and metrics accept."""
        return average.clamp_min(1e-6).log()


KIND = Classification()
