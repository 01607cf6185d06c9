"""A tiny census-like table for the fairness tests: a binary and a regression task, sensitive `sex` (two groups),
`race` (one group of a handful) and a numeric `age`, and a column of example weights."""

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def fair_csv(tmp_path):
    return write_fair_csv(tmp_path / "fair.csv")


def write_fair_csv(path):
    rng = np.random.default_rng(0)
    n = 300
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    race = np.where(np.arange(n) % 25 == 0, "C", rng.choice(["A", "B"], n))  # C: 12 examples, a few per split
    x1 = rng.normal(size=n) + 0.8 * (sex == "M")
    frame = pd.DataFrame({
        "x1": x1, "x2": rng.normal(size=n), "age": rng.integers(18, 80, n), "sex": sex, "race": race,
        "income": np.where(x1 + rng.normal(scale=0.5, size=n) > 0.5, ">50K", "<=50K"),
        "size": 2 * x1 + rng.normal(size=n), "w": rng.uniform(0.5, 2.0, n).round(3),
    })
    frame.to_csv(path, index=False)
    return path


def fair_config(path, **sections) -> dict:
    """A fast two-task experiment on fair_csv, as a dict; `sections` replace or add whole config sections. In fp32:
    the audits are checked number for number against fairlearn on an fp32 forward pass."""
    return {
        "name": "fair", "seed": 0, "data": {"source": "csv", "path": str(path), "split": {"val": 0.2, "test": 0.3}},
        "tasks": {"income": {"kind": "binary"}, "size": {"kind": "regression"}},
        "model": {"trunk": {"name": "mlp", "hidden": [16]}},
        "train": {"epochs": 2, "batch_size": 32, "progress": False, "precision": "fp32"},
        **{k: ({"source": "csv", "path": str(path), "split": {"val": 0.2, "test": 0.3}} | v if k == "data" else v)
           for k, v in sections.items()},
    }
