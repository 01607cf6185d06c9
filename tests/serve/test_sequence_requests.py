"""Serving a numeric-sequence run: JSON sequences of variable length (steps of the trained F numbers), padded and
standardized as `hydranet predict` reads an .npz of them and answered as it answers, batched, on both backends; a
ragged step, a wrong number of features, too many steps or a value that is no number is a 422 naming it; /metadata
gives the most steps and the features; /drift compares the sequences' steps and per-feature means and stds with the
train sequences'."""

import asyncio

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.export.exportruns import train_sequence, write_series
from tests.serve.servehelpers import assert_same_as_predict

from hydranet.serve.app import create_app
from hydranet.serve.settings import ServeSettings
from hydranet.serve.window import MIN_ROWS
from hydranet.train import load_run

COLUMNS = {"label": "label", "value": "value"}  # task → predict's column
GOOD = [[5.0, 5.0], [6.0, 4.0]]  # one valid sequence: two steps of two features


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    """exportruns' sequence run (a bidirectional 2-layer lstm on sequences of 1 to 12 steps of 2 features)."""
    return train_sequence(tmp_path_factory.mktemp("serve-sequence"))


@pytest.fixture(scope="module")
def served(sequence_run):
    with TestClient(create_app(load_run(sequence_run), ServeSettings(window=40))) as c:
        yield c


def as_lists(path):
    """The sequences of an .npz as /predict takes them: each cut to its length, steps as lists of numbers."""
    arrays = np.load(path)
    return [arrays["x"][i, :length].tolist() for i, length in enumerate(arrays["lengths"])]


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])  # onnx: exports first
def test_batched_sequence_requests_answer_as_predict(backend, sequence_run, cli, tmp_path):
    """Three requests gathered into one batch (it closes at max_batch rows, never by the clock), each answered as
    predict answers an .npz of its sequences."""
    paths = [write_series(tmp_path / f"new{seed}.npz", 4, seed) for seed in (1, 2, 3)]
    app = create_app(load_run(sequence_run), ServeSettings(backend=backend, max_batch=12, max_wait_ms=3_600_000))

    async def together():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as c:
                return await asyncio.gather(*(c.post("/predict", json={"sequences": as_lists(p)}) for p in paths))

    for i, (path, answer) in enumerate(zip(paths, asyncio.run(together()))):
        assert answer.status_code == 200, answer.text
        assert cli("predict", sequence_run, path, "-o", tmp_path / f"predicted{i}.csv")[0] == 0
        assert_same_as_predict(answer.json()["predictions"], tmp_path / f"predicted{i}.csv", COLUMNS, tol=1e-4)


@pytest.mark.parametrize("body, words", [
    ({"rows": [GOOD]}, 'expected a JSON object {"sequences": '),
    ({"sequences": []}, "sequences: the list is empty"),
    ({"sequences": [GOOD, []]}, "sequences[1]: expected a non-empty list of steps (each a list of 2 numbers), got an "
                                "empty list"),
    ({"sequences": [[[1.0, 2.0], [3.0]]]}, "sequences[0][1]: expected a list of 2 numbers (the trained features of a "
                                           "step), got a list of 1"),
    ({"sequences": [[[1.0, 2.0, 3.0]]]}, "sequences[0][0]: expected a list of 2 numbers"),
    ({"sequences": [[[1.0, 2.0]] * 13]}, "sequences[0]: 13 steps; this model was trained on sequences of at most 12"),
    ({"sequences": [[[1.0, "2"]]]}, "sequences[0][0][1]: expected a number, got str"),
    ({"sequences": [[[1.0, True]]]}, "sequences[0][0][1]: expected a number, got bool"),
    ({"sequences": [[5.0, 5.0]]}, "sequences[0][0]: expected a list of 2 numbers (the trained features of a step), "
                                  "got float"),
])
def test_a_ragged_or_misshapen_sequence_is_422_naming_it(served, body, words):
    response = served.post("/predict", json=body)
    assert response.status_code == 422 and words in response.json()["detail"], response.json()
    assert served.post("/predict", json={"sequences": [GOOD]}).status_code == 200


def test_a_value_that_is_not_finite_is_422(served):
    response = served.post("/predict", content=b'{"sequences": [[[1.0, NaN]]]}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and "sequences[0][0][1]: nan is not a finite number" in response.json()["detail"]


def test_metadata_gives_the_most_steps_and_the_features(served):
    schema = served.get("/metadata").json()["input"]
    assert (schema["kind"], schema["max_steps"], schema["features"]) == ("sequence", 12, 2)


def test_drift_compares_steps_and_each_features_mean_and_std(served):
    """Train sequences hold about 5 ± 3 in both features, 1 to 12 steps; these hold 50 in f0, 12 steps each."""
    shifted = [[[50.0, 5.0 + 3.0 * np.sin(t)] for t in range(12)]] * MIN_ROWS
    served.post("/predict", json={"sequences": shifted})
    features = {f["feature"]: f["drift"] for f in served.get("/drift").json()["features"]["features"]}
    assert set(features) == {"steps", "mean_f0", "mean_f1", "std_f0", "std_f1"}
    assert features["steps"] and features["mean_f0"] and features["std_f0"]  # 12 steps; f0 high and constant
