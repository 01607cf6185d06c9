"""Table requests on `onerow`'s plain-Python path: the same model inputs as the pandas path (clean, checked_table,
TableEncoder), for one row and for several, the same answers as `hydranet predict` on a CSV of the rows, and the
same error messages for bad rows; rows the path does not read (and requests of more than MAX_ROWS rows) go the
pandas way."""

import math

import pandas as pd
import pytest
import torch
from tests.export.exportruns import KINDS_TABLE, table_frame
from tests.serve.servehelpers import FEATURES, assert_same_as_predict, json_rows
from tests.serve.test_app import client, columns

from hydranet.config import validate
from hydranet.data import build_dataset, to_model_inputs
from hydranet.data.sources.table import clean
from hydranet.predict import checked_table
from hydranet.serve.inputs import encode_table_rows, table_request
from hydranet.serve.onerow import MAX_ROWS
from hydranet.train import load_run

FAST = [{"x1": 1, "x2": 50, "color": "red"},  # JSON integers
        {"x1": 0.5, "x2": 51.0, "color": "  green "},  # text with spaces
        {"x1": -2.25, "x2": 49.5, "color": "purple"},  # a category training never saw
        {"x1": None, "x2": 51.0, "color": ""},  # missing values
        {"x1": 0.5, "x2": None, "color": "N/A"},  # a missing marker
        {"x1": 1e38, "x2": 51.0, "color": "blue"}]  # large, within float32
PANDAS_WAY = [{"x1": 0.5, "x2": " 52.5", "color": "red"},  # a number as text
              {"x1": 0.5, "x2": 51.0, "color": 5},  # a number in a text column
              {"x1": 0.5, "x2": 51.0, "color": "Infrared"}]  # text that might read as inf
BAD = [{"x1": 0.5, "x2": "many", "color": "red"}, {"x1": 1e39, "x2": 51.0, "color": "red"},
       {"x1": 0.5, "x2": "inf", "color": "red"}]


@pytest.fixture(scope="module")
def info(table_run):
    return load_run(table_run).info


def plain_rows() -> list[dict]:
    return json_rows(table_frame(30, seed=5))  # numbers, '?' and null cells


def pandas_path(info, *rows: dict) -> tuple[pd.DataFrame, torch.Tensor]:
    frame = checked_table(info, clean(pd.DataFrame(list(rows), columns=FEATURES), "rows"), "rows")
    return frame, to_model_inputs(info, frame=frame)


ENCODINGS = {
    "quantile, codes, indicators": {"numeric": "quantile", "categorical": "embedding", "missing_indicators": True},
    "robust, one-hot, indicators": {"numeric": "robust", "missing_indicators": True},
    "standard, codes": {"categorical": "embedding"},
}


@pytest.mark.parametrize("options", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_every_encoding_takes_the_one_row_path_with_the_pandas_inputs(options, tmp_path):
    """Quantile and robust scaling, missing indicators (x2 has gaps in train) and category codes: one row and
    several encode as the run's TableEncoder encodes them after pandas' checks, to the bit."""
    path = tmp_path / "train.csv"
    table_frame(200, seed=0).to_csv(path, index=False)
    config = validate({"data": {"source": "csv", "path": str(path), "encoder": {"name": "table", **options}},
                       "tasks": KINDS_TABLE, "model": {"trunk": {"name": "mlp"}}})
    info = build_dataset(config).info
    indicator, colors = int(options.get("missing_indicators", False)), 1 if options.get("categorical") else 3
    assert info.input_shape[0] == 2 + indicator + colors  # x1, x2 (and its indicator), color (code or one-hot)
    rows = [*plain_rows(), *FAST]
    for request_rows in ([[row] for row in rows] + [rows]):
        request, (frame, expected) = table_request(info, {"rows": request_rows}), pandas_path(info, *request_rows)
        assert request.encoded is not None, request_rows
        assert torch.equal(encode_table_rows(info, [request]), expected), request_rows
        assert_same_rows(request.rows, frame)


def assert_same_rows(got: list[dict], frame: pd.DataFrame) -> None:
    """The cleaned rows equal the pandas frame's (what the drift window keeps), NaN for NaN."""
    for mine, theirs in zip(got, frame.to_dict("records"), strict=True):
        for a, b in zip(mine.values(), theirs.values(), strict=True):
            assert a == b or (math.isnan(a) and math.isnan(b)), (mine, theirs)


def test_one_row_requests_skip_pandas_with_the_same_inputs_and_rows(info):
    for row in [*plain_rows(), *FAST, *PANDAS_WAY]:
        request, (frame, expected) = table_request(info, {"rows": [row]}), pandas_path(info, row)
        assert (request.encoded is not None) == (row not in PANDAS_WAY), row
        assert torch.equal(encode_table_rows(info, [request]), expected), row
        assert_same_rows(request.rows, frame)


def test_requests_of_several_rows_skip_pandas_with_the_same_inputs_and_rows(info):
    """Columns pandas types from several rows (ints beside floats and nulls, a numeric column all null, text beside
    missing markers) read as each cell alone; one cell the path does not read sends the whole request to pandas."""
    rows = [*plain_rows(), *FAST, {"x1": None, "x2": 50, "color": "?"}]
    for request_rows in (rows, FAST[3:5], [{"x1": None, "x2": None, "color": None}] * 3):
        request, (frame, expected) = table_request(info, {"rows": request_rows}), pandas_path(info, *request_rows)
        assert request.encoded is not None and request.frame is None
        assert torch.equal(encode_table_rows(info, [request]), expected)
        assert_same_rows(request.rows, frame)
    for odd in PANDAS_WAY:
        assert table_request(info, {"rows": [*FAST, odd]}).encoded is None
    assert table_request(info, {"rows": plain_rows()[:1] * (MAX_ROWS + 1)}).encoded is None


def test_one_row_answers_and_errors_equal_predict(table_run, cli, tmp_path):
    rows = [*plain_rows(), *FAST, *PANDAS_WAY]
    pd.DataFrame(rows, columns=FEATURES).to_csv(tmp_path / "rows.csv", index=False)
    assert cli("predict", table_run, tmp_path / "rows.csv", "-o", tmp_path / "predictions.csv")[0] == 0
    with client(table_run) as c:
        answers = [c.post("/predict", json={"rows": [row]}).json()["predictions"][0] for row in rows]
        assert_same_as_predict(answers, tmp_path / "predictions.csv", columns(c))
        several = c.post("/predict", json={"rows": rows[:len(rows) - len(PANDAS_WAY)]}).json()["predictions"]
        assert_same_as_predict(several + answers[-len(PANDAS_WAY):], tmp_path / "predictions.csv", columns(c))
        for i, row in enumerate(BAD):
            pd.DataFrame([row], columns=FEATURES).to_csv(tmp_path / f"bad{i}.csv", index=False)
            code, _, err = cli("predict", table_run, tmp_path / f"bad{i}.csv", "-o", tmp_path / f"bad{i}.out.csv")
            refused = c.post("/predict", json={"rows": [row]})
            assert code == 2 and refused.status_code == 422
            # the same message after the place: `rows` here, the file there
            assert refused.json()["detail"].split(": ", 1)[1] == err.strip().split(": ", 2)[2]
