"""One-row table requests on `onerow`'s plain-Python path: the same model inputs as the pandas path (clean,
checked_table, TableEncoder), the same answers as `hydranet predict` on a CSV of the rows, and the same error
messages for bad rows; rows the path does not read go the pandas way."""

import math

import pandas as pd
import pytest
import torch
from tests.export.exportruns import table_frame
from tests.serve.servehelpers import FEATURES, assert_same_as_predict, json_rows
from tests.serve.test_app import client, columns

from hydranet.data import to_model_inputs
from hydranet.data.sources.table import clean
from hydranet.predict import checked_table
from hydranet.serve.inputs import encode_table_rows, table_request
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


def pandas_path(info, row: dict) -> tuple[pd.DataFrame, torch.Tensor]:
    frame = checked_table(info, clean(pd.DataFrame([row], columns=FEATURES), "rows"), "rows")
    return frame, to_model_inputs(info, frame=frame)


def test_one_row_requests_skip_pandas_with_the_same_inputs_and_rows(info):
    for row in [*plain_rows(), *FAST, *PANDAS_WAY]:
        request, (frame, expected) = table_request(info, {"rows": [row]}), pandas_path(info, row)
        assert (request.encoded is not None) == (row not in PANDAS_WAY), row
        assert torch.equal(encode_table_rows(info, [request]), expected), row
        for got, want in zip(request.rows[0].values(), frame.to_dict("records")[0].values()):
            assert got == want or (math.isnan(got) and math.isnan(want)), row  # what the drift window keeps


def test_one_row_answers_and_errors_equal_predict(table_run, cli, tmp_path):
    rows = [*plain_rows(), *FAST, *PANDAS_WAY]
    pd.DataFrame(rows, columns=FEATURES).to_csv(tmp_path / "rows.csv", index=False)
    assert cli("predict", table_run, tmp_path / "rows.csv", "-o", tmp_path / "predictions.csv")[0] == 0
    with client(table_run) as c:
        answers = [c.post("/predict", json={"rows": [row]}).json()["predictions"][0] for row in rows]
        assert_same_as_predict(answers, tmp_path / "predictions.csv", columns(c))
        for i, row in enumerate(BAD):
            pd.DataFrame([row], columns=FEATURES).to_csv(tmp_path / f"bad{i}.csv", index=False)
            code, _, err = cli("predict", table_run, tmp_path / f"bad{i}.csv", "-o", tmp_path / f"bad{i}.out.csv")
            refused = c.post("/predict", json={"rows": [row]})
            assert code == 2 and refused.status_code == 422
            # the same message after the place: `rows` here, the file there
            assert refused.json()["detail"].split(": ", 1)[1] == err.strip().split(": ", 2)[2]
