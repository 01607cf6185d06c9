"""`TableEncoder`: raw table columns → a float32 feature matrix, fitted on the train split only.

Numeric columns are standardized (missing → the train mean), text columns one-hot encoded over the train
categories (missing or unseen → all zeros). Its state is JSON, so a run directory can encode new tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hydranet.data.dataset import MISSING_STRINGS
from hydranet.errors import UserError

STATE_VERSION = 1


class TableEncoder:
    """Fit with `fit(train_frame)`, then `transform(frame) -> (N, F) float32`; `feature_names` names the F."""

    def __init__(self) -> None:
        self.columns: list[dict[str, Any]] = []  # per column: name, kind, and mean/std or categories

    def fit(self, frame: pd.DataFrame) -> "TableEncoder":
        self.columns = [_fit_column(str(name), frame[name]) for name in frame.columns]
        return self

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.fit(frame).transform(frame)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), len(self.feature_names)), dtype=np.float32)
        start = 0
        for column in self.columns:
            values = _column(frame, column["name"])
            if column["kind"] == "numeric":
                out[:, start] = _standardize(values, column)
                start += 1
            else:
                start += _one_hot(values, column["categories"], out[:, start:start + len(column["categories"])])
        return out

    @property
    def feature_names(self) -> list[str]:
        names = []
        for column in self.columns:
            if column["kind"] == "numeric":
                names.append(column["name"])
            else:
                names.extend(f"{column['name']}={category}" for category in column["categories"])
        return names

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "columns": [dict(c) for c in self.columns]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TableEncoder":
        encoder = cls()
        encoder.columns = [dict(c) for c in state["columns"]]
        return encoder


def _fit_column(name: str, series: pd.Series) -> dict[str, Any]:
    """Numeric when every present value parses as a number; otherwise categorical."""
    series = series.reset_index(drop=True)
    missing = _missing(series)
    numbers = _numbers(series)
    if not (numbers.isna() & ~missing).any():
        present = numbers[~missing].to_numpy(dtype=np.float64, na_value=np.nan)
        mean = float(present.mean()) if len(present) else 0.0
        std = float(present.std()) if len(present) else 0.0
        # A constant column carries no information; dividing by 1 keeps it at 0 instead of NaN.
        return {"name": name, "kind": "numeric", "mean": mean, "std": std if std > 0 else 1.0}
    categories = sorted(set(_text(series)[~missing]))
    return {"name": name, "kind": "categorical", "categories": categories}


def _standardize(series: pd.Series, column: dict[str, Any]) -> np.ndarray:
    missing = _missing(series)
    numbers = _numbers(series)
    bad = numbers.isna() & ~missing
    if bad.any():
        value = series[bad].iloc[0]
        raise UserError(f"column {column['name']!r}: value {value!r} is not a number (the column was numeric in training)")
    z = ((numbers.to_numpy(dtype=np.float64, na_value=np.nan) - column["mean"]) / column["std"]).astype(np.float32)
    return np.where(missing.to_numpy(), np.float32(0), z)  # mean imputation: the mean standardizes to 0


def _one_hot(series: pd.Series, categories: list[str], out: np.ndarray) -> int:
    """Write one-hot rows into `out` (N, K) in place; unknown and missing values match no category."""
    codes = pd.Categorical(_text(series).where(~_missing(series)), categories=categories).codes
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1.0
    return len(categories)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:30])) + (", …" if len(frame.columns) > 30 else "")
        raise UserError(f"table: no column {name!r}, which the model was trained with (columns: {shown})")
    return frame[name].reset_index(drop=True)


def _text(series: pd.Series) -> pd.Series:
    """Values as stripped strings, so ' Male' and 'Male' are one category."""
    return series.astype(str).str.strip()


def _missing(series: pd.Series) -> pd.Series:
    """Vectorized twin of dataset.missing_mask: NaN/None or a missing marker such as '?' or ''."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.isna().reset_index(drop=True)
    return (series.isna() | _text(series).isin(MISSING_STRINGS)).reset_index(drop=True)


def _numbers(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(float)
    elif not pd.api.types.is_numeric_dtype(series):
        series = _text(series)
    return pd.to_numeric(series, errors="coerce").reset_index(drop=True)
