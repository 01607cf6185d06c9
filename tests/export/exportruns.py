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


def train_table(folder: Path, sharing: str = "hard", encoder: dict | None = None, trunk: dict | None = None) -> Path:
    """A 4-task run on a 200-row table, one epoch: an MLP on the default encoding unless `encoder` (data.encoder's
    options) and `trunk` (model.trunk) say otherwise."""
    path = folder / "train.csv"
    table_frame(200, seed=0).to_csv(path, index=False)
    config = {"name": "tiny4", "data": {"source": "csv", "path": str(path), "split": {"val": 0.2, "test": 0.2},
                                        "encoder": {"name": "table", **(encoder or {})}},
              "tasks": KINDS_TABLE,
              "model": {"trunk": trunk or {"name": "mlp", "hidden": [16]}, "sharing": {"name": sharing}},
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


WORDS = ["alpha", "beta", "gamma", "delta", "omega", "zeta", "kappa"]


def text_frame(n: int, seed: int) -> pd.DataFrame:
    """Texts of 1 to 11 words in two columns (`body` may be missing); `topic` says whether "beta" occurs."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 12))) for _ in range(n)]
    frame = pd.DataFrame({"title": [t.split()[0] for t in texts], "body": [" ".join(t.split()[1:]) for t in texts],
                          "topic": ["yes" if "beta" in t else "no" for t in texts],
                          "words": [len(t.split()) for t in texts]})
    frame.loc[frame["body"] == "", "body"] = np.nan
    return frame


TEXT_TRUNKS = {"transformer": {"width": 16, "heads": 2, "depth": 1, "pooling": "cls"},
               "gru": {"width": 8, "embedding": 8, "layers": 2},
               "lstm": {"width": 8, "embedding": 8, "pooling": "mean"}}


def train_text(folder: Path, trunk: str = "transformer") -> Path:
    """A two-task text run (classification, regression) of a tiny trunk, one epoch on 150 texts of 10 tokens."""
    path = folder / "texts.csv"
    text_frame(150, seed=0).to_csv(path, index=False)
    config = {"name": "texts", "data": {"source": "text", "path": str(path),
                                        "text": {"columns": ["title", "body"], "vocab_size": 300, "max_length": 10}},
              "tasks": {"topic": {}, "words": {"kind": "regression"}},
              "model": {"trunk": {"name": trunk, "vocab_size": 300, **TEXT_TRUNKS[trunk]}},
              "train": {"epochs": 1, "batch_size": 32, "progress": False, "threads": 1, "precision": "fp32"}}
    return hn.Experiment(config).fit(folder / "run").dir


def write_series(path: Path, n: int, seed: int) -> Path:
    """An .npz of n sequences of 1 to 12 steps of 2 features, a class and a value from the first step."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, 2)) * 3 + 5
    np.savez(path, x=x, lengths=rng.integers(1, 13, size=n), label=np.where(x[:, 0, 0] > 5, "high", "low"),
             value=x[:, 0, 1])
    return path


def train_sequence(folder: Path, trunk: str = "lstm") -> Path:
    """A two-task numeric-sequence run of a tiny bidirectional recurrent trunk, one epoch on 120 sequences."""
    config = {"name": "series", "data": {"source": "sequence", "path": str(write_series(folder / "s.npz", 120, 0))},
              "tasks": {"label": {}, "value": {"kind": "regression"}},
              "model": {"trunk": {"name": trunk, "width": 8, "layers": 2}},
              "train": {"epochs": 1, "batch_size": 32, "progress": False, "threads": 1, "precision": "fp32"}}
    return hn.Experiment(config).fit(folder / "run").dir
