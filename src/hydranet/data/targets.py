"""Turning raw label columns into target tensors, one function per task kind.

Missing labels stay in the tensor as -1 (class indices) or NaN (floats), so a task without a label for
an example masks it out of its own loss and metrics while the other tasks still learn from it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hydranet.config import TaskConfig
from hydranet.data.dataset import missing_mask
from hydranet.errors import UserError
from hydranet.tasks import TaskInfo


def encode_target(values: np.ndarray, cfg: TaskConfig, where: str) -> tuple[torch.Tensor, TaskInfo]:
    """Encode one column for one task; `where` names it in errors (e.g. "tasks.income (column 'income')")."""
    missing = missing_mask(values)
    if missing.all():
        raise UserError(f"{where}: has no labels (every value is missing)")
    encoders = {"classification": _classification, "binary": _binary, "multilabel": _multilabel, "regression": _regression}
    return encoders[cfg.kind](np.asarray(values, dtype=object), missing, cfg, where)


def _sorted_values(present: np.ndarray) -> tuple[list, list[str]]:
    """Distinct values in natural order (numerically when they are all numbers) and their display names."""
    numbers = pd.to_numeric(pd.Series(present), errors="coerce")
    if not numbers.isna().any():
        distinct = sorted(set(numbers.tolist()))
        names = [str(int(v)) if float(v).is_integer() else str(v) for v in distinct]
        return distinct, names
    distinct = sorted({str(v).strip() for v in present})
    return distinct, distinct


def _codes(values: np.ndarray, missing: np.ndarray, distinct: list) -> np.ndarray:
    """Index of each value in `distinct`, -1 where missing."""
    numeric = not isinstance(distinct[0], str)
    keys = pd.Series(values[~missing])
    keys = pd.to_numeric(keys) if numeric else keys.map(lambda v: str(v).strip())
    codes = np.full(len(values), -1, dtype=np.int64)
    codes[~missing] = pd.Categorical(keys, categories=distinct).codes
    return codes


def _classification(values, missing, cfg, where):
    distinct, names = _sorted_values(values[~missing])
    codes = _codes(values, missing, distinct)
    return torch.from_numpy(codes), TaskInfo(kind="classification", outputs=len(distinct), classes=names)


def _binary(values, missing, cfg, where):
    distinct, names = _sorted_values(values[~missing])
    if cfg.positive is not None:
        _check_positive(cfg.positive, names, where)
    elif len(distinct) > 2:
        shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        raise UserError(f"{where}: a binary task needs at most two distinct values, found {len(names)} ({shown}); "
                        f"set `positive` to make the task 'value == positive'")
    # More than two values with `positive` set: the task is "value == positive" (e.g. marital status
    # Never-married against the rest, the derived census task of the MMoE paper).
    positive = names.index(cfg.positive) if cfg.positive is not None else len(names) - 1  # default: '>50K' of {'<=50K', '>50K'}
    codes = _codes(values, missing, distinct)
    target = torch.from_numpy((codes == positive).astype(np.float32))
    target[torch.from_numpy(missing)] = float("nan")
    negative = [n for i, n in enumerate(names) if i != positive]
    negative_name = negative[0] if len(negative) == 1 else f"not {names[positive]}"
    return target, TaskInfo(kind="binary", outputs=1, classes=[negative_name, names[positive]])


def _check_positive(positive: str, names: list[str], where: str) -> None:
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


def _multilabel(values, missing, cfg, where):
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
    return torch.from_numpy(target), TaskInfo(kind="multilabel", outputs=len(vocab), classes=vocab)


def _regression(values, missing, cfg, where):
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(numbers) & ~missing
    if bad.any():
        raise UserError(f"{where}: regression needs numbers, found {values[bad.argmax()]!r}")
    return torch.from_numpy(numbers.astype(np.float32)), TaskInfo(kind="regression", outputs=1)


def labeled(target: torch.Tensor) -> torch.Tensor:
    """Boolean mask of examples that carry a label for this target."""
    if target.dtype == torch.int64:
        return target >= 0
    return ~torch.isnan(target).reshape(len(target), -1).all(dim=1)
