"""The multilabel kind: any subset of L labels, a head of L logits (B, L), one Bernoulli per label.

Targets are (N, L) floats 1.0 / 0.0, NaN where a label is missing (a whole row, or cell by cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm
from torch import Tensor

from hydranet.kinds.binary import bce_terms, bernoulli_kl
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.masking import masked_mean, masked_terms


class Multilabel:
    """Independent Bernoullis, one per label: the loss is the mean over labeled cells. A prediction is a set,
    not one class, so it is never simply right or wrong (no accuracy, no kNN vote, no stratification)."""

    name = "multilabel"
    metric_names = ("loss", "f1_micro", "f1_macro")
    main_metric = "f1_micro"
    lower_is_better = frozenset({"loss"})
    squeeze = False  # (B, L) logits
    single_label = False
    class_scores = False
    temperature_scaling = True  # one T for all of a head's sigmoid logits

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        """A cell is a list of labels or a string of them joined by `cfg.separator`; the vocabulary is sorted."""
        def labels_of(cell) -> list[str]:
            parts = cell if isinstance(cell, (list, tuple, np.ndarray)) else str(cell).split(cfg.separator)
            return [str(p).strip() for p in parts if str(p).strip()]

        cells = [labels_of(v) if not m else [] for v, m in zip(values, missing)]
        vocab = sorted({label for cell in cells for label in cell})
        position = {label: i for i, label in enumerate(vocab)}
        target = np.zeros((len(values), len(vocab)), dtype=np.float32)
        rows = [i for i, cell in enumerate(cells) for _ in cell]
        cols = [position[label] for cell in cells for label in cell]
        target[rows, cols] = 1.0
        target[missing] = np.nan
        return torch.from_numpy(target), TaskInfo(kind=self.name, outputs=len(vocab), classes=vocab)

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Nothing to learn from the train split's targets."""

    def labeled(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return masked_mean(*bce_terms(pred, target), weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        """Mean over each row's labeled cells, 0 for a row without any."""
        terms, labeled = bce_terms(pred, target)
        return masked_terms(terms, labeled).sum(-1) / labeled.sum(-1).clamp(min=1)

    def divergence(self, clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
        """Per-example KL (B,): the labels are independent, so their Bernoulli KLs add."""
        return bernoulli_kl(clean_logits, adv_logits).sum(-1)

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """Probability of each label."""
        return torch.sigmoid(pred)

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
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

    def column(self, decoded: np.ndarray, info: TaskInfo, cfg: Any) -> Any:
        """The labels of probability ≥ 0.5, joined by the task's separator."""
        return [cfg.separator.join(labels) for labels in _chosen(decoded, info)]

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The labels `column` joins, as a list, and every label's probability."""
        decoded = self.decode(pred, info).cpu().numpy()
        return [{"labels": labels, "probabilities": dict(zip(info.classes, row))}
                for labels, row in zip(_chosen(decoded, info), decoded.tolist())]

    def column_name(self, task: str, info: TaskInfo) -> str:
        """The task's name: its values say what they are."""
        return task

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """sigmoid(logit) per label; the labels of probability ≥ threshold, joined by the separator."""
        return {"decode": "sigmoid_threshold", "labels": list(info.classes or []), "threshold": 0.5,
                "separator": cfg.separator}

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """0/1 per label: the neighbour-weighted mean is each label's share."""
        return target.float()

    def from_average(self, average: Tensor) -> Tensor:
        """Shares → logits."""
        return torch.logit(average.clamp(1e-6, 1 - 1e-6))


def _chosen(decoded: np.ndarray, info: TaskInfo) -> list[list[str]]:
    """The labels of probability ≥ 0.5, per example."""
    return [[c for c, on in zip(info.classes, row) if on] for row in decoded >= 0.5]


KIND = Multilabel()
