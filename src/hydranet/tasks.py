"""Prediction targets: one `Task` per configured task, its head, masked loss, metrics and decoding.

A task's kind is a value (classification | binary | multilabel | regression) looked up in small per-kind
tables, so adding a kind means adding a row of functions, not a subclass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor, nn

from hydranet.config import TaskConfig

LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse", "mse"})


@dataclass
class TaskInfo:
    """What the data builder learned about a task on the train split (JSON-able, saved with the run).

    `outputs`: classes (classification), labels (multilabel) or 1 (binary, regression). `classes`: class or
    label names; for binary [negative, positive]. `mean`/`std` standardize regression targets.
    """

    kind: str
    outputs: int
    classes: list[str] | None = None
    mean: float = 0.0
    std: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskInfo":
        return cls(**data)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of a metric is better; accepts paths like `val/digit/loss`."""
    return metric.rsplit("/", 1)[-1] not in LOWER_IS_BETTER


class _SqueezeLast(nn.Module):
    """(B, 1) → (B,): binary and regression heads predict one value per example."""

    def forward(self, x: Tensor) -> Tensor:
        return x.squeeze(-1)


# --- per-kind losses: (task, pred, target) → (terms, labeled), both shaped like the target ----------
# Terms must be finite everywhere (missing targets are replaced before the loss), because a NaN in a
# masked-out term still poisons the gradient through torch.where.


def _bce_terms(task: "Task", pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    # binary: pred/target (B,); multilabel: (B, L); NaN = missing.
    labeled = ~torch.isnan(target)
    filled = torch.where(labeled, target, torch.zeros_like(target))
    return F.binary_cross_entropy_with_logits(pred, filled, reduction="none"), labeled


def _regression_terms(task: "Task", pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    # The head predicts the standardized target, so one learning rate suits any target scale.
    labeled = ~torch.isnan(target)
    z = torch.where(labeled, (target - task.info.mean) / task.info.std, torch.zeros_like(target))
    if task.cfg.loss == "huber":
        return F.huber_loss(pred, z, reduction="none", delta=1.0), labeled
    return F.mse_loss(pred, z, reduction="none"), labeled


_TERMS: dict[str, Callable[["Task", Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    "binary": _bce_terms,
    "multilabel": _bce_terms,
    "regression": _regression_terms,
}


# --- per-kind decoding -------------------------------------------------------------------------------

_DECODE: dict[str, Callable[["Task", Tensor], Tensor]] = {
    "classification": lambda task, pred: pred.argmax(-1),
    "binary": lambda task, pred: torch.sigmoid(pred),
    "multilabel": lambda task, pred: torch.sigmoid(pred),
    "regression": lambda task, pred: pred * task.info.std + task.info.mean,
}


# --- per-kind split metrics (numpy/sklearn, once per epoch) --------------------------------------------


def _classification_metrics(task: "Task", pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    keep = target != -1
    y, y_hat = target[keep], pred[keep].argmax(-1)
    return {
        "accuracy": float(skm.accuracy_score(y, y_hat)),
        "f1_macro": float(skm.f1_score(y, y_hat, average="macro", zero_division=0)),
    }


def _binary_metrics(task: "Task", pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    keep = ~np.isnan(target)
    y, logit = target[keep].astype(int), pred[keep]
    y_hat = (logit > 0).astype(int)
    # ROC AUC is undefined when the split holds one class only.
    auc = float(skm.roc_auc_score(y, logit)) if len(np.unique(y)) == 2 else math.nan
    return {
        "accuracy": float(skm.accuracy_score(y, y_hat)),
        "roc_auc": auc,
        "f1": float(skm.f1_score(y, y_hat, zero_division=0)),
    }


def _multilabel_metrics(task: "Task", pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    # Cells may be missing one by one, so F1 is computed over labeled cells: micro F1 pools every
    # labeled cell, macro F1 averages each label's F1 over the rows where that label is known.
    keep = ~np.isnan(target)
    y_hat = (pred > 0).astype(int)
    y = np.nan_to_num(target).astype(int)
    micro = skm.f1_score(y[keep], y_hat[keep], zero_division=0)
    per_label = [
        skm.f1_score(y[rows, j], y_hat[rows, j], zero_division=0)
        for j, rows in enumerate(keep.T)
        if rows.any()
    ]
    return {"f1_micro": float(micro), "f1_macro": float(np.mean(per_label))}


def _regression_metrics(task: "Task", pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    keep = ~np.isnan(target)
    y = target[keep]
    y_hat = pred[keep] * task.info.std + task.info.mean  # original units
    r2 = float(skm.r2_score(y, y_hat)) if len(y) >= 2 else math.nan
    return {
        "mae": float(skm.mean_absolute_error(y, y_hat)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y, y_hat))),
        "r2": r2,
    }


_METRICS: dict[str, Callable[["Task", np.ndarray, np.ndarray], dict[str, float]]] = {
    "classification": _classification_metrics,
    "binary": _binary_metrics,
    "multilabel": _multilabel_metrics,
    "regression": _regression_metrics,
}


class Task:
    """One prediction target: builds its head and turns predictions into losses, metrics and outputs."""

    def __init__(self, name: str, cfg: TaskConfig, info: TaskInfo):
        if info.kind != cfg.kind:
            raise ValueError(f"task {name!r}: config kind {cfg.kind!r} differs from data kind {info.kind!r}")
        self.name, self.cfg, self.info = name, cfg, info

    def __repr__(self) -> str:
        return f"Task({self.name!r}, kind={self.kind!r}, outputs={self.info.outputs})"

    @property
    def kind(self) -> str:
        return self.info.kind

    def head(self, in_dim: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> nn.Module:
        """Features (B, in_dim) → (B, outputs) for classification/multilabel, (B,) for binary/regression."""
        layers: list[nn.Module] = []
        for width in [*hidden, None]:
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            out = self.info.outputs if width is None else width
            layers.append(nn.Linear(in_dim, out))
            if width is not None:
                layers.append(nn.ReLU())
                in_dim = width
        if self.kind in ("binary", "regression"):
            layers.append(_SqueezeLast())
        return nn.Sequential(*layers)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean loss over labeled examples (cells for multilabel); 0, still in the graph, if none.

        No `.item()` and no branch on values: this runs every step and must not sync with the device.
        """
        pred = pred.float()
        if self.kind == "classification":  # fast path: ignore_index already zeroes missing rows (fewer ops per step)
            total = F.cross_entropy(pred, target, ignore_index=-1, reduction="sum", label_smoothing=self.cfg.label_smoothing)
            return total / (target != -1).sum().clamp(min=1)
        terms, labeled = self._masked_terms(pred, target)
        return terms.sum() / labeled.sum().clamp(min=1)

    def _masked_terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-element loss terms of binary/multilabel/regression with unlabeled ones set to 0, and the mask."""
        terms, labeled = _TERMS[self.kind](self, pred, target)
        return torch.where(labeled, terms, torch.zeros_like(terms)), labeled

    def example_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss per example (B,), 0 where unlabeled (multilabel: mean over labeled cells).

        Attacks need it to keep, for each example, the perturbation with the highest loss; its mean over
        labeled examples is `loss` without label smoothing.
        """
        pred = pred.float()
        if self.kind == "classification":
            return F.cross_entropy(pred, target, ignore_index=-1, reduction="none")
        terms, labeled = self._masked_terms(pred, target)
        if terms.dim() == 2:  # multilabel (B, L)
            return terms.sum(-1) / labeled.sum(-1).clamp(min=1)
        return terms

    def train_stats(self, pred: Tensor, target: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Running-accuracy (sum, count) as detached tensors, summed by the trainer without syncing."""
        pred, target = pred.detach(), target.detach()
        if self.kind == "classification":
            labeled = target != -1
            correct = pred.argmax(-1) == target
        elif self.kind == "binary":
            labeled = ~torch.isnan(target)
            correct = (pred > 0) == (target > 0.5)  # threshold at logit 0, i.e. probability 1/2
        else:
            return {}
        return {"accuracy": ((correct & labeled).sum().float(), labeled.sum().float())}

    @torch.no_grad()
    def metrics(self, pred: Tensor, target: Tensor) -> dict[str, float]:
        """Loss and kind-specific metrics over a whole split (labeled examples only; {} if none)."""
        pred, target = pred.detach().float().cpu(), target.detach().cpu()
        labeled = target != -1 if self.kind == "classification" else ~torch.isnan(target)
        if not labeled.any():
            return {}
        out = {"loss": float(self.loss(pred, target))}
        out.update(_METRICS[self.kind](self, pred.numpy(), target.numpy()))
        return out

    def decode(self, pred: Tensor) -> Tensor:
        """Class index (classification), probabilities (binary, multilabel) or value in original units."""
        return _DECODE[self.kind](self, pred)

    @staticmethod
    def higher_is_better(metric: str) -> bool:
        return higher_is_better(metric)
