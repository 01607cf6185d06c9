"""Turning raw label columns into target tensors; each kind encodes its own (`hydranet.kinds`).

Missing labels stay in the tensor as -1 (class indices) or NaN (floats), so a task without a label for
an example masks it out of its own loss and metrics while the other tasks still learn from it.
"""

from __future__ import annotations

import numpy as np
import torch

from hydranet.config import TaskConfig
from hydranet.data.dataset import missing_mask
from hydranet.errors import UserError
from hydranet.kinds import TaskInfo, get_kind, is_dense


def encode_target(values: np.ndarray, cfg: TaskConfig, where: str) -> tuple[torch.Tensor, TaskInfo]:
    """Encode one column for one task; `where` names it in errors (e.g. "tasks.income (column 'income')").

    A dense kind's column is one label map per example, (N, H, W) numbers that mark missing pixels themselves;
    its kind checks and masks them. Every other kind reads one raw value per example.
    """
    kind = get_kind(cfg.kind)
    if is_dense(kind):
        return kind.encode(np.asarray(values), np.zeros(len(values), dtype=bool), cfg, where)
    values = np.asarray(values, dtype=object)
    if values.ndim != 1:
        raise UserError(f"{where}: a {cfg.kind} task needs one value per example, got an array of shape {values.shape}")
    missing = missing_mask(values)
    if missing.all():
        raise UserError(f"{where}: has no labels (every value is missing)")
    return kind.encode(values, missing, cfg, where)

