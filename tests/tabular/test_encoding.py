"""Encoder options (data.encoder): quantile and robust scaling against scikit-learn, missing indicators, category
codes with an unknown slot, fitted on train only, stored in the run so a reloaded run predicts identically; the
readers that only reproduce the plain encoding refuse the others in one line."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.preprocessing import QuantileTransformer, RobustScaler

from hydranet.api import load
from hydranet.baseline import baselines
from hydranet.config import validate
from hydranet.data import build_dataset
from hydranet.data.info import DataInfo
from hydranet.data.input_map import input_map
from hydranet.data.tabular import TableEncoder, TableOptions
from hydranet.errors import UserError
from hydranet.explain.tables import source_columns
from hydranet.export.spec import preprocessing
from hydranet.serve.onerow import encode_rows
from hydranet.train import fit
from tests.conftest import tiny_table_config

RICH = {"numeric": "quantile", "categorical": "embedding", "missing_indicators": True}


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = rng.lognormal(size=50)
    values[[3, 9]] = np.nan
    return pd.DataFrame({"skewed": values, "steps": rng.integers(0, 4, 50).astype(float),
                         "full": rng.normal(size=50), "color": rng.choice(["red", "blue", "?"], 50)})


def test_quantile_scaling_matches_scikit_learns_quantile_transformer():
    train = frame()
    encoder = TableEncoder(TableOptions(numeric="quantile")).fit(train)  # as many quantiles as train values
    ours = encoder.transform(train)
    for name in ("skewed", "full"):  # a skewed and a normal column
        present = train[name].dropna().to_numpy()[:, None]
        theirs = QuantileTransformer(n_quantiles=len(present), output_distribution="normal").fit(present)
        expected = theirs.transform(train[[name]].fillna(np.nanmedian(present)).to_numpy())[:, 0]
        got = ours[:, encoder.feature_names.index(name)]
        known = train[name].notna().to_numpy()
        np.testing.assert_allclose(got[known], expected[known], atol=1e-5)
        assert (got[~known] == 0).all()  # missing: the median, 0 once mapped


def test_quantile_scaling_puts_tied_values_in_the_middle_of_their_ranks():
    """scikit-learn maps the smallest and largest values to ±5.2 even when a quarter of the rows hold them (a
    discrete column); the middle of their ranks keeps such values where their share of the rows puts them."""
    train = pd.DataFrame({"steps": [0.0] * 10 + [1.0] * 20 + [2.0] * 10})
    x = TableEncoder(TableOptions(numeric="quantile")).fit(train).transform(train)[:, 0]
    assert x[0] == pytest.approx(-x[-1], abs=1e-6) and x[10] == pytest.approx(0.0, abs=1e-6)
    assert -2 < x[0] < -0.5  # the middle of the lowest quarter of the ranks, not Φ⁻¹(1e-7)


def test_robust_scaling_matches_scikit_learns_robust_scaler():
    train = frame()
    ours = TableEncoder(TableOptions(numeric="robust")).fit(train).transform(train)
    present = train[["full"]].to_numpy()
    np.testing.assert_allclose(ours[:, 2], RobustScaler().fit(present).transform(present)[:, 0], atol=1e-6)


def test_missing_indicators_only_for_numeric_columns_with_gaps_in_train():
    train = frame()
    encoder = TableEncoder(TableOptions(missing_indicators=True)).fit(train)
    assert encoder.feature_names[:4] == ["skewed", "skewed=missing", "steps", "full"]
    x = encoder.transform(train)
    assert x[:, 1].tolist() == train["skewed"].isna().astype(float).tolist()
    new = encoder.transform(train.assign(full=np.nan))  # a gap unseen in train: imputed, no indicator to set
    assert (new[:, 3] == 0).all() and new.shape == x.shape


def test_category_codes_with_an_unknown_slot():
    train = frame()
    encoder = TableEncoder(TableOptions(categorical="embedding")).fit(train)
    assert encoder.feature_names[-1] == "color" and encoder.cardinalities == (0, 0, 0, 3)  # blue, red + unknown
    codes = encoder.transform(pd.DataFrame({"skewed": [1.0] * 4, "steps": [1.0] * 4, "full": [0.0] * 4,
                                            "color": ["blue", "red", "green", None]}))[:, -1]
    assert codes.tolist() == [1, 2, 0, 0]  # unseen and missing share code 0


def test_state_round_trip_and_old_states_read_as_the_defaults():
    train = frame()
    encoder = TableEncoder(TableOptions(**RICH)).fit(train)
    again = TableEncoder.from_state(encoder.state_dict())
    assert np.array_equal(again.transform(train), encoder.transform(train)) and not again.plain
    old = {"version": 1, "columns": TableEncoder().fit(train).state_dict()["columns"]}
    assert TableEncoder.from_state(old).plain and TableEncoder.from_state(old).options == TableOptions()


def rich_config(tiny_csv, **model):
    config = tiny_table_config(tiny_csv, epochs=1)
    config["data"]["encoder"] = {"name": "table", **RICH}
    config["model"] |= model
    return validate(config)


def test_statistics_come_from_the_train_split_only(tiny_csv):
    data = build_dataset(rich_config(tiny_csv))
    raw = pd.read_csv(tiny_csv)
    train = raw.iloc[data.index["train"].numpy()]
    x1 = next(c for c in data.info.encoder["columns"] if c["name"] == "x1")
    assert x1["quantiles"] == sorted(train["x1"])  # as many quantiles as train rows: each train value once


@pytest.mark.parametrize("trunk", ["mlp", "ft_transformer"])
def test_a_saved_run_with_embeddings_predicts_identically_after_loading(tiny_csv, tmp_path, one_thread, trunk):
    run = fit(rich_config(tiny_csv, trunk={"name": trunk}), tmp_path / "run", progress=False)
    rows = pd.read_csv(tiny_csv).drop(columns=["kind", "size"]).head(20)
    rows.loc[0, "color"] = "purple"  # a category training never saw: the unknown slot
    expected = run.model.eval()(torch.from_numpy(TableEncoder.from_state(run.info.encoder).transform(rows)))
    predicted = load(tmp_path / "run").predict(rows)
    assert np.allclose(predicted["size"].to_numpy(), expected["size"].detach().numpy() * run.info.tasks["size"].std
                       + run.info.tasks["size"].mean, atol=1e-5)


def test_a_trunk_that_does_not_embed_categories_is_refused(tiny_csv, tmp_path):
    config = rich_config(tiny_csv)
    config.model.sharing = "mmoe"  # its gates are plain mlps built without the codes' cardinalities
    config.model.trunk = {"name": "cnn"}
    with pytest.raises(UserError, match=r"^model.trunk.name: cnn does not embed category codes") as err:
        fit(config, tmp_path / "run", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


def test_readers_of_the_plain_encoding_refuse_and_the_others_read_every_one(tiny_csv):
    """A distillation teacher's input map refuses other encodings. The export (tests/export/test_table_encodings.py)
    and the server's one-row path (tests/serve/test_onerow.py) reproduce every encoding."""
    info = build_dataset(rich_config(tiny_csv)).info
    assert [c.get("scaling", c.get("encoding")) for c in preprocessing(info)["columns"]] == ["quantile", "quantile",
                                                                                            "embedding"]
    plain = build_dataset(validate(tiny_table_config(tiny_csv))).info
    with pytest.raises(UserError, match=r"^teacher: its inputs are encoded otherwise"):
        input_map(plain, info, "teacher")
    row = {"x1": 0.5, "x2": 1.0, "color": "red"}
    assert encode_rows(info, [row]) is not None and encode_rows(plain, [row]) is not None
    names, groups = source_columns(info)
    assert names == ["x1", "x2", "color"] and groups.tolist() == [[0, 1, 2]]  # no gaps in the tiny train split


def test_data_info_keeps_the_encoder_options():
    encoder = TableEncoder(TableOptions(**RICH)).fit(frame())
    info = DataInfo("table", (5,), encoder=encoder.state_dict())
    assert DataInfo.from_dict(info.to_dict()).encoder["options"] == TableOptions(**RICH).model_dump()


def test_baselines_read_the_plain_encoding_whatever_the_run_used(tiny_csv, tmp_path):
    """Category codes read as numbers would handicap the linear model: the baselines of an embedding run are those
    of the same rows one-hot encoded."""
    plain = tiny_table_config(tiny_csv)
    rich = plain | {"data": plain["data"] | {"encoder": {"name": "table", **RICH}}}
    reports = []
    for name, config in (("plain", plain), ("rich", rich)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        reports.append(baselines(path))
    assert reports[0]["test_rows"] == reports[1]["test_rows"]
    for fitted in (r["tasks"]["kind"]["linear"] for r in reports):
        fitted.pop("fit_seconds")
    assert reports[0]["tasks"]["kind"]["linear"] == reports[1]["tasks"]["kind"]["linear"]
