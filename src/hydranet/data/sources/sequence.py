"""Numeric sequences from a NumPy .npz file: `x` (N, T, F) padded to T steps, `lengths` (N,) the real steps of
each, every other array a label column (one value per sequence); an optional `split` array as for npz.

Or from a long table (CSV or Parquet, one row per step): rows grouped by the `data.sequence.id` column (one example
per id, in order of first appearance), ordered by the `data.sequence.time` column, padded to the longest id; a label
or `split` column holds one value per id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.finite import FLOAT32_MAX, table_row
from hydranet.data.sequences import padded_series
from hydranet.data.sources.npz import npz_path, read_arrays
from hydranet.data.sources.table import (SPLIT_COLUMN, read_split, read_table, require_column, select_features,
                                         table_format)
from hydranet.errors import UserError
from hydranet.registry import register


@register("source", "sequence")
def load_sequences(cfg: Config) -> RawData:
    """Padded sequences with their lengths; ragged lists cannot be stored without pickle and are refused by the
    reader, so a file either holds one rectangular `x` or is named in the error."""
    if cfg.data.path is not None and table_format(Path(cfg.data.path)) is not None:
        return load_long_table(cfg)
    path = npz_path(cfg)
    series, arrays = read_sequences(path)
    for name, values in arrays.items():
        if values.ndim != 1 or len(values) != len(series):
            raise UserError(f"{path}: array {name!r} has shape {values.shape}; expected ({len(series)},), one value "
                            f"per sequence of x")
    split = read_split(pd.Series(arrays.pop("split")), str(path), "array") if "split" in arrays else None
    return RawData(labels=dict(arrays), series=series, split=split)


def read_sequences(path: Path) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The file's `x` and `lengths` as a padded series (N, T, F + 1), and its other arrays (training and `predict`
    read sequence files this one way)."""
    arrays = read_arrays(path)
    missing = [name for name in ("x", "lengths") if name not in arrays]
    if missing:
        raise UserError(f"{path}: no array {missing[0]!r} (arrays: {', '.join(arrays) or 'none'}); expected x (N, T, F), "
                        f"lengths (N,) and one array per label")
    x, lengths = arrays.pop("x"), arrays.pop("lengths")
    if x.dtype.kind not in "fiub":
        raise UserError(f"{path}: array 'x' has dtype {x.dtype}; expected numbers")
    return padded_series(x.astype(np.float64), lengths, str(path)), arrays


def load_long_table(cfg: Config) -> RawData:
    """One sequence per id of a long table: its rows ordered by time are its steps, `data.features` (else every
    column that is not the id, the time, a task column or `split`) its features."""
    path = Path(cfg.data.path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: file not found (data.path of source sequence: expected an .npz or a long table)")
    seq, where = cfg.data.sequence, str(path)
    for field in ("id", "time"):
        if getattr(seq, field) is None:
            raise UserError(f"data.sequence.{field}: required to read {path.name} as a long table (the column of "
                            f"each row's {'sequence id' if field == 'id' else 'time step'}); or give an .npz file")
    frame = read_table(path, table_format(path))
    ids = require_column(frame, seq.id, where, "data.sequence.id")
    times = time_values(require_column(frame, seq.time, where, "data.sequence.time"), where)
    task_columns = list(dict.fromkeys(cfg.column(task) for task in cfg.tasks))
    excluded = {seq.id: "the id column (data.sequence.id)", seq.time: "the time column (data.sequence.time)",
                SPLIT_COLUMN: "the split column", **dict.fromkeys(task_columns, "a task column")}
    features = select_features(frame, cfg, excluded, where)
    rows, codes = step_order(ids, times, where)
    series = grouped_series(numeric_features(features, where), rows, codes, where)
    per_id = {name: one_per_id(require_column(frame, name, where), rows, codes, where) for name in task_columns}
    split = None
    if SPLIT_COLUMN in frame.columns:
        split = one_per_id(pd.Series(read_split(frame[SPLIT_COLUMN], where), name=SPLIT_COLUMN), rows, codes, where)
    return RawData(labels=per_id, series=series, split=split)


def time_values(column: pd.Series, where: str) -> np.ndarray:
    """The time column as sortable numbers: numbers as they are (a column with any number is read as numbers),
    else dates (as nanoseconds); a missing or unreadable cell is named with its row."""
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isnan(numbers).all():
        values, bad = numbers, np.isnan(numbers)
    else:
        dates = pd.to_datetime(column, errors="coerce", format="mixed").to_numpy(dtype="datetime64[ns]")
        values, bad = dates.astype(np.int64), np.isnat(dates)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"data.sequence.time: {where}: {cell(column, row)}; expected a number or a date in every row")
    return values


def cell(column: pd.Series, row: int) -> str:
    """A table cell and what it holds, for an error message: `column 'x' row 3 (…) holds 'abc'` or `… is empty`."""
    value = column.iloc[row]
    return f"{table_row(str(column.name), (row,))} " + ("is empty" if pd.isna(value) else f"holds {str(value)!r}")


def step_order(ids: pd.Series, times: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The table's row numbers sorted by (id in order of first appearance, time), and each sorted row's sequence
    number; two rows of one id at the same time (which comes first?) are refused."""
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise UserError(f"data.sequence.id: {where}: {cell(ids, row)}; expected an id in every row")
    codes, _ = pd.factorize(ids)
    rows = np.lexsort((times, codes))
    sorted_codes, sorted_times = codes[rows], times[rows]
    tie = (sorted_codes[1:] == sorted_codes[:-1]) & (sorted_times[1:] == sorted_times[:-1])
    if tie.any():
        first, second = sorted(rows[int(np.flatnonzero(tie)[0]):][:2] + 1)
        raise UserError(f"data.sequence.time: {where}: rows {first} and {second} (counting from 1 below the header) "
                        f"are both id {str(ids.iloc[first - 1])!r} at the same time; expected one row per id and time")
    return rows, sorted_codes


def numeric_features(features: pd.DataFrame, where: str) -> np.ndarray:
    """(rows, F) float64 features; text, an empty cell (a step has no missing values) or ±inf is named with its row."""
    for name in features.columns:
        values = features[name]
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~(np.abs(numbers) <= FLOAT32_MAX)  # NaN compares False: missing or text
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"{where}: {cell(values, row)}; expected a number in every step of a sequence feature "
                            f"(data.features chooses the feature columns)")
    return features.to_numpy(dtype=np.float64)


def grouped_series(values: np.ndarray, rows: np.ndarray, codes: np.ndarray, where: str) -> torch.Tensor:
    """(rows, F) values → (ids, T, F + 1) padded series, T the longest id's rows, in the sorted `rows` order."""
    lengths = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    steps = np.arange(len(rows)) - starts[codes]  # each sorted row's step within its sequence
    padded = np.zeros((len(lengths), int(lengths.max()), values.shape[1]))
    padded[codes, steps] = values[rows]
    return padded_series(padded, lengths, where)


def one_per_id(column: pd.Series, rows: np.ndarray, codes: np.ndarray, where: str) -> np.ndarray:
    """A label column's one value per id: the id's non-missing cells must agree (an id with none: missing)."""
    values = column.to_numpy()[rows]
    known = ~pd.isna(values)
    frame = pd.DataFrame({"id": codes[known], "value": values[known], "row": rows[known]})
    distinct = frame.groupby("id")["value"].nunique()
    if (distinct > 1).any():
        clash = frame[frame["id"] == distinct.index[distinct.to_numpy() > 1][0]]
        other = clash[clash["value"] != clash["value"].iloc[0]].iloc[0]
        raise UserError(f"{where}: column {column.name!r} holds {str(clash['value'].iloc[0])!r} in row "
                        f"{clash['row'].iloc[0] + 1} and {str(other['value'])!r} in row {other['row'] + 1}, both of "
                        f"one id; expected one value per id (a label of the whole sequence)")
    out = np.full(int(codes.max()) + 1, np.nan, dtype=object)
    first = frame.drop_duplicates("id")
    out[first["id"].to_numpy()] = first["value"].to_numpy()
    return out


load_sequences.inputs = "sequence"  # type: ignore[attr-defined]  # read by the config: the default trunk
