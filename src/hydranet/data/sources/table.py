"""Tables from CSV (also .csv.gz) and Parquet files: task columns become labels, the rest features.

Missing cells (`?`, empty, NaN, also with surrounding spaces) are read as missing; an optional `split`
column gives predefined train/val/test splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hydranet.config import Config
from hydranet.data.dataset import MISSING_STRINGS, RawData
from hydranet.data.finite import reject_out_of_range, table_row
from hydranet.errors import UserError
from hydranet.registry import register

SPLITS = ("train", "val", "test")
SPLIT_COLUMN = "split"


@register("source", "csv")
def load_csv(cfg: Config) -> RawData:
    """A CSV table (any compression pandas infers from the suffix, e.g. .csv.gz)."""
    path = table_path(cfg, "csv", "a CSV file")
    return table_data(read_table(path, "csv"), cfg, str(path))


@register("source", "parquet")
def load_parquet(cfg: Config) -> RawData:
    """A Parquet table."""
    path = table_path(cfg, "parquet", "a Parquet file")
    return table_data(read_table(path, "parquet"), cfg, str(path))


# Read by the config: a config that names no trunk gets the tabular default for these sources (grown on a large table).
load_csv.inputs = load_parquet.inputs = "table"  # type: ignore[attr-defined]


def table_path(cfg: Config, source: str, expected: str, any_format: bool = False) -> Path:
    """`data.path` as an existing file, or a UserError saying what was expected; unless `any_format` (a source
    that reads both), a CSV given to the parquet source or the reverse is refused."""
    if cfg.data.path is None:
        raise UserError(f"data.path: required for source {source} (expected {expected})")
    path = Path(cfg.data.path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: file not found (data.path of source {source}: expected {expected})")
    if path.is_dir():
        raise UserError(f"{path}: is a folder (data.path of source {source}: expected {expected})")
    suffix_format = table_format(path)
    if not any_format and suffix_format not in (None, source):
        raise UserError(f"{path}: a .{suffix_format} file given to source {source} (expected {expected}; "
                        f"set data.source: {suffix_format})")
    return path


def table_format(path: Path) -> str | None:
    """'csv' or 'parquet' as the file's suffix says (.csv, .csv.gz …, .parquet), None for any other suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".parquet"]:
        return "parquet"
    return "csv" if ".csv" in suffixes[-2:] else None


def read_table(path: Path, fmt: str, names: list[str] | None = None) -> pd.DataFrame:
    """A CSV or Parquet file, read and cleaned the one way training and `predict` share; a file that cannot be
    read as one (garbage, cut short, empty, a header without rows) is a UserError naming it. `names`: the column
    names of a CSV without a header row."""
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, na_values=["?"], low_memory=False, header=None if names else "infer", names=names)
            header = names or pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    except Exception as err:  # pandas, pyarrow and the decompressors raise many types for damaged files
        detail = str(err).splitlines()[0] if str(err) else ""
        raise UserError(f"{path}: not a readable {'Parquet' if fmt == 'parquet' else 'CSV'} table "
                        f"({type(err).__name__}: {detail})") from None
    if fmt == "csv":
        # pandas renames a repeated name (`age`, `age.1`) without a word; the header as written shows it.
        stripped_names(pd.Index([name for name in header if name.strip()]), str(path))
    if len(frame) == 0:
        raise UserError(f"{path}: the table has no rows (columns: {column_list(frame)})")
    return clean(frame, str(path))


def clean(frame: pd.DataFrame, where: str = "table") -> pd.DataFrame:
    """Strip names and text cells, turn missing markers into NaN, and read text columns of numbers as numbers."""
    frame = frame.copy()
    frame.columns = stripped_names(frame.columns, where)
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object and not pd.api.types.is_string_dtype(column):
            continue
        text = column.astype("string").str.strip()
        text = text.mask(text.isin(MISSING_STRINGS))
        # " 39" next to " ?" makes pandas read a numeric column as text; after stripping it parses again.
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.notna().sum() == text.notna().sum():
            frame[name] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)  # plain float, not pandas' nullable Int64
        else:
            frame[name] = text.astype(object).where(text.notna(), np.nan)
    return frame


def stripped_names(columns: pd.Index, where: str) -> list[str]:
    """Column names without surrounding spaces; two names that are one once stripped are refused: one of the
    two columns would be silently lost or renamed."""
    names: dict[str, str] = {}
    for raw in map(str, columns):
        name = raw.strip()
        if name in names and raw == names[name]:
            raise UserError(f"{where}: two columns are named {raw!r} (expected distinct column names)")
        if name in names:
            raise UserError(f"{where}: columns {names[name]!r} and {raw!r} are one name, {name!r}, once stripped of "
                            f"spaces (expected distinct column names)")
        names[name] = raw
    return list(names)


def table_data(frame: pd.DataFrame, cfg: Config, where: str) -> RawData:
    """Split a cleaned table into labels (one per task column), the optional split, feature columns and the side
    columns (example weights, sensitive attributes), which are read as they are and left to `data.build`."""
    task_columns = list(dict.fromkeys(cfg.column(task) for task in cfg.tasks))
    labels = {column: require_column(frame, column, where).to_numpy() for column in task_columns}
    split = read_split(frame[SPLIT_COLUMN], where) if SPLIT_COLUMN in frame.columns else None
    columns = {name: require_column(frame, name, where, field).to_numpy() for name, field in side_columns(cfg).items()}
    if cfg.data.weight_column is not None:
        check_weights(columns[cfg.data.weight_column], cfg.data.weight_column, where)
    excluded = {**dict.fromkeys(task_columns, "a task column"), SPLIT_COLUMN: "the split column",
                **kept_out(cfg)}
    features = select_features(frame, cfg, excluded, where=where)
    check_numbers(frame[[*task_columns, *features.columns]], where)
    return RawData(labels=labels, frame=features.reset_index(drop=True), split=split, columns=columns)


def side_columns(cfg: Config) -> dict[str, str]:
    """Column → the config field that names it, for the columns read beside features and labels."""
    named = {name: "fairness.sensitive" for name in cfg.fairness.sensitive}
    if cfg.data.weight_column is not None:
        named[cfg.data.weight_column] = "data.weight_column"
    return named


def kept_out(cfg: Config) -> dict[str, str]:
    """Side columns that are never features (column → what it is): the weight column always, the sensitive
    columns unless `fairness.use_as_features` (a model that never sees them cannot use them directly)."""
    out = {} if cfg.fairness.use_as_features else dict.fromkeys(cfg.fairness.sensitive, "a sensitive column "
                                                                "(fairness.use_as_features: true keeps it)")
    if cfg.data.weight_column is not None:
        out[cfg.data.weight_column] = "the weight column"
    return out


def check_weights(values: np.ndarray, name: str, where: str) -> None:
    """Example weights are numbers ≥ 0 in every row: a missing or negative weight has no meaning in a weighted
    mean. Checked here, on the file's rows, so the row named is the file's (not one counted after `data.limit`)."""
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"data.weight_column: {where}: {table_row(name, (row,))} holds {str(values[row])!r}; "
                        f"expected a number ≥ 0 in every row")


def check_numbers(frame: pd.DataFrame, where: str) -> None:
    """Refuse ±inf and beyond-float32 numbers in the columns hydranet reads, naming the first one's column and row."""
    reject_out_of_range(where, {str(name): frame[name].to_numpy() for name in frame.columns}, table_row)


def select_features(frame: pd.DataFrame, cfg: Config, exclude: dict[str, str], where: str) -> pd.DataFrame:
    """`data.features`, or every column not excluded (column → what it is); a task column is never a feature (it
    would leak), and a table with no feature left is refused (a model of no inputs would only learn the label
    shares)."""
    if cfg.data.features is None:
        features = frame[[c for c in frame.columns if c not in exclude]]
    else:
        for name in cfg.data.features:
            require_column(frame, name, where)
            if name in exclude:
                raise UserError(f"data.features: {name!r} is {exclude[name]}, it cannot also be a feature")
        features = frame[list(cfg.data.features)]
    if features.shape[1] == 0:
        raise UserError(f"{where}: no feature columns left once the task columns and `split` are set aside "
                        f"(columns: {column_list(frame)}); expected at least one input column")
    return features


def require_column(frame: pd.DataFrame, name: str, where: str, field: str | None = None) -> pd.Series:
    """The column `name`; a missing one is a UserError naming the file, the config field that asked, and the
    columns there are."""
    if name not in frame.columns:
        asked = f"{field}: " if field else ""
        raise UserError(f"{asked}{where}: no column {name!r} (columns: {column_list(frame)})")
    return frame[name]


def column_list(frame: pd.DataFrame, most: int = 30) -> str:
    """The frame's column names for an error message, the first `most` of them."""
    return ", ".join(map(str, frame.columns[:most])) + (", …" if len(frame.columns) > most else "")


def read_split(column: pd.Series, where: str, noun: str = "column") -> np.ndarray:
    """The `split` column as an object array of 'train'/'val'/'test'; any other value is an error."""
    values = column.astype("string").str.strip().str.lower()
    bad = ~values.isin(SPLITS).fillna(False).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"{where}: {noun} {SPLIT_COLUMN!r} has value {column.iloc[row]!r} in row {row + 1}; "
            f"expected one of {', '.join(SPLITS)}"
        )
    return values.to_numpy(dtype=object)
