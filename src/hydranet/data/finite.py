"""Numbers hydranet cannot learn from: ±inf, and values beyond float32's range (1e39 becomes inf when encoded).

Refused where data enters (table and npz sources, prediction tables), naming the column and row, because one such
value turns the loss into NaN/inf many steps later. NaN and empty cells are not refused: they mean missing.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from hydranet.errors import UserError

FLOAT32_MAX = float(np.finfo(np.float32).max)
NOT_LEARNABLE = "is not a number hydranet can learn from (NaN/empty means missing)"


def first_out_of_range(values: np.ndarray) -> tuple[tuple[int, ...], float] | None:
    """(index, value) of the first ±inf or beyond-float32 number, in row-major order; None if there is none.

    NaN is missing, not out of range. Text holds categories, not numbers, so its "inf" is a category name.
    """
    numbers = _numbers(np.asarray(values))
    if numbers is None:
        return None
    bad = np.isinf(numbers) if numbers.dtype.itemsize <= 4 else np.abs(numbers) > FLOAT32_MAX  # NaN compares False
    if not bad.any():
        return None
    index = np.unravel_index(int(bad.argmax()), bad.shape)
    return tuple(int(i) for i in index), float(numbers[index])


def reject_out_of_range(where: str, arrays: Mapping[str, np.ndarray], place: Callable[[str, tuple[int, ...]], str]) -> None:
    """UserError for the first out-of-range value of any array: `where: place(name, index): value is not …`."""
    for name, values in arrays.items():
        found = first_out_of_range(values)
        if found is not None:
            index, value = found
            raise UserError(f"{where}: {place(name, index)}: {value:g} {NOT_LEARNABLE}")


def table_row(column: str, index: tuple[int, ...]) -> str:
    """A table cell as a user finds it: rows count from 1 below the header (CSV line = row + 1)."""
    return f"column {column!r} row {index[0] + 1} (counting from 1 below the header)"


def array_item(name: str, index: tuple[int, ...]) -> str:
    """An array element as NumPy indexes it (from 0): `x[16, 3]`."""
    return f"{name}[{', '.join(map(str, index))}]"


def _numbers(values: np.ndarray) -> np.ndarray | None:
    """The floats to check; None for what cannot hold an out-of-range number: integers and bools always fit, and
    text is categories (the table sources already read a text column of numbers as numbers, see `clean`).

    An object array holding any string counts as text; the test stops at the first string, so a text column costs
    next to nothing (parsing it as numbers would take a quarter second per 50,000 rows)."""
    if values.dtype.kind == "f":
        return values
    if values.dtype.kind != "O" or any(isinstance(v, (str, bytes)) for v in values.flat):
        return None
    return pd.to_numeric(pd.Series(values.ravel()), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan).reshape(values.shape)
