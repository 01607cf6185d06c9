"""The server in-process (fastapi's TestClient, no sockets): answers equal `hydranet predict`'s, every bad request
gets its 4xx with a message naming the problem and the next good request still gets its answer, the key, metadata,
metrics and drift."""

import asyncio
import base64
import json
import os

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.export.exportruns import table_frame
from tests.serve.servehelpers import FEATURES, GOOD, assert_same_as_predict, json_rows, png

from hydranet.data.sources.table import read_table
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.predict import checked_table
from hydranet.rundir import RunDir
from hydranet.serve.app import create_app
from hydranet.serve.backend import current_export, is_current_export
from hydranet.serve.inputs import table_request
from hydranet.serve.settings import ServeSettings
from hydranet.serve.window import MIN_ROWS
from hydranet.train import load_run

SMALL_BODY_MB = 0.01  # 10 KiB: enough for the test requests, easy to pass on purpose


def client(run_dir, **settings) -> TestClient:
    return TestClient(create_app(load_run(run_dir), ServeSettings(max_body_mb=SMALL_BODY_MB, **settings)))


@pytest.fixture(scope="module")
def table(table_run):
    with client(table_run) as c:
        yield c


@pytest.fixture(scope="module")
def rows():
    frame = table_frame(12, seed=5)
    frame.loc[3, "color"] = "?"  # a missing marker and an empty cell, as a CSV holds them
    return frame


def columns(c: TestClient) -> dict[str, str]:
    return {task: meta["column"] for task, meta in c.get("/metadata").json()["tasks"].items()}


def test_answers_equal_predict(table, table_run, rows, cli, tmp_path):
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert cli("predict", table_run, tmp_path / "rows.csv", "-o", tmp_path / "predictions.csv")[0] == 0
    response = table.post("/predict", json={"rows": json_rows(rows)})
    assert response.status_code == 200
    assert_same_as_predict(response.json()["predictions"], tmp_path / "predictions.csv", columns(table))


def test_concurrent_table_requests_are_checked_alone_and_encoded_once(table, table_run, rows, monkeypatch):
    """Four requests in one batch (it closes at max_batch rows, never by the clock): one pandas encoding for all,
    each answer what the request gets alone, and the request with a bad row refused alone, naming its row."""
    bodies = [{"rows": json_rows(rows.iloc[i:i + 3])} for i in range(0, 9, 3)]
    for body in bodies:  # a number as text: the pandas path, whose encoding is done once per batch
        body["rows"][0]["x2"] = f" {body['rows'][0]['x2'] or 50}"
    bad = {"rows": [GOOD, {**GOOD, "x2": "many"}]}
    alone = [table.post("/predict", json=body).json()["predictions"] for body in bodies]
    app = create_app(load_run(table_run), ServeSettings(max_batch=11, max_wait_ms=3_600_000))
    encodings = []  # rows per encoding, counted once the app (and its drift reference) is ready
    transform = TableEncoder.transform
    monkeypatch.setattr(TableEncoder, "transform", lambda self, frame: encodings.append(len(frame))
                        or transform(self, frame))

    async def together():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
                return await asyncio.gather(*(c.post("/predict", json=body) for body in [*bodies, bad]))

    *answers, refused = asyncio.run(together())
    assert encodings == [9]  # the three good requests' rows at once; the bad one's rows never reach the encoder
    assert [a.json()["predictions"] for a in answers] == alone
    assert refused.status_code == 422 and "'x2' row 2" in refused.json()["detail"]


def test_rows_are_read_as_predict_reads_a_csv_of_them(table_run, tmp_path):
    """JSON numbers stay numbers, as read_csv reads them: a number in a text column is the category "5", not the
    "5.0" that reading every cell as text and then parsing it would make."""
    rows = [{**GOOD, "color": 5}, {**GOOD, "color": 7, "x2": None}]
    pd.DataFrame(rows).to_csv(tmp_path / "rows.csv", index=False)
    info = load_run(table_run).info
    from_csv = checked_table(info, read_table(tmp_path / "rows.csv", "csv"), "rows.csv")[FEATURES]
    pd.testing.assert_frame_equal(table_request(info, {"rows": rows}).frame, from_csv)


def test_onnx_backend_answers_as_torch(table, table_run, rows):
    body = {"rows": json_rows(rows)}
    with client(table_run, backend="onnx") as onnx:
        assert onnx.get("/metadata").json()["backend"] == "onnx"
        by_onnx = onnx.post("/predict", json=body).json()["predictions"]
        options = onnx.app.state.service.backend.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (torch.get_num_threads(), 1)
    by_torch = table.post("/predict", json=body).json()["predictions"]
    for mine, theirs in zip(by_onnx, by_torch):
        for task in theirs:
            assert mine[task].keys() == theirs[task].keys()
            for key, value in theirs[task].items():
                if isinstance(value, float):
                    assert mine[task][key] == pytest.approx(value, abs=1e-4)
                elif isinstance(value, dict):
                    assert mine[task][key] == pytest.approx(value, abs=1e-4)
                else:
                    assert mine[task][key] == value


BAD_JSON = [  # (body, the words the answer must contain)
    ({"rows": [{"x1": 0.5, "x2": 51.0}]}, "no column 'color'"),
    ({"rows": [{**GOOD, "shoe": 42}]}, "column 'shoe' is not an input"),
    ({"rows": [GOOD, {**GOOD, "x2": "tall"}]}, "column 'x2' row 2"),
    ({"rows": [{**GOOD, "x1": [1]}]}, "column 'x1': expected a number, a string or null, got list"),
    ({"rows": []}, "rows: the list is empty"),
    ({"rows": [GOOD, 7]}, "row 2 (counting from 1): expected an object"),
    ({"rows": {"x1": 1}}, '{"rows": [{column: value'),
    ([GOOD], '{"rows": [{column: value'),
]
BAD_TEXT = [
    ('{"rows": [{"x1": NaN, "x2": 1, "color": "red"}]}', "column 'x1': nan is not a finite number"),
    ('{"rows": [{"x1": 1, "x2": -Infinity, "color": "red"}]}', "column 'x2': -inf is not a finite number"),
    ('{"rows": [{"x1": 1e39, "x2": 1, "color": "red"}]}', "column 'x1' row 1"),  # beyond float32, as training refuses
    ('{"rows": [', "body: not valid JSON"),
]


def assert_still_serving(c: TestClient) -> None:
    response = c.post("/predict", json={"rows": [GOOD]})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


@pytest.mark.parametrize("body, words", BAD_JSON)
def test_malformed_rows_are_422_naming_the_problem(table, body, words):
    response = table.post("/predict", json=body)
    assert response.status_code == 422 and words in response.json()["detail"], response.json()
    assert_still_serving(table)


@pytest.mark.parametrize("text, words", BAD_TEXT)
def test_non_finite_numbers_and_broken_json_are_422(table, text, words):
    response = table.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422 and words in response.json()["detail"], response.json()
    assert_still_serving(table)


def test_wrong_content_type_is_415(table):
    response = table.post("/predict", content="x1,x2,color\n1,2,red\n", headers={"content-type": "text/csv"})
    assert response.status_code == 415 and "text/csv" in response.json()["detail"]
    assert table.post("/predict", files={"images": ("a.png", b"...")}).status_code == 415  # a table run takes JSON
    assert_still_serving(table)


def test_body_over_the_limit_is_413_declared_or_streamed(table):
    big = json.dumps({"rows": [GOOD] * 400}).encode()
    assert len(big) > SMALL_BODY_MB * 2 ** 20
    response = table.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "--max-body-mb" in response.json()["detail"]
    chunks = (big[i:i + 1000] for i in range(0, len(big), 1000))  # no Content-Length: counted while read
    assert table.post("/predict", content=chunks, headers={"content-type": "application/json"}).status_code == 413
    assert_still_serving(table)


def test_key_is_required_when_set(table_run, monkeypatch):
    monkeypatch.setenv("SERVE_TEST_KEY", "s3cret")
    with client(table_run, api_key_env="SERVE_TEST_KEY") as c:
        assert c.get("/health").status_code == 200  # probes need no key
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}):
            assert c.post("/predict", json={"rows": [GOOD]}, headers=headers).status_code == 401
            assert c.get("/metadata", headers=headers).status_code == 401
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
            assert c.post("/predict", json={"rows": [GOOD]}, headers=headers).status_code == 200
        assert 'hydranet_errors_total{endpoint="/predict",reason="unauthorized"} 3.0' in \
            c.get("/metrics", headers={"X-API-Key": "s3cret"}).text


def test_settings_are_checked_before_the_run_loads(monkeypatch, cli, table_run):
    monkeypatch.delenv("SERVE_UNSET_KEY", raising=False)
    with pytest.raises(UserError, match="SERVE_UNSET_KEY is not set"):
        ServeSettings(api_key_env="SERVE_UNSET_KEY")
    code, _, err = cli("serve", table_run, "--workers", "0")
    assert code == 2 and err.startswith("error: --workers: expected at least 1, got 0")
    code, _, err = cli("serve", table_run, "--backend", "tensorrt")
    assert code == 2 and "--backend: 'tensorrt'" in err


def test_health_and_metadata(table):
    assert table.get("/health").json() == {"ok": True, "model_loaded": True, "backend": "torch"}
    meta = table.get("/metadata").json()
    assert meta["tasks"]["grade"] == {"kind": "classification", "classes": ["high", "low", "mid"], "column": "grade"}
    assert meta["tasks"]["kind"]["column"] == "kind_p(up)"
    assert {c["name"]: c["kind"] for c in meta["input"]["columns"]} == {"x1": "numeric", "x2": "numeric",
                                                                         "color": "categorical"}
    assert meta["batching"] == {"max_batch": 64, "max_wait_ms": 5.0} and len(meta["run"]) >= 16
    assert "/predict" in table.get("/openapi.json").json()["paths"] and table.get("/docs").status_code == 200


def test_metrics_count_requests_errors_batches_and_classes(table_run):
    with client(table_run) as c:
        c.post("/predict", json={"rows": [GOOD, GOOD]})
        c.post("/predict", json={"rows": []})
        text = c.get("/metrics").text
    assert 'hydranet_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert 'hydranet_errors_total{endpoint="/predict",reason="invalid_input"} 1.0' in text
    assert "hydranet_batch_rows_count 1.0" in text and "hydranet_batch_rows_sum 2.0" in text
    assert 'hydranet_request_seconds_count{endpoint="/predict"} 2.0' in text
    counts = [sample for family in text_string_to_metric_families(text) if family.name == "hydranet_predictions"
              for sample in family.samples if sample.name.endswith("_total")]
    assert sum(s.value for s in counts if s.labels["task"] == "grade") == 2.0  # two rows, one class each
    assert {s.labels["label"] for s in counts if s.labels["task"] == "kind"} <= {"down", "up"}


def test_drift_waits_for_enough_rows_then_reports_features_and_tasks(table_run):
    with client(table_run, window=50) as c:
        early = c.get("/drift").json()
        assert early == {"ready": False, "rows": 0, "needed": MIN_ROWS,
                         "message": f"0 rows answered so far; drift needs at least {MIN_ROWS}"}
        shifted = table_frame(60, seed=9)
        shifted["x2"] = shifted["x2"] + 40  # far outside the train split's x2
        c.post("/predict", json={"rows": json_rows(shifted)})
        report = c.get("/drift").json()
        text = c.get("/metrics").text
    assert report["ready"] and report["rows"] == 50  # the window keeps the last 50
    assert report["features"]["features"][0]["feature"] == "x2" and report["features"]["features"][0]["drift"]
    assert {t["feature"] for t in report["predictions"]["tasks"]} == {"size", "grade", "tags", "kind_p(up)"}
    assert 'hydranet_drifted{kind="feature",name="x2"} 1.0' in text


def test_drift_of_an_image_run_compares_channel_statistics(digits_run):
    """As `hydranet monitor RUN images/` does: white images move the channel's mean and std far from the digits'."""
    white = base64.b64encode(png(np.full((8, 8), 255, np.uint8))).decode()
    with client(digits_run) as c:
        c.post("/predict", json={"images": [white] * MIN_ROWS})
        report = c.get("/drift").json()
        text = c.get("/metrics").text
    features = {f["feature"]: f["drift"] for f in report["features"]["features"]}
    assert features == {"mean_c0": True, "std_c0": True} and report["predictions"]["tasks"]
    assert 'hydranet_drifted{kind="feature",name="mean_c0"} 1.0' in text


def test_image_run_takes_uploads_and_base64_as_predict_does(digits_run, cli, tmp_path):
    rng = np.random.default_rng(0)
    files = {f"{i}.png": png(rng.integers(0, 256, (8 + 4 * i, 8 + 4 * i), dtype=np.uint8)) for i in range(3)}  # resized
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert cli("predict", digits_run, *[tmp_path / n for n in files], "-o", tmp_path / "predictions.csv")[0] == 0
    with client(digits_run) as c:
        names = columns(c)
        uploaded = c.post("/predict", files=[("images", (n, d, "image/png")) for n, d in files.items()])
        encoded = c.post("/predict", json={"images": [base64.b64encode(d).decode() for d in files.values()]})
        for response in (uploaded, encoded):
            assert response.status_code == 200, response.json()
            assert_same_as_predict(response.json()["predictions"], tmp_path / "predictions.csv", names)
        bad = [(c.post("/predict", files=[("images", ("x.png", b"not an image", "image/png"))]), "x.png: not a readable image"),
               (c.post("/predict", json={"images": ["***"]}), "images[0]: not base64"),
               (c.post("/predict", json={"rows": [GOOD]}), "this run was trained on images")]
        for response, words in bad:
            assert response.status_code == 422 and words in response.json()["detail"]
            assert c.post("/predict", json={"images": [base64.b64encode(files["0.png"]).decode()]}).status_code == 200
        assert c.get("/drift").json()["rows"] == 3 + 3 + 3
        c.post("/predict", json={"images": [base64.b64encode(files["1.png"]).decode()] * MIN_ROWS})
        drift = c.get("/drift").json()
    assert drift["ready"] and drift["features"]["current_rows"] == drift["rows"]  # pixel features, per image
    assert {t["feature"] for t in drift["predictions"]["tasks"]} == set(names.values())


def test_a_broken_image_in_a_batch_is_refused_alone(digits_run):
    """Images are decoded in the batcher's thread, request by request: a broken one gets its own 422 and the others
    of its batch the answers they get alone (within float rounding: the model's batch differs)."""
    rng = np.random.default_rng(2)
    bodies = [{"images": [base64.b64encode(png(rng.integers(0, 256, (8, 8), dtype=np.uint8))).decode()] * n}
              for n in (1, 2, 3)]
    broken = {"images": [bodies[0]["images"][0], base64.b64encode(b"not an image").decode()]}
    with client(digits_run) as c:
        alone = [c.post("/predict", json=body).json()["predictions"] for body in bodies]
    app = create_app(load_run(digits_run), ServeSettings(max_batch=8, max_wait_ms=3_600_000))  # closes at 8 rows

    async def together():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
                return await asyncio.gather(*(c.post("/predict", json=body) for body in [*bodies, broken]))

    *answers, refused = asyncio.run(together())
    assert_close([a.json()["predictions"] for a in answers], alone)  # a CNN's batch of 6 rounds apart from 1
    assert refused.status_code == 422 and "images[1]: not a readable image" in refused.json()["detail"]


def assert_close(got, expected, tol: float = 1e-6) -> None:
    """Equal JSON values, numbers within `tol`."""
    if isinstance(expected, float):
        assert got == pytest.approx(expected, abs=tol)
    elif isinstance(expected, (list, dict)):
        assert len(got) == len(expected) and type(got) is type(expected)
        for key in (expected if isinstance(expected, dict) else range(len(expected))):
            assert_close(got[key], expected[key], tol)
    else:
        assert got == expected


def test_onnx_backend_exports_again_when_the_export_is_older_than_the_weights(table_run):
    run = load_run(table_run)
    folder = current_export(run)  # exported now unless an earlier test did
    weights = RunDir.open(table_run)
    assert is_current_export(folder, weights)
    exported = (folder / "model.onnx").stat().st_mtime
    before = weights.model.stat()
    try:
        os.utime(weights.model, (before.st_atime, exported + 10))  # the weights changed after the export
        assert not is_current_export(folder, weights)
    finally:
        os.utime(weights.model, (before.st_atime, before.st_mtime))
    outputs = json.loads((folder / "outputs.json").read_text())
    (folder / "outputs.json").write_text(json.dumps({**outputs, "run": "another run"}))
    try:
        assert not is_current_export(folder, weights)
        with pytest.raises(UserError, match="holds the export of another run"):
            current_export(run)  # refused, nothing overwritten
    finally:
        (folder / "outputs.json").write_text(json.dumps(outputs))
