"""Serving a text run: JSON rows of its text columns, tokenized with the run's tokenizer and batched as table rows
are, answered as `hydranet predict` answers a CSV of them on both backends; a missing text column or a value that
is not a string is a 422 naming it; /metadata lists the text columns; /drift compares the texts' lengths and
share of unknown tokens with the train texts'."""

import asyncio

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.export.exportruns import text_frame
from tests.serve.servehelpers import assert_same_as_predict

from hydranet.serve.app import create_app
from hydranet.serve.settings import ServeSettings
from hydranet.serve.window import MIN_ROWS
from hydranet.train import load_run

COLUMNS = {"topic": "topic", "words": "words"}  # task → predict's column
GOOD = {"title": "alpha", "body": "beta gamma"}


def text_rows(n: int, seed: int) -> list[dict]:
    """Rows of 1 to 11 words; a one-word text has no body (null)."""
    frame = text_frame(n, seed)[["title", "body"]].astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


@pytest.fixture(scope="module")
def served(text_run):
    with TestClient(create_app(load_run(text_run), ServeSettings(window=40))) as c:
        yield c


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_batched_text_requests_answer_as_predict(backend, text_run, cli, tmp_path):
    """Three requests gathered into one batch (it closes at max_batch rows, never by the clock), each answered as
    predict answers a CSV of its rows."""
    bodies = [{"rows": text_rows(4, seed)} for seed in (1, 2, 3)]
    bodies[0]["rows"][1]["body"] = "NA"  # a missing marker: predict's cleaning reads it as missing, so must serving
    bodies[1]["rows"][2]["body"] = "?"
    app = create_app(load_run(text_run), ServeSettings(backend=backend, max_batch=12, max_wait_ms=3_600_000))

    async def together():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as c:
                return await asyncio.gather(*(c.post("/predict", json=body) for body in bodies))

    for i, (body, answer) in enumerate(zip(bodies, asyncio.run(together()))):
        assert answer.status_code == 200, answer.text
        pd.DataFrame(body["rows"]).to_csv(tmp_path / f"texts{i}.csv", index=False)
        assert cli("predict", text_run, tmp_path / f"texts{i}.csv", "-o", tmp_path / f"predicted{i}.csv")[0] == 0
        assert_same_as_predict(answer.json()["predictions"], tmp_path / f"predicted{i}.csv", COLUMNS, tol=1e-4)


@pytest.mark.parametrize("row, words", [
    ({"title": "alpha"}, "row 1 (counting from 1): no column 'body'"),
    ({**GOOD, "body": 42}, "column 'body': expected a text (a JSON string) or null, got int"),
    ({**GOOD, "title": ["alpha"]}, "column 'title': expected a text (a JSON string) or null, got list"),
    ({"title": " ", "body": None}, "rows: row 1 has no text in column(s) 'title', 'body'"),
])
def test_a_missing_text_column_or_a_non_string_is_422_naming_it(served, row, words):
    response = served.post("/predict", json={"rows": [row]})
    assert response.status_code == 422 and words in response.json()["detail"], response.json()
    assert served.post("/predict", json={"rows": [GOOD]}).status_code == 200


def test_metadata_lists_the_text_columns(served):
    schema = served.get("/metadata").json()["input"]
    assert (schema["kind"], schema["columns"], schema["max_length"]) == ("text", ["title", "body"], 10)


def test_drift_compares_text_lengths_and_unknown_tokens(served):
    unknown = [{"title": "zzz qqq", "body": "xxyy wwvv"}] * MIN_ROWS  # words the tokenizer never saw
    served.post("/predict", json={"rows": unknown})
    features = {f["feature"]: f["drift"] for f in served.get("/drift").json()["features"]["features"]}
    assert features == {"tokens": True, "unknown_rate": True}
