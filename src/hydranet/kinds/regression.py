"""The regression kind: one number, a head of one value (B,) predicting the standardized target.

Targets are floats in their original units, NaN where missing; the train split's mean and std live in TaskInfo.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

from hydranet.errors import UserError
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.masking import masked_mean, masked_terms


def _terms(pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> tuple[Tensor, Tensor]:
    # The head predicts the standardized target, so one learning rate suits any target scale.
    labeled = ~torch.isnan(target)
    z = torch.where(labeled, (target - info.mean) / info.std, torch.zeros_like(target))
    if cfg.loss == "huber":
        return F.huber_loss(pred, z, reduction="none", delta=1.0), labeled
    return F.mse_loss(pred, z, reduction="none"), labeled


class Regression:
    """A point prediction with MSE or Huber loss. It is neither right nor wrong (no accuracy) and has no
    predictive distribution, so TRADES, which compares distributions, refuses it (`divergence` None)."""

    name = "regression"
    metric_names = ("loss", "mae", "rmse", "r2")
    main_metric = "mae"
    lower_is_better = frozenset({"loss", "mae", "rmse"})
    squeeze = True  # (B,) values
    single_label = False
    class_scores = False
    divergence = None
    temperature_scaling = False  # a point prediction, no probabilities to calibrate
    baseline = "regressor"  # `hydranet baseline` fits a scikit-learn regressor

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(numbers) & ~missing
        if bad.any():
            raise UserError(f"{where}: regression needs numbers, found {values[bad.argmax()]!r}")
        return torch.from_numpy(numbers.astype(np.float32)), TaskInfo(kind=self.name, outputs=1)

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Mean and std of the train split's labeled targets (std 1 when it is 0 or undefined)."""
        y = target[~torch.isnan(target)]
        info.mean, info.std = float(y.mean()), float(y.std()) if len(y) > 1 and float(y.std()) > 0 else 1.0

    def labeled(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return masked_mean(*_terms(pred, target, info, cfg), weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return masked_terms(*_terms(pred, target, info, cfg))

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """The value in original units."""
        return pred * info.std + info.mean

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        keep = ~np.isnan(target)
        y = target[keep]
        y_hat = pred[keep].astype(np.float64) * info.std + info.mean  # original units; float64, so a huge output stays finite
        r2 = float(skm.r2_score(y, y_hat)) if len(y) >= 2 else math.nan
        return {
            "mae": float(skm.mean_absolute_error(y, y_hat)),
            "rmse": float(np.sqrt(skm.mean_squared_error(y, y_hat))),
            "r2": r2,
        }

    def column(self, decoded: np.ndarray, info: TaskInfo, cfg: Any) -> Any:
        """The value in original units."""
        return decoded

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The value in original units (`column`)."""
        return [{"value": value} for value in self.column(self.decode(pred, info).cpu().numpy(), info, cfg).tolist()]

    def column_name(self, task: str, info: TaskInfo) -> str:
        """The task's name: its values say what they are."""
        return task

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """The head predicts the standardized target: value = output × scale + shift (the train mean and std)."""
        return {"decode": "affine", "scale": info.std, "shift": info.mean}

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """Standardized, the head's own output space."""
        return (target - info.mean) / info.std

    def from_average(self, average: Tensor) -> Tensor:
        return average


KIND = Regression()
