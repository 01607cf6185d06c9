"""Tiny trained runs for the export tests: a four-task table (one task of each kind, heads of different widths)
and an image run on digits. A plain module (tests/ folders are not packages), imported by conftest.py and the tests.
Both train in fp32: their readers (export, server, calibration) are compared with each other to float32 rounding,
and the default precision `auto` would run bf16 on CPUs that compute it natively."""

from pathlib import Path

import numpy as np
import pandas as pd

import hydranet as hn

# Not in alphabetical order, so an exporter or a reader that sorts names cannot pass for one that maps them.
KINDS_TABLE = {"size": {"kind": "regression"}, "grade": {"kind": "classification"},
               "tags": {"kind": "multilabel"}, "kind": {"kind": "binary"}}


def table_frame(n: int, seed: int) -> pd.DataFrame:
    """Numeric and categorical features with gaps ('?', empty), and one target column per task kind."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n) * 10 + 50
    frame = pd.DataFrame({
        "x1": x1, "x2": x2,
        "color": rng.choice(["red", "green", "blue"], size=n).astype(object),
        "grade": np.select([x1 < -0.5, x1 < 0.5], ["low", "mid"], "high"),
        "kind": np.where(x2 > 50, "up", "down"),
        "size": 3 * x1 + x2,
        "tags": np.where(x1 > 0, "a|b", "b"),
    })
    frame.loc[::7, "x2"] = np.nan
    frame.loc[::11, "color"] = "?"
    return frame


def train_table(folder: Path, sharing: str = "hard") -> Path:
    """A 4-task MLP run on a 200-row table, one epoch."""
    path = folder / "train.csv"
    table_frame(200, seed=0).to_csv(path, index=False)
    config = {"name": "tiny4", "data": {"source": "csv", "path": str(path), "split": {"val": 0.2, "test": 0.2}},
              "tasks": KINDS_TABLE, "model": {"trunk": {"name": "mlp", "hidden": [16]}, "sharing": {"name": sharing}},
              "train": {"epochs": 1, "batch_size": 32, "progress": False, "precision": "fp32"}}
    return hn.Experiment(config).fit(folder / "run").dir


def train_digits(folder: Path, sharing: str = "hard", **settings) -> Path:
    """The quickstart CNN (three tasks of three kinds on 8×8 grey digits), narrowed, on 300 images, one epoch;
    `settings` are more overrides (dotted keys with "__" for ".")."""
    overrides = {"data.limit": 300, "train.epochs": 1, "train.progress": False, "train.precision": "fp32",
                 "model.trunk.channels": [4, 8],
                 "model.trunk.dense": [16], "model.sharing.name": sharing,
                 **{key.replace("__", "."): value for key, value in settings.items()}}
    return hn.Experiment("quickstart", overrides).fit(folder / "run").dir
