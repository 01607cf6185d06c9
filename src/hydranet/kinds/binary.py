"""The binary kind: one yes/no label, a head of one logit (B,), binary cross-entropy.

Targets are floats 1.0 (positive) / 0.0 (negative), NaN where the label is missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

from hydranet.errors import UserError
from hydranet.kinds.calibration import expected_calibration_error, sigmoid_confidence
from hydranet.kinds.classification import codes, sorted_values
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.masking import masked_mean, masked_terms


def bce_terms(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise BCE with logits and the labeled mask; NaN (missing) targets are filled with 0 first."""
    labeled = ~torch.isnan(target)
    filled = torch.where(labeled, target, torch.zeros_like(target))
    return F.binary_cross_entropy_with_logits(pred, filled, reduction="none"), labeled


def bernoulli_kl(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """KL(Bern(σ(a)) ‖ Bern(σ(b))) elementwise, from logits via log σ, so it stays finite when σ saturates."""
    a, b = clean_logits.float(), adv_logits.float()
    p = torch.sigmoid(a)
    return p * (F.logsigmoid(a) - F.logsigmoid(b)) + (1 - p) * (F.logsigmoid(-a) - F.logsigmoid(-b))


def check_positive(positive: str, names: list[str], where: str) -> None:
    """The positive value must occur, and no other value may differ from it only by case or a trailing
    period (UCI Adult's test file writes ">50K."), which "value == positive" would silently count negative."""
    if positive not in names:
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise UserError(f"{where}: positive value {positive!r} not in the column (values: {shown})")
    key = positive.rstrip(".").casefold()
    twins = [n for n in names if n != positive and n.rstrip(".").casefold() == key]
    if twins:
        raise UserError(f"{where}: values {positive!r} and {twins[0]!r} differ only by case or a trailing period; "
                        f"make them one value in the data")


class Binary:
    """A Bernoulli on one logit, thresholded at 0 (probability 1/2). Its predictions are right or wrong
    (accuracy, robust accuracy, kNN votes, stratified splits) over the two classes [negative, positive]."""

    name = "binary"
    metric_names = ("loss", "accuracy", "roc_auc", "f1", "ece")
    main_metric = "accuracy"
    lower_is_better = frozenset({"loss", "ece"})
    squeeze = True  # (B,) logits
    single_label = True
    class_scores = False  # one logit, not a score per class: no targeted attack
    divergence = staticmethod(bernoulli_kl)
    temperature_scaling = True
    baseline = "classifier"  # `hydranet baseline` fits a scikit-learn classifier

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        """At most two values, the larger one positive; or, with `cfg.positive`, "value == positive"."""
        distinct, names = sorted_values(values[~missing])
        if cfg.positive is not None:
            check_positive(cfg.positive, names, where)
        elif len(distinct) > 2:
            shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
            raise UserError(f"{where}: a binary task needs at most two distinct values, found {len(names)} ({shown}); "
                            f"set `positive` to make the task 'value == positive'")
        # More than two values with `positive` set: the task is "value == positive" (e.g. marital status
        # Never-married against the rest, the derived census task of the MMoE paper).
        positive = names.index(cfg.positive) if cfg.positive is not None else len(names) - 1  # default: '>50K' of {'<=50K', '>50K'}
        target = torch.from_numpy((codes(values, missing, distinct) == positive).astype(np.float32))
        target[torch.from_numpy(missing)] = float("nan")
        negative = [n for i, n in enumerate(names) if i != positive]
        negative_name = negative[0] if len(negative) == 1 else f"not {names[positive]}"
        return target, TaskInfo(kind=self.name, outputs=1, classes=[negative_name, names[positive]])

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Nothing to learn from the train split's targets."""

    def labeled(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return masked_mean(*bce_terms(pred, target), weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return masked_terms(*bce_terms(pred, target))

    def correct(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred > 0) == (target > 0.5)  # threshold at logit 0, i.e. probability 1/2

    def class_index(self, target: Tensor) -> Tensor:
        """0 (negative) / 1 (positive), -1 where missing: the class-index form the kNN vote and strata use."""
        return torch.where(torch.isnan(target), -1, target).long()

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """Probability of the positive class."""
        return torch.sigmoid(pred)

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        keep = ~np.isnan(target)
        y, logit = target[keep].astype(int), pred[keep]
        y_hat = (logit > 0).astype(int)
        # ROC AUC is undefined when the split holds one class only.
        auc = float(skm.roc_auc_score(y, logit)) if len(np.unique(y)) == 2 else math.nan
        return {
            "accuracy": float(skm.accuracy_score(y, y_hat)),
            "roc_auc": auc,
            "f1": float(skm.f1_score(y, y_hat, zero_division=0)),
            # ECE over the probability of the predicted class, σ(|logit|) ≥ 1/2: the two-class case of Guo et al.'s
            # top-class confidence (not the positive-class probability, which would mix the two classes' errors)
            "ece": expected_calibration_error(sigmoid_confidence(logit), y_hat == y),
        }

    def column(self, decoded: np.ndarray, info: TaskInfo, cfg: Any) -> Any:
        """The probability of the positive class."""
        return decoded

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The probability of the positive class (`column`) and the class decided as `correct` decides (logit > 0)."""
        probabilities = self.column(self.decode(pred, info).cpu().numpy(), info, cfg).tolist()
        return [{"label": info.classes[int(positive)], "probability": p}
                for positive, p in zip((pred > 0).tolist(), probabilities)]

    def column_name(self, task: str, info: TaskInfo) -> str:
        """`<task>_p(<positive class>)`: a probability must say which class it is for (`income_p(>50K)`)."""
        return f"{task}_p({info.classes[1]})"

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """sigmoid(logit) is the probability of classes[1], the positive class."""
        return {"decode": "sigmoid", "classes": list(info.classes or [])}

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """0/1: their neighbour-weighted mean is the share of positives."""
        return target.float()

    def from_average(self, average: Tensor) -> Tensor:
        """Share of positives → logit."""
        return torch.logit(average.clamp(1e-6, 1 - 1e-6))


KIND = Binary()
