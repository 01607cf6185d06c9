"""`TableEncoder`: raw table columns → a float32 feature matrix, fitted on the train split only.

Numeric columns are standardized, quantile- or robust-scaled (missing → 0, the train centre), optionally with a
missing-value indicator; text columns are one-hot encoded over the train categories (missing or unseen → all zeros)
or become one integer code each for a learned embedding (0: missing or unseen). Its state is JSON, so a run directory
can encode new tables exactly as training did.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.special import ndtri

from hydranet.config import Options
from hydranet.data.dataset import MISSING_STRINGS
from hydranet.errors import UserError
from hydranet.registry import register

STATE_VERSION = 2  # 1: no options (standardize, one-hot); read as the defaults
QUANTILE_BOUND = 1e-7  # quantile scaling clips to Φ⁻¹(1e-7)..Φ⁻¹(1 − 1e-7) (±5.2), as scikit-learn's QuantileTransformer


class TableOptions(Options):
    """`data.encoder: {name: table, …}`: how a table's columns become model inputs (fitted on train only)."""

    numeric: Literal["standard", "quantile", "robust"] = Field("standard", description="numeric columns: standard ((x − mean) / std) | quantile (rank mapped to a standard normal through the train quantiles, as scikit-learn's QuantileTransformer) | robust ((x − median) / interquartile range)")
    quantiles: int = Field(1000, ge=2, description="quantile: train quantiles kept per column (fewer when the train split has fewer values)")
    missing_indicators: bool = Field(False, description="numeric columns with a missing value in train get one more input: 1 where the value is missing, else 0")
    categorical: Literal["onehot", "embedding"] = Field("onehot", description="text columns: onehot (one input per train category) | embedding (one input holding the category's code, 0 for missing or unseen, which the mlp and ft_transformer trunks embed)")


@register("encoder", "table", options=TableOptions)
class TableEncoder:
    """Fit with `fit(train_frame)`, then `transform(frame) -> (N, F) float32`; `feature_names` names the F and
    `cardinalities` says which of them are category codes (and how many codes each has)."""

    def __init__(self, options: TableOptions | None = None) -> None:
        self.options = options or TableOptions()
        self.columns: list[dict[str, Any]] = []  # per column: name, kind, and its fitted statistics or categories

    def fit(self, frame: pd.DataFrame) -> "TableEncoder":
        self.columns = [_fit_column(str(name), frame[name], self.options) for name in frame.columns]
        return self

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.fit(frame).transform(frame)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), len(self.feature_names)), dtype=np.float32)
        start = 0
        for column in self.columns:
            width = self.width(column)
            _encode(_column(frame, column["name"]), column, self.options, out[:, start:start + width])
            start += width
        return out

    def width(self, column: dict[str, Any]) -> int:
        """How many model inputs one fitted column gives (the one place that knows the layout)."""
        if column["kind"] == "numeric":
            return 1 + bool(column.get("indicator"))
        return 1 if self.embedded else len(column["categories"])

    @property
    def embedded(self) -> bool:
        return self.options.categorical == "embedding"

    @property
    def plain(self) -> bool:
        """Standardized numbers and one-hot categories only: the affine encoding a distillation teacher's input map
        reproduces (the export's standalone preprocessing and the server's one-row path reproduce every one)."""
        return (self.options.numeric == "standard" and not self.embedded
                and not any(c.get("indicator") for c in self.columns))

    @property
    def feature_names(self) -> list[str]:
        names = []
        for column in self.columns:
            if column["kind"] == "numeric":
                names += [column["name"], f"{column['name']}=missing"][:self.width(column)]
            elif self.embedded:
                names.append(column["name"])
            else:
                names.extend(f"{column['name']}={category}" for category in column["categories"])
        return names

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Per model input: 0 for a number, else the count of codes of a category column (its categories + 1)."""
        sizes = []
        for column in self.columns:
            coded = column["kind"] == "categorical" and self.embedded
            sizes += [len(column["categories"]) + 1] if coded else [0] * self.width(column)
        return tuple(sizes)

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "options": self.options.model_dump(),
                "columns": [dict(c) for c in self.columns]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TableEncoder":
        encoder = cls(TableOptions.model_validate(state.get("options", {})))
        encoder.columns = [dict(c) for c in state["columns"]]
        return encoder


def cardinalities(state: dict[str, Any] | None) -> tuple[int, ...]:
    """`TableEncoder.cardinalities` of a stored encoder state (empty for runs that are not tables)."""
    return TableEncoder.from_state(state).cardinalities if state is not None else ()


def _fit_column(name: str, series: pd.Series, options: TableOptions) -> dict[str, Any]:
    """Numeric when every present value parses as a number; otherwise categorical."""
    series = series.reset_index(drop=True)
    missing = _missing(series)
    numbers = _numbers(series)
    if not (numbers.isna() & ~missing).any():
        present = numbers[~missing].to_numpy(dtype=np.float64, na_value=np.nan)
        column = {"name": name, "kind": "numeric", **_fit_scaling(present, options)}
        if options.missing_indicators and missing.any():
            column["indicator"] = True
        return column
    categories = sorted(set(_text(series)[~missing]))
    return {"name": name, "kind": "categorical", "categories": categories}


def _fit_scaling(present: np.ndarray, options: TableOptions) -> dict[str, Any]:
    """The train statistics of one numeric column's scaling; a constant (or empty) column scales to 0."""
    if options.numeric == "quantile":
        count = min(options.quantiles, len(present))
        # train values themselves (nearest), not interpolations between them, so tied values stay exactly tied
        levels = np.linspace(0, 1, count)
        return {"quantiles": np.quantile(present, levels, method="nearest").tolist() if count else [0.0]}
    if options.numeric == "robust":
        low, median, high = np.percentile(present, [25, 50, 75]) if len(present) else (0.0, 0.0, 0.0)
        return {"median": float(median), "iqr": float(high - low) if high > low else 1.0}
    mean = float(present.mean()) if len(present) else 0.0
    std = float(present.std()) if len(present) else 0.0
    # A constant column carries no information; dividing by 1 keeps it at 0 instead of NaN.
    return {"mean": mean, "std": std if std > 0 else 1.0}


def _encode(series: pd.Series, column: dict[str, Any], options: TableOptions, out: np.ndarray) -> None:
    """Write one column's model inputs into `out` (N, width) in place."""
    if column["kind"] == "numeric":
        missing = _missing(series).to_numpy()
        out[:, 0] = np.where(missing, np.float32(0), _scaled(_checked_numbers(series, column), column))
        if column.get("indicator"):
            out[:, 1] = missing
        return
    codes = pd.Categorical(_text(series).where(~_missing(series)), categories=column["categories"]).codes
    if options.categorical == "embedding":
        out[:, 0] = codes + 1  # 0: missing or unseen (pandas' code −1)
        return
    rows = np.flatnonzero(codes >= 0)  # one-hot: unknown and missing values match no category
    out[rows, codes[rows]] = 1.0


def _checked_numbers(series: pd.Series, column: dict[str, Any]) -> np.ndarray:
    numbers = _numbers(series)
    bad = numbers.isna() & ~_missing(series)
    if bad.any():
        value = series[bad].iloc[0]
        raise UserError(f"column {column['name']!r}: value {value!r} is not a number (the column was numeric in training)")
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def scaled_number(value: float, column: dict[str, Any]) -> np.float32:
    """One present number of a fitted numeric column, scaled exactly as `transform` scales the whole column (the
    server's one-row path): plain float arithmetic for a standardized column, else the column's own scaling."""
    if "mean" in column:
        return np.float32((value - column["mean"]) / column["std"])
    return _scaled(np.array([value], dtype=np.float64), column)[0]


def _scaled(x: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    """Scale by the column's fitted statistics; which ones it holds says which scaling it was fitted with."""
    if "quantiles" in column:
        return _quantile_normal(x, np.asarray(column["quantiles"])).astype(np.float32)
    if "median" in column:
        return ((x - column["median"]) / column["iqr"]).astype(np.float32)
    return ((x - column["mean"]) / column["std"]).astype(np.float32)


def _quantile_normal(x: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """x → Φ⁻¹(its rank among the train quantiles), interpolated linearly between them. A value repeated over many
    quantiles (a discrete column) gets the mean of its ranks: scikit-learn's sends the smallest and largest values
    to ±5.2 however many rows hold them."""
    values, ranks = quantile_ranks(quantiles)
    if len(values) < 2:
        return np.zeros_like(x)
    return ndtri(np.clip(np.interp(x, values, ranks), QUANTILE_BOUND, 1 - QUANTILE_BOUND))


def quantile_ranks(quantiles: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct train quantiles (ascending) and the rank in [0, 1] each maps to, the mean of the ranks it
    holds: what quantile scaling interpolates between (here and in the export's standalone preprocessing)."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    values, group = np.unique(quantiles, return_inverse=True)
    ranks = np.bincount(group, weights=np.linspace(0, 1, len(quantiles))) / np.bincount(group)
    return values, ranks


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
