"""The multi-task experiments: adult-mtl derives never_married from marital_status, which must then not be a feature."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydranet.config import load_config
from hydranet.data import build_dataset

ADULT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "adult" / "adult.csv.gz"
MARITAL = ["Married-civ-spouse", "Never-married", "Divorced", "Separated", "Widowed", "Married-spouse-absent", "Married-AF-spouse"]


@pytest.fixture
def tiny_adult(tmp_path):
    """120 rows with Adult's columns, a `?` here and there and the file's train/test `split` column."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({
        "age": rng.integers(17, 90, n), "workclass": rng.choice(["Private", "State-gov", "?"], n),
        "fnlwgt": rng.integers(10_000, 500_000, n), "education": rng.choice(["Bachelors", "HS-grad"], n),
        "education_num": rng.integers(1, 16, n), "marital_status": rng.choice(MARITAL, n),
        "occupation": rng.choice(["Adm-clerical", "Sales"], n), "relationship": rng.choice(["Husband", "Own-child"], n),
        "race": rng.choice(["White", "Black"], n), "sex": rng.choice(["Male", "Female"], n),
        "capital_gain": rng.integers(0, 5000, n), "capital_loss": rng.integers(0, 100, n),
        "hours_per_week": rng.integers(10, 60, n), "native_country": rng.choice(["United-States", "Mexico"], n),
        "income": rng.choice(["<=50K", ">50K"], n), "split": np.where(np.arange(n) < 90, "train", "test"),
    })
    path = tmp_path / "adult.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_adult_mtl_derives_never_married_and_drops_it_from_the_features(tiny_adult):
    path, frame = tiny_adult
    cfg = load_config("adult-mtl", [f"data.path={path}"])
    assert cfg.column("never_married") == "marital_status" and set(cfg.tasks) == {"income", "never_married"}
    data = build_dataset(cfg)
    assert "marital_status" not in data.info.features and "income" not in data.info.features
    assert "relationship" in data.info.features and "split" not in data.info.features
    expected = torch.tensor((frame["marital_status"] == "Never-married").to_numpy(dtype=np.float32))
    assert torch.equal(data.targets["never_married"], expected)
    assert data.info.tasks["never_married"].classes == ["not Never-married", "Never-married"]
    assert torch.equal(data.targets["income"], torch.tensor((frame["income"] == ">50K").to_numpy(dtype=np.float32)))
    assert len(data.index["test"]) == 30  # the file's own test rows


def test_multidigits_experiment_resolves():
    cfg = load_config("multidigits")
    assert cfg.data.source == "multidigits" and {t: c.kind for t, c in cfg.tasks.items()} == {
        "left": "classification", "right": "classification"}


@pytest.mark.slow
@pytest.mark.skipif(not ADULT.exists(), reason="needs ../shared/data")
def test_adult_mtl_one_epoch_on_the_real_file(cli, tmp_path):
    code, _, err = cli("train", "adult-mtl", "--set", f"data.path={ADULT}", "--set", "train.epochs=1",
                       "--run-dir", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["income"]["accuracy"] > 0.8 and summary["test"]["never_married"]["accuracy"] > 0.8
    features = json.loads((tmp_path / "run" / "data.json").read_text())["features"]
    assert "marital_status" not in features and len(features) == 13
