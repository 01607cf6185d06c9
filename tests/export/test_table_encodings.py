"""Every table encoding (data.encoder: quantile or robust scaling, category codes with their unknown slot, missing
indicators) exports: preprocessing.json names each column's scaling or encoding with the numbers that apply it,
predict_onnx.py encodes raw rows as the run's TableEncoder does, and the export, predict_onnx.py and both server
backends give what `hydranet predict` gives."""

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from scipy.stats import norm
from tests.export.exportruns import table_frame, train_table
from tests.export.test_standalone import assert_same_predictions, standalone_predictions
from tests.serve.servehelpers import assert_same_as_predict, json_rows

import hydranet as hn
from hydranet.data.info import DataInfo
from hydranet.data.tabular import TableEncoder, TableOptions
from hydranet.export import standalone
from hydranet.export.spec import preprocessing
from hydranet.serve.app import create_app
from hydranet.serve.settings import ServeSettings
from hydranet.train import load_run

OPTIONS = {
    "quantile, codes, indicators": {"numeric": "quantile", "categorical": "embedding", "missing_indicators": True},
    "robust, one-hot, indicators": {"numeric": "robust", "missing_indicators": True},
    "standard, codes": {"categorical": "embedding"},
    "quantile (5), one-hot": {"numeric": "quantile", "quantiles": 5},
}


def table_preprocessing(encoder: TableEncoder) -> dict:
    """preprocessing.json of a table run with this fitted encoder, as a reader gets it (through JSON)."""
    info = DataInfo("table", (len(encoder.feature_names),), encoder=encoder.state_dict())
    return json.loads(json.dumps(preprocessing(info)))


def standalone_matrix(pre: dict, frame: pd.DataFrame) -> np.ndarray:
    """predict_onnx.py's graph input for a frame as read from a file: cleaned, then encoded column by column."""
    markers = set(pre["missing"])
    cleaned = standalone.clean(frame, markers)
    return np.concatenate([standalone.encode_column(cleaned[c["name"]], c, markers) for c in pre["columns"]], axis=1)


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
def test_the_standalone_encoding_is_the_encoders(options):
    """Gaps, a missing marker, unseen and padded categories, values beyond the train range, a value between two
    train values and a constant column: the same matrix, codes and indicators exactly, scaled numbers within
    float32 rounding (the standalone script's Φ⁻¹ is Python's statistics module, the encoder's scipy's)."""
    rng = np.random.default_rng(0)
    skewed = rng.lognormal(size=60)
    skewed[[3, 9]] = np.nan
    train = pd.DataFrame({"skewed": skewed, "steps": rng.integers(0, 4, 60).astype(float), "constant": 1.0,
                          "color": rng.choice(["red", "blue", "?"], 60).astype(object)})
    new = pd.DataFrame({"skewed": [0.5, np.nan, 1e3, -5.0, skewed[0]], "steps": [0.0, 1.5, 3.0, np.nan, 2.0],
                        "constant": [1.0, 2.0, np.nan, 1.0, 1.0], "color": ["blue", "green", None, " red ", "?"]})
    encoder = TableEncoder(TableOptions(**options)).fit(train)
    pre = table_preprocessing(encoder)
    ours, theirs = standalone_matrix(pre, new), encoder.transform(new)
    assert ours.shape == theirs.shape == (len(new), pre["width"]) and pre["features"] == encoder.feature_names
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    exact = [i for i, name in enumerate(encoder.feature_names) if "=" in name or name == "color"]
    assert np.array_equal(ours[:, exact], theirs[:, exact])  # one-hot, codes and indicators
    if options.get("categorical") == "embedding":  # blue 1, red 2; unseen, missing and the marker: the unknown 0
        assert ours[:, encoder.feature_names.index("color")].tolist() == [1, 0, 0, 2, 0]


def test_quantile_columns_give_their_distinct_values_and_the_mean_rank_of_each():
    """Ranks by hand: 40 train values, ten 0s, twenty 1s, ten 2s, at ranks i/39; each value's rank is the mean of
    its own (0s: 4.5/39), and a value between two is interpolated in rank, then mapped through Φ⁻¹."""
    train = pd.DataFrame({"steps": [0.0] * 10 + [1.0] * 20 + [2.0] * 10})
    (column,) = table_preprocessing(TableEncoder(TableOptions(numeric="quantile")).fit(train))["columns"]
    assert column["scaling"] == "quantile" and column["values"] == [0.0, 1.0, 2.0] and column["bound"] == 1e-7
    np.testing.assert_allclose(column["ranks"], [4.5 / 39, 0.5, 34.5 / 39], rtol=1e-12)
    got = standalone.scale(np.array([0.0, 1.0, 0.5, -3.0]), column)
    np.testing.assert_allclose(got, norm.ppf([4.5 / 39, 0.5, (4.5 / 39 + 0.5) / 2, 4.5 / 39]), atol=1e-6)


ENCODINGS = {  # data.encoder options, model.trunk (None: the tiny mlp)
    "quantile-codes-indicators-plr": ({"numeric": "quantile", "categorical": "embedding", "missing_indicators": True},
                                      {"name": "mlp", "hidden": [16], "embedding": "plr",
                                       "plr": {"frequencies": 4, "dim": 4}}),
    "robust-onehot-indicators": ({"numeric": "robust", "missing_indicators": True}, None),
    "robust-codes-ft_transformer": ({"numeric": "robust", "categorical": "embedding"},
                                    {"name": "ft_transformer", "width": 8, "depth": 1, "heads": 2}),
}


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.slow) for name in ENCODINGS])
def encoded_run(request, tmp_path_factory):
    """(the run, its export's parity report): trained on exportruns' four-task table (gaps in x2 and color). Slow:
    training and exporting take about 20 s a run on a busy core; the encodings' arithmetic is checked above in the
    default suite."""
    encoder, trunk = ENCODINGS[request.param]
    run_dir = train_table(tmp_path_factory.mktemp(request.param), encoder=encoder, trunk=trunk)
    return run_dir, hn.load(run_dir).export()


@pytest.fixture(scope="module")
def new_rows(tmp_path_factory):
    """Rows predict reads from a CSV: an unseen, a padded and an empty category, gaps in both numeric columns
    (x2 had gaps in train: its indicator), numbers far beyond the train range (quantiles clip them)."""
    new = table_frame(40, seed=1).drop(columns=["grade", "kind", "size", "tags"])
    new.loc[3, "color"], new.loc[4, "color"], new.loc[5, "color"] = "purple", " red ", ""
    new.loc[6, "x1"], new.loc[7, "x2"] = np.nan, np.nan
    new.loc[8, "x1"], new.loc[9, "x2"] = 1e4, -1e4
    path = tmp_path_factory.mktemp("rows") / "new.csv"
    new.to_csv(path, index=False)
    return path


def test_the_export_computes_what_the_model_computes(encoded_run):
    run_dir, parity = encoded_run
    assert parity["passed"] and max(parity["max_abs_diff"].values()) <= 1e-5, parity["max_abs_diff"]
    pre = json.loads((run_dir / "export" / "preprocessing.json").read_text())
    options = hn.load(run_dir).config.data.encoder.options
    x2 = next(c for c in pre["columns"] if c["name"] == "x2")
    color = next(c for c in pre["columns"] if c["name"] == "color")
    assert x2["scaling"] == options.numeric and x2["indicator"] == options.missing_indicators
    assert color["encoding"] == options.categorical and pre["width"] == len(pre["features"])


def test_predict_onnx_reproduces_predict(encoded_run, new_rows, cli, tmp_path):
    run_dir, _ = encoded_run
    code, _, err = cli("predict", run_dir, new_rows, "-o", tmp_path / "predict.csv")
    assert code == 0, err
    ours = pd.read_csv(tmp_path / "predict.csv", keep_default_na=False)
    assert_same_predictions(ours, standalone_predictions(tmp_path, run_dir / "export", new_rows))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_server_answers_as_predict(encoded_run, new_rows, backend, cli, tmp_path):
    """The server encodes with the run's TableEncoder (these encodings take its pandas path); the onnx backend
    feeds the export's graph, which it could not make before."""
    run_dir, _ = encoded_run
    assert cli("predict", run_dir, new_rows, "-o", tmp_path / "predict.csv")[0] == 0
    rows = pd.read_csv(new_rows)  # gaps become null, the padded category stays padded
    with TestClient(create_app(load_run(run_dir), ServeSettings(backend=backend))) as client:
        answer = client.post("/predict", json={"rows": json_rows(rows)})
        columns = {task: meta["column"] for task, meta in client.get("/metadata").json()["tasks"].items()}
    assert answer.status_code == 200, answer.text
    assert_same_as_predict(answer.json()["predictions"], tmp_path / "predict.csv", columns, tol=1e-5)
