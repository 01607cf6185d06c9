"""Helpers of the server tests: JSON rows from a table, and answers compared with `hydranet predict`'s CSV."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

FEATURES = ["x1", "x2", "color"]  # the input columns of exportruns' table run
GOOD = {"x1": 0.5, "x2": 51.0, "color": "red"}  # one valid row


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def json_rows(frame: pd.DataFrame) -> list[dict]:
    """The feature columns as /predict's rows: NaN becomes null, '?' stays the text a CSV would hold."""
    return json.loads(frame[FEATURES].to_json(orient="records"))


def decided(answer: dict, separator: str = "|"):
    """What `hydranet predict` writes for one task's answer: the value, the positive class's probability, the
    class, or the labels joined."""
    for key in ("value", "probability", "label"):
        if key in answer:
            return answer[key]
    return separator.join(answer["labels"])


def assert_same_as_predict(answers: list[dict], predictions_csv: Path, columns: dict[str, str], tol: float = 1e-6):
    """Each answer equals the CSV's row: numbers within `tol` (float32 printed), text exactly. `columns`: task →
    the CSV column (/metadata's `column`)."""
    expected = pd.read_csv(predictions_csv, dtype=str, keep_default_na=False)
    assert len(answers) == len(expected)
    for row, answer in zip(expected.to_dict("records"), answers):
        for task, column in columns.items():
            got = decided(answer[task])
            if isinstance(got, float):
                assert got == pytest.approx(float(row[column]), rel=tol, abs=tol), (task, row)
            else:
                assert got == row[column], (task, row)
