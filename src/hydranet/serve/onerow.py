"""Small table requests checked and encoded in plain Python: the same model inputs as `clean`, `checked_table` and
`TableEncoder` give them, without their pandas work (about 40 ms of a one-row request on two busy cores), for every
encoding (`data.encoder`: standardized, quantile or robust numbers, missing indicators, one-hot or coded categories).

It takes only what it knows it reads as pandas does: JSON numbers in numeric columns, text that is no number in
text columns, and missing values. Anything else (text in a numeric column, a number in a text column, text that
parses as a number, booleans, numbers beyond float32) goes the pandas way, which also words any error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hydranet.data import DataInfo
from hydranet.data.dataset import MISSING_STRINGS
from hydranet.data.finite import FLOAT32_MAX
from hydranet.data.tabular import TableEncoder, scaled_number

MISSING = object()  # a missing cell: null, or a missing marker such as "?" or ""
INT64_LIMIT = 2 ** 63  # larger ints make pandas' column object-typed, not int64
MAX_ROWS = 2048  # beyond, pandas' whole-column work may cost less than reading cell by cell (docs/deploy.md)


class _PandasWay(Exception):
    """A cell this module does not read; the request goes through pandas."""


def encode_rows(info: DataInfo, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], torch.Tensor] | None:
    """(the cleaned rows, their model inputs (N, F)) of checked rows with exactly the trained columns; None when a
    cell needs the pandas path, or when there are more than MAX_ROWS rows (pandas' per-request cost is then the
    smaller one). Each cell is read on its own: a column pandas would type from several rows reads the same, since
    a cell whose reading depends on its neighbours (text in a numeric column, a number in a text column, text that
    parses as a number) goes the pandas way."""
    if len(rows) > MAX_ROWS:
        return None
    encoder = TableEncoder.from_state(info.encoder)
    out = np.zeros((len(rows), len(encoder.feature_names)), dtype=np.float32)
    try:
        cleaned = [encode_row(encoder, row, encoded) for row, encoded in zip(rows, out)]
    except _PandasWay:
        return None
    return cleaned, torch.from_numpy(out)


def encode_row(encoder: TableEncoder, row: dict[str, Any], out: np.ndarray) -> dict[str, Any]:
    """One row's cells encoded into `out` (zeros, F) as `encoder` encodes them; the cleaned row. Raises _PandasWay
    for a cell it does not read."""
    cleaned, start = {}, 0
    for column in encoder.columns:
        value = cell(row[column["name"]])
        cleaned[column["name"]] = math.nan if value is MISSING else value
        if column["kind"] == "numeric":
            if isinstance(value, str):
                raise _PandasWay  # text in a numeric column: pandas names the cell in its error
            if value is not MISSING:  # missing: 0, the train centre of every scaling
                out[start] = scaled_number(float(value), column)
            elif column.get("indicator"):
                out[start + 1] = 1.0
            start += encoder.width(column)
            continue
        if not (value is MISSING or isinstance(value, str)):
            raise _PandasWay  # a number in a text column: pandas decides how it is spelled
        known = value is not MISSING and value in column["categories"]  # unknown and missing text: no category
        if encoder.embedded:  # the code: 1 + the category's position, 0 the unknown slot
            out[start] = column["categories"].index(value) + 1 if known else 0
        elif known:
            out[start + column["categories"].index(value)] = 1.0
        start += encoder.width(column)
    return cleaned


def cell(value: Any) -> Any:
    """MISSING, a number (int or float) or stripped text, as `clean` reads a one-row column holding `value`."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        raise _PandasWay
    if isinstance(value, int):
        if abs(value) >= INT64_LIMIT:
            raise _PandasWay
        return value
    if isinstance(value, float):
        if not abs(value) <= FLOAT32_MAX:  # ±inf and NaN too (check_row refuses them first)
            raise _PandasWay
        return value
    text = value.strip()
    if text in MISSING_STRINGS:
        return MISSING
    if parses_as_number(text):
        raise _PandasWay  # `clean` turns it into a number; pandas' parser decides its value
    return text


def parses_as_number(text: str) -> bool:
    """Text that Python's or pandas' number parsing might read (pandas also reads inf/nan spellings)."""
    try:
        float(text)
        return True
    except ValueError:
        lowered = text.lower()
        return "inf" in lowered or "nan" in lowered
