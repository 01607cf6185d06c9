"""Prediction targets: one `Task` per configured task, its head, masked loss, metrics and decoding.

A Task wraps its config, what the data taught it (`TaskInfo`) and its kind's record (`hydranet.kinds`),
which owns everything the kind means; the Task passes it the task's own info and settings.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from hydranet.config import TaskConfig
from hydranet.distributed.context import active
from hydranet.distributed.reduce import global_mean
from hydranet.errors import UserError
from hydranet.kinds import LOWER_IS_BETTER, Kind, TaskInfo, get_kind, higher_is_better, is_dense
from hydranet.kinds.masking import label_mass

__all__ = ["LOWER_IS_BETTER", "Task", "TaskInfo", "higher_is_better", "refuse_dense"]


class _SqueezeLast(nn.Module):
    """(B, 1) → (B,): binary and regression heads predict one value per example."""

    def forward(self, x: Tensor) -> Tensor:
        return x.squeeze(-1)


class Task:
    """One prediction target: builds its head and turns predictions into losses, metrics and outputs.

    `kind` is the kind's name; `spec` is its record (`hydranet.kinds.Kind`), which callers ask what the
    kind means (`task.spec.single_label`, `task.spec.main_metric`, `task.spec.correct(pred, target)` …).
    """

    def __init__(self, name: str, cfg: TaskConfig, info: TaskInfo):
        if info.kind != cfg.kind:
            raise ValueError(f"task {name!r}: config kind {cfg.kind!r} differs from data kind {info.kind!r}")
        self.name, self.cfg, self.info = name, cfg, info
        self.spec: Kind = get_kind(info.kind)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, kind={self.kind!r}, outputs={self.info.outputs})"

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def dense(self) -> bool:
        """Whether the task labels every pixel (a dense kind): its column holds one map per example."""
        return is_dense(self.spec)

    def head(self, in_dim: int, hidden: Sequence[int] = (), dropout: float = 0.0, feature_map: bool = False) -> nn.Module:
        """Features (B, in_dim) → (B, outputs), or (B,) for kinds that squeeze (binary, regression).

        On a trunk whose features are a map (B, in_dim, H, W) (`feature_map`, the unet trunk) a dense kind gives its
        own conv head at the map's resolution, and every other kind pools the map to (B, in_dim) first.
        """
        if self.dense:
            if not feature_map:
                raise UserError(f"tasks.{self.name}: a {self.kind} task predicts every pixel and needs a trunk whose "
                                f"features are a map (model.trunk.name: unet)")
            return self.spec.head(in_dim, self.info)
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if feature_map else []
        for width in [*hidden, None]:
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            out = self.info.outputs if width is None else width
            layers.append(nn.Linear(in_dim, out))
            if width is not None:
                layers.append(nn.ReLU())
                in_dim = width
        if self.spec.squeeze:
            layers.append(_SqueezeLast())
        return nn.Sequential(*layers)

    def loss(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean loss over labeled examples (cells for multilabel); 0, still in the graph, if none. With example
        weights (B,) (`data.weight_column`, a fairness mitigation), the weighted mean Σ w·ℓ / Σ w over them.

        Under torchrun the mean runs over the labelled examples of every rank (`distributed.reduce.global_mean`:
        one all-reduce of this batch's count), here for every kind at once, so that the ranks' average gradient is
        one process's on the global batch.

        No `.item()` and no branch on values: this runs every step and must not sync with the device.
        """
        mean = self.spec.loss(pred.float(), target, self.info, self.cfg, weight)
        if not active():  # one process: its mean is the global one, without counting the labels again
            return mean
        return global_mean(mean, label_mass(self.spec.labeled(target), weight))

    def example_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss per example (B,), 0 where unlabeled (multilabel: mean over labeled cells).

        Attacks need it to keep, for each example, the perturbation with the highest loss; its mean over
        labeled examples is `loss` without label smoothing.
        """
        return self.spec.example_losses(pred.float(), target, self.info, self.cfg)

    def train_stats(self, pred: Tensor, target: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Running-accuracy (sum, count) as detached tensors, summed by the trainer without syncing;
        {} for kinds whose predictions are not simply right or wrong."""
        if not self.spec.single_label:
            return {}
        pred, target = pred.detach(), target.detach()
        labeled = self.spec.labeled(target)
        correct = self.spec.correct(pred, target)
        return {"accuracy": ((correct & labeled).sum().float(), labeled.sum().float())}

    @torch.no_grad()
    def metrics(self, pred: Tensor, target: Tensor) -> dict[str, float]:
        """Loss and kind-specific metrics over a whole split (labeled examples only; {} if none).

        A NaN or ±inf prediction for a labeled example (a diverged model) makes every metric NaN instead of an
        error: scikit-learn refuses such input, and no score of a model that outputs non-numbers is meaningful.
        Checked here, once for every kind, so a kind's `metrics` only ever sees finite predictions.
        """
        pred, target = pred.detach().float().cpu(), target.detach().cpu()
        labeled = self.spec.labeled(target)
        if not labeled.any():
            return {}
        out = {"loss": float(self.spec.loss(pred, target, self.info, self.cfg))}  # this split's own mean, on any rank
        if _non_finite_where(pred, labeled):
            return out | {name: math.nan for name in self.spec.metric_names if name != "loss"}
        out.update(self.spec.metrics(pred.numpy(), target.numpy(), self.info))
        return out

    def decode(self, pred: Tensor) -> Tensor:
        """Class index (classification), probabilities (binary, multilabel) or value in original units."""
        return self.spec.decode(pred, self.info)

    def exported(self, pred: Tensor) -> Tensor:
        """What an exported graph outputs for this task: the raw head output, or the decoded values for a kind
        that can undo its decoding (`undecode`: depth in the data's units, unit normals), which a user of the
        graph alone wants rather than standardized depths or unnormalized vectors."""
        return self.spec.decode(pred, self.info) if hasattr(self.spec, "undecode") else pred

    def from_exported(self, values: Tensor) -> Tensor:
        """An exported graph's output → the raw head output `decode`, `answers` and `column` take."""
        return self.spec.undecode(values, self.info) if hasattr(self.spec, "undecode") else values

    def decoding(self) -> dict[str, Any]:
        """How a prediction table's column comes from the raw head output, as JSON (exported models)."""
        return self.spec.decoding(self.info, self.cfg)

    def column(self, pred: Tensor) -> Any:
        """Predictions → one column of a prediction table (class names, probabilities, joined labels, values)."""
        decoded: np.ndarray = self.decode(pred).cpu().numpy()
        return self.spec.column(decoded, self.info, self.cfg)

    def answers(self, pred: Tensor) -> list[dict[str, Any]]:
        """Predictions → one JSON-able answer per example (the server's /predict): the column's value and the
        probabilities behind it."""
        return self.spec.answer(pred, self.info, self.cfg)

    @property
    def column_name(self) -> str:
        """The header of this task's column in prediction tables (a binary task's names its positive class)."""
        return self.spec.column_name(self.name, self.info)

    def average_target(self, target: Tensor) -> Tensor:
        """Labeled targets as values a kNN probe averages over neighbours."""
        return self.spec.average_target(target, self.info)

    @staticmethod
    def higher_is_better(metric: str) -> bool:
        return higher_is_better(metric)


def refuse_dense(tasks: dict[str, Any], command: str) -> None:
    """A command that reads one prediction per example (attack, audit) refuses a run with per-pixel tasks
    in one line, rather than failing somewhere inside on a map it cannot hold. `tasks`:
    anything with a `kind` name per task (the run's Tasks, or its config's tasks when the model is not loaded)."""
    dense = [f"{name} ({task.kind})" for name, task in tasks.items() if is_dense(get_kind(task.kind))]
    if dense:
        raise UserError(f"tasks: {command} does not handle per-pixel tasks yet, and this run has {', '.join(dense)}; "
                        f"use hydranet evaluate and hydranet predict")


def _non_finite_where(pred: Tensor, labeled: Tensor) -> bool:
    """Whether any prediction of a labeled target element is NaN or ±inf; a row of class scores (B, K) belongs to
    its one target (B,)."""
    bad = ~torch.isfinite(pred)
    while bad.ndim > labeled.ndim:
        bad = bad.any(-1)
    return bool((bad & labeled).any())
