"""Request bodies → model inputs, through `predict`'s own reading and checks, so a row or an image is prepared
exactly as `hydranet predict` prepares it from a file. Every problem is a UserError naming the field, row or column.

Table runs take JSON `{"rows": [{column: value, …}, …]}`, text runs the same with their text columns holding
strings (tokenized with the run's tokenizer); image runs take multipart uploads (any field name) or JSON
`{"images": ["<base64>", …]}`; numeric-sequence runs JSON `{"sequences": [[[f1, …, fF], …], …]}` (each sequence
a list of steps of the trained F numbers, up to the trained T steps, padded and standardized as `predict` does). A
body's shape is checked on the event loop (`table_body`, `image_json_request`, `sequence_body`); decoding images,
cleaning rows and standardizing sequences (`image_pixels`, `table_rows`, `sequence_inputs`) is done per request in
the batcher's thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from hydranet.data import DataInfo, to_model_inputs
from hydranet.data.build import text_inputs
from hydranet.data.info import TEXT
from hydranet.data.sequences import padded_series
from hydranet.data.sources.table import clean
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.predict import checked_table, decoded_images
from hydranet.serve.onerow import encode_rows

JSON = "application/json"
MULTIPART = "multipart/form-data"


def input_columns(info: DataInfo) -> list[str]:
    """The raw columns a table run reads, in the encoder's order; a text run's text columns."""
    if info.kind == TEXT:
        return list(info.features)
    return [c["name"] for c in TableEncoder.from_state(info.encoder).columns]


def parse_json(body: bytes) -> Any:
    """JSON text → value; NaN and Infinity literals (Python's json reads them) stay floats for the row checks."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"body: not valid JSON ({err})") from None


@dataclass
class TableRows:
    """One request's checked table rows: `rows` (cleaned, as dicts: what the drift window keeps) and either their
    model inputs `encoded` (plain-Python rows, encoded by `onerow`) or the cleaned `frame` (encoded by the batcher
    together with the other frames of its batch: pandas' encoding costs about the same for 1 row as 64)."""

    rows: list[dict[str, Any]]
    encoded: torch.Tensor | None = None
    frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.rows)


def table_request(info: DataInfo, body: Any, sensitive: Sequence[str] = ()) -> TableRows:
    """`{"rows": [...]}` → the cleaned rows of the trained columns, checked as `predict` checks a table: the
    server's two steps, `table_body` then `table_rows`, in one."""
    return table_rows(info, table_body(info, body, sensitive), sensitive)


def table_body(info: DataInfo, body: Any, sensitive: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of `{"rows": [...]}`, each an object with exactly the trained columns (and, for a run with fairness
    thresholds, its `sensitive` columns, which decide the thresholded tasks) holding numbers, strings or nulls.
    Cheap checks of the body's shape, done on the event loop before a request joins a batch."""
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list) or set(body) != {"rows"}:
        raise UserError('body: expected a JSON object {"rows": [{column: value, …}, …]} and nothing else')
    if not rows:
        raise UserError("rows: the list is empty (expected at least one row)")
    columns = request_columns(info, sensitive)
    texts = list(info.features) if info.kind == TEXT else []
    for i, row in enumerate(rows):
        check_row(row, i, columns, texts)
    return rows


def table_rows(info: DataInfo, rows: list[dict[str, Any]], sensitive: Sequence[str] = ()) -> TableRows:
    """Checked rows (`table_body`) cleaned and checked as `predict` cleans a file's: on `onerow`'s plain-Python path
    when it can (same result, no pandas), else with pandas, which words every error. A run with fairness
    thresholds keeps the frame (they read the sensitive columns from it). Texts are joined and tokenized as
    `predict` does (`text_inputs`: an empty text is refused with its row)."""
    if info.kind == TEXT:  # cleaned as predict cleans a file ("NA", "?" and "" are missing); thresholds read the frame
        frame = clean(pd.DataFrame(rows, columns=request_columns(info, sensitive)), "rows")
        return TableRows(rows, encoded=text_inputs(info, frame, "rows"), frame=frame if sensitive else None)
    fast = encode_rows(info, rows) if not sensitive else None
    if fast is not None:
        return TableRows(*fast)
    frame = checked_frame(info, rows, request_columns(info, sensitive))
    return TableRows(frame.to_dict("records"), frame=frame)


def request_columns(info: DataInfo, sensitive: Sequence[str] = ()) -> list[str]:
    """The columns each row of a request holds: the trained ones, then the sensitive ones not among them."""
    return list(dict.fromkeys([*input_columns(info), *sensitive]))


def checked_frame(info: DataInfo, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The pandas path: checked rows as a table, cleaned and checked as `predict` cleans and checks a file's."""
    # Columns typed as read_csv types a file's (numbers stay numbers, so a number in a text column is "5", not the
    # "5.0" of parsing text back), and only text columns cost `clean` its pandas string work.
    return checked_table(info, clean(pd.DataFrame(rows, columns=columns), "rows"), "rows")


def encode_table_rows(info: DataInfo, requests: Sequence[TableRows]) -> torch.Tensor:
    """The model inputs of the requests' rows, in order: encoded ones as they are, frames in one encoding."""
    frames = [request.frame for request in requests if request.encoded is None]
    encoded = iter(to_model_inputs(info, frame=pd.concat(frames, ignore_index=True)).split([len(f) for f in frames])
                   if frames else ())
    return torch.cat([request.encoded if request.encoded is not None else next(encoded) for request in requests])


def check_row(row: Any, i: int, columns: list[str], texts: Sequence[str] = ()) -> None:
    """One row: an object with exactly the trained columns, each a number, a string or null (missing); the `texts`
    columns (of a text run), a string or null."""
    where = f"rows: row {i + 1} (counting from 1)"
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected an object {{column: value, …}}, got {type(row).__name__}")
    expected = f"expected the columns {', '.join(columns)}"
    missing = [c for c in columns if c not in row]
    if missing:
        raise UserError(f"{where}: no column {', '.join(map(repr, missing))} ({expected}; null for a missing value)")
    extra = [c for c in row if c not in columns]
    if extra:
        raise UserError(f"{where}: column {', '.join(map(repr, extra))} is not an input of this model ({expected})")
    for name, value in row.items():
        if name in texts and not (value is None or isinstance(value, str)):
            raise UserError(f"{where}: column {name!r}: expected a text (a JSON string) or null, got "
                            f"{type(value).__name__}")
        if not (value is None or isinstance(value, (str, int, float))):
            raise UserError(f"{where}: column {name!r}: expected a number, a string or null, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{where}: column {name!r}: {value} is not a finite number (null marks a missing value)")


ImageFiles = list[tuple[str, bytes]]  # one request's image files: (name, the file's bytes)


def image_json_request(body: Any) -> ImageFiles:
    """`{"images": ["<base64>", …]}` → the image files."""
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list) or set(body) != {"images"}:
        raise UserError('body: this run was trained on images; expected {"images": ["<base64 image file>", …]} '
                        'or a multipart upload of image files')
    if not images:
        raise UserError("images: the list is empty (expected at least one image)")
    return [(f"images[{i}]", from_base64(item, i)) for i, item in enumerate(images)]


def from_base64(item: Any, i: int) -> bytes:
    if not isinstance(item, str):
        raise UserError(f"images[{i}]: expected a base64 string, got {type(item).__name__}")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"images[{i}]: not base64 (expected the image file's bytes in standard base64)") from None


def uploaded_images(items: ImageFiles) -> ImageFiles:
    """The files of a multipart upload, refused when there are none."""
    if not items:
        raise UserError("images: no image files in the upload (expected one or more files)")
    return items


def image_pixels(info: DataInfo, items: ImageFiles) -> torch.Tensor:
    """One request's image files decoded and resized as `predict` does: uint8 (N, C, H, W), normalized later with
    the whole batch's."""
    return decoded_images(info, items, "images")


def sequence_body(info: DataInfo, body: Any) -> list[list[list[int | float]]]:
    """The sequences of `{"sequences": [...]}`, each a non-empty list of at most the trained T steps, each step a
    list of exactly the trained F numbers (finite; no booleans). Checked on the event loop, named by sequence and
    step (counting from 0, as the lists are indexed)."""
    sequences = body.get("sequences") if isinstance(body, dict) else None
    if not isinstance(sequences, list) or set(body) != {"sequences"}:
        raise UserError('body: this run was trained on numeric sequences; expected a JSON object {"sequences": '
                        '[[[f1, …, fF], …], …]} (per sequence a list of steps, per step its features) and nothing else')
    if not sequences:
        raise UserError("sequences: the list is empty (expected at least one sequence)")
    steps, width = info.input_shape[0], info.input_shape[1] - 1
    for i, sequence in enumerate(sequences):
        where = f"sequences[{i}]"
        if not isinstance(sequence, list) or not sequence:
            got = "an empty list" if sequence == [] else type(sequence).__name__
            raise UserError(f"{where}: expected a non-empty list of steps (each a list of {width} numbers), got {got}")
        if len(sequence) > steps:
            raise UserError(f"{where}: {len(sequence)} steps; this model was trained on sequences of at most {steps}")
        for t, step in enumerate(sequence):
            check_step(step, f"{where}[{t}]", width)
    return sequences


def check_step(step: Any, where: str, width: int) -> None:
    """One step: a list of `width` finite JSON numbers."""
    if not isinstance(step, list) or len(step) != width:
        got = f"a list of {len(step)}" if isinstance(step, list) else type(step).__name__
        raise UserError(f"{where}: expected a list of {width} numbers (the trained features of a step), got {got}")
    for f, value in enumerate(step):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}[{f}]: expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise UserError(f"{where}[{f}]: {value} is not a finite number")


def sequence_inputs(info: DataInfo, sequences: list[list[list[int | float]]]) -> torch.Tensor:
    """Checked sequences (`sequence_body`) → model inputs (N, T, F + 1): padded to the trained T with their lengths
    and standardized, as `predict` reads an .npz of them."""
    steps, width = info.input_shape[0], info.input_shape[1] - 1
    values = np.zeros((len(sequences), steps, width), dtype=np.float64)
    for i, sequence in enumerate(sequences):
        values[i, :len(sequence)] = np.asarray(sequence, dtype=np.float64)
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    return to_model_inputs(info, series=padded_series(values, lengths, "sequences"))
