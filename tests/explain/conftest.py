"""Tiny trained runs the explanation tests share (trained once per session): digits on a small CNN, a table whose
label depends on two columns only, and images whose class sits in one known quadrant."""

import numpy as np
import pandas as pd
import pytest
import torch

import hydranet as hn


def fit_quietly(experiment: dict, folder) -> hn.Model:
    """Train on one thread (the tiny models are faster so, and the machine is shared) and load the run. In fp32:
    `precision: auto` would train in bf16 on bf16 hardware only, and the completeness checks need the same weights
    on every machine (a bf16-trained digits CNN has an example whose ink path needs more than MAX_STEPS)."""
    experiment = {**experiment, "train": {**experiment.get("train", {}), "precision": "fp32"}}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = hn.Experiment(experiment).fit(folder)
    finally:
        torch.set_num_threads(before)
    return hn.load(run.dir)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    """The quickstart's three tasks (classification, binary, regression) on a smaller CNN, a few epochs."""
    experiment = {"name": "digits", "seed": 0, "data": {"source": "digits", "split": {"val": 0.1, "test": 0.2}},
                  "tasks": {"digit": {"kind": "classification"}, "parity": {"kind": "binary"},
                            "ink": {"kind": "regression"}},
                  "model": {"trunk": {"name": "cnn", "channels": [8, 16], "padding": "same", "dense": [32]}},
                  "train": {"epochs": 6, "batch_size": 64, "progress": False,
                            "optimizer": {"name": "adamw", "lr": 0.01}}}
    return fit_quietly(experiment, tmp_path_factory.mktemp("digits") / "run")


def two_column_table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """`label` = a + b > 0 and `value` = a − 2b, from two of five columns; `noise1`, `noise2` and the categorical
    `shade` carry nothing."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    return pd.DataFrame({"noise1": rng.normal(size=rows), "a": a, "shade": rng.choice(["dark", "mid", "light"], rows),
                         "b": b, "noise2": rng.normal(size=rows),
                         "label": np.where(a + b > 0, "yes", "no"), "value": a - 2 * b})


@pytest.fixture(scope="session")
def table_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    two_column_table().to_csv(folder / "table.csv", index=False)
    experiment = {"name": "table", "seed": 0,
                  "data": {"source": "csv", "path": str(folder / "table.csv"), "split": {"val": 0.1, "test": 0.2}},
                  "tasks": {"label": {"kind": "binary"}, "value": {"kind": "regression"}},
                  "model": {"trunk": {"name": "mlp", "hidden": [32]}},
                  "train": {"epochs": 30, "batch_size": 32, "progress": False,
                            "optimizer": {"name": "adamw", "lr": 0.01}}}
    return fit_quietly(experiment, folder / "run")


def quadrant_images(count: int = 400, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise images with a bright shape in the top-left quadrant: a plus (class 1) or a hollow square
    (class 0). Nothing outside that quadrant tells the classes apart."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, size=(count, 1, size, size)).astype(np.uint8)
    label = np.arange(count) % 2
    half, mid = size // 2, size // 4
    plus, square = images[label == 1, 0], images[label == 0, 0]
    plus[:, mid, 1:half - 1] = plus[:, 1:half - 1, mid] = 250
    square[:, 1, 1:half - 1] = square[:, half - 2, 1:half - 1] = 250
    square[:, 1:half - 1, 1] = square[:, 1:half - 1, half - 2] = 250
    images[label == 1, 0], images[label == 0, 0] = plus, square
    return images, label


@pytest.fixture(scope="session")
def quadrant_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quadrant")
    images, label = quadrant_images()
    np.savez(folder / "quadrant.npz", x=images, shape=label)
    experiment = {"name": "quadrant", "seed": 0,
                  "data": {"source": "npz", "path": str(folder / "quadrant.npz"), "split": {"val": 0.1, "test": 0.2}},
                  "tasks": {"shape": {"kind": "classification"}},
                  "model": {"trunk": {"name": "cnn", "channels": [8, 16], "padding": "same", "dense": [16]}},
                  "train": {"epochs": 8, "batch_size": 32, "progress": False,
                            "optimizer": {"name": "adamw", "lr": 0.01}}}
    return fit_quietly(experiment, folder / "run")
