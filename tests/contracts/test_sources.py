"""Data sources: the contract every registered source meets, on tiny inputs made in tmp_path.

`source(cfg) → RawData`: one kind of input, images (uint8 or float (N, C, H, W)), a table, texts (which keep their
table columns) or numeric sequences (float32 (N, T, F + 1), the last channel 0/1 validity); one value per example
in every label column, among them each task's column; a predefined split, if any, says train/val/test per
example; the same config reads the same RawData (twice: the second read may come from the cache); image
sources honour `data.image_size`; the result builds into a Dataset; a missing, absent or unreadable input is
a one-line UserError, never a traceback.

A source whose input is a file needs a maker in `INPUTS` (a new one fails until it has one); a source that
reads nothing (bundled data) is checked as it is. `SKIP` lists, with the reason, a source whose input
cannot be made cheaply.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hydranet import registry
from hydranet.config import Config
from hydranet.data import build_dataset
from hydranet.data.dataset import RawData
from hydranet.errors import UserError

SPLITS = {"train", "val", "test"}
SKIP: dict[str, str] = {
    # name: why its input cannot be made in a test (none today: every built-in reads a tiny file or bundled data)
}


def table(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "color": rng.choice(["red", "blue"], n),
                          "label": ["a", "b", "c"] * (n // 3), "size": rng.normal(size=n)})
    frame.loc[1, "size"] = np.nan
    return frame


def csv_input(tmp):
    table().to_csv(tmp / "t.csv", index=False)
    return tmp / "t.csv", {"label": {}, "size": {"kind": "regression"}}


def parquet_input(tmp):
    table().to_parquet(tmp / "t.parquet")
    return tmp / "t.parquet", {"label": {}, "size": {"kind": "regression"}}


def npz_input(tmp):
    x = np.random.default_rng(0).integers(0, 256, (9, 1, 4, 4), dtype=np.uint8)
    np.savez(tmp / "a.npz", x=x, label=np.array(["a", "b", "c"] * 3), split=np.array(["train"] * 6 + ["test"] * 3))
    return tmp / "a.npz", {"label": {}}


def image_folder_input(tmp):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp / "pets" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp / "pets" / cls / f"{i}.png")
    return tmp / "pets", {"label": {}}


def cifar10_input(tmp):
    """The cifar-10-batches-py layout with two images per batch (bytes keys, as the original Python 2 pickles)."""
    folder, rng = tmp / "cifar-10-batches-py", np.random.default_rng(0)
    folder.mkdir()
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [i % 10, (i + 1) % 10]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{k}".encode() for k in range(10)]}))
    return folder, {"label": {}}


def text_input(tmp):
    words = ["red", "green", "blue", "fast", "slow", "cat", "dog", "sky"]
    texts = [" ".join(words[(i * 3 + k) % len(words)] for k in range(1 + i % 4)) for i in range(12)]
    pd.DataFrame({"text": texts, "label": ["a", "b", "c"] * 4}).to_csv(tmp / "texts.csv", index=False)
    return tmp / "texts.csv", {"label": {}}


def sequence_input(tmp):
    """9 sequences of up to 5 steps of 2 features, padded, with their lengths, a label and a split."""
    rng = np.random.default_rng(0)
    np.savez(tmp / "s.npz", x=rng.normal(size=(9, 5, 2)), lengths=np.array([5, 3, 1, 4, 2, 5, 3, 2, 4]),
             label=np.array(["a", "b", "c"] * 3), split=np.array(["train"] * 6 + ["test"] * 3))
    return tmp / "s.npz", {"label": {}}


# name → maker(tmp_path) → (data.path or None, tasks): the tiny input of each built-in source.
INPUTS = {
    "csv": csv_input, "parquet": parquet_input, "npz": npz_input, "image_folder": image_folder_input,
    "cifar10": cifar10_input, "text": text_input, "sequence": sequence_input,
    "digits": lambda tmp: (None, {"digit": {}, "ink": {"kind": "regression"}, "parity": {"kind": "binary"}}),
    "breast_cancer": lambda tmp: (None, {"diagnosis": {"kind": "binary"}}),
    "multidigits": lambda tmp: (None, {"left": {}, "right": {}}),
    "waves": lambda tmp: (None, {"pattern": {}, "frequency": {"kind": "regression"}}),
}
NAMES = [pytest.param(n, marks=pytest.mark.skip(reason=SKIP[n])) if n in SKIP else n for n in registry.names("source")]


def config(name: str, path, tasks, tmp, **data) -> Config:
    data = {"source": name, "path": None if path is None else str(path), "cache_dir": str(tmp / "cache"), **data}
    return Config(data=data, tasks=tasks or {"label": {}}, train={"early_stopping": {"monitor": None}})


def load(cfg: Config) -> RawData:
    return registry.get("source", cfg.data.source)(cfg)


@pytest.fixture
def made(request, tmp_path):
    """(cfg, raw, whether we know its task columns) of the source `request.param` on its tiny input; a file
    source without a maker in INPUTS fails here."""
    name = request.param
    path, tasks = INPUTS.get(name, lambda tmp: (None, None))(tmp_path)
    cfg = config(name, path, tasks, tmp_path)
    try:
        raw = load(cfg)
    except UserError as err:
        if name not in INPUTS and "data.path" in str(err):
            pytest.fail(f"source {name!r} reads a file: add a tiny input to INPUTS in tests/contracts/test_sources.py "
                        f"(or a reason to SKIP) — {err}")
        raise
    return cfg, raw, name in INPUTS


def user_error(cfg: Config) -> str:
    with pytest.raises(UserError) as err:
        load(cfg)
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


def equal_columns(a, b) -> bool:
    return pd.Series(list(a), dtype=object).equals(pd.Series(list(b), dtype=object))


@pytest.mark.parametrize("made", NAMES, indirect=True)
def test_raw_data_has_one_value_per_example_everywhere(made):
    cfg, raw, known = made
    assert isinstance(raw, RawData)
    table = raw.frame is not None and raw.texts is None  # texts keep the table columns they were joined from
    given = [raw.images is not None, table, raw.texts is not None, raw.series is not None]
    assert sum(given) == 1, "one kind of input: images, a table, texts or sequences"
    n = len(raw)
    assert n > 0
    if raw.images is not None:
        assert raw.images.dim() == 4 and raw.images.dtype in (torch.uint8, torch.float32)
        assert raw.images.shape[1] in (1, 3)
    elif raw.series is not None:
        assert raw.series.dim() == 3 and raw.series.dtype == torch.float32 and raw.series.shape[2] >= 2
        valid = raw.series[..., -1]
        assert ((valid == 0) | (valid == 1)).all() and (valid[:, 0] == 1).all()  # every sequence has a real step
    else:
        assert isinstance(raw.frame, pd.DataFrame) and len(raw.frame.columns) > 0
        assert raw.texts is None or (len(raw.texts) == n and all(isinstance(t, str) for t in raw.texts))
    assert all(len(values) == n for values in raw.labels.values())
    if known:  # the tasks we gave it are its columns
        assert {cfg.column(task) for task in cfg.tasks} <= set(raw.labels)
    if raw.split is not None:
        assert len(raw.split) == n and set(raw.split) <= SPLITS


@pytest.mark.parametrize("made", NAMES, indirect=True)
def test_same_config_reads_the_same_raw_data(made):
    cfg, first, _ = made
    again = load(cfg)  # image sets: from the cache this time
    for inputs in ("images", "series"):
        a, b = getattr(again, inputs), getattr(first, inputs)
        assert (a is None) == (b is None)
        assert a is None or (a.dtype == b.dtype and torch.equal(a, b))
    assert again.texts == first.texts
    assert (again.frame is None) == (first.frame is None)
    if first.frame is not None:
        pd.testing.assert_frame_equal(again.frame, first.frame)
    assert again.labels.keys() == first.labels.keys()
    assert all(equal_columns(again.labels[k], first.labels[k]) for k in first.labels)
    assert (again.split is None and first.split is None) or equal_columns(again.split, first.split)


@pytest.mark.parametrize("made", NAMES, indirect=True)
def test_image_sources_honour_image_size(made):
    cfg, raw, _ = made
    if raw.images is None:
        return
    resized = load(cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": 3})}))
    assert resized.images.shape == (len(raw), raw.images.shape[1], 3, 3) and resized.images.dtype == raw.images.dtype


@pytest.mark.parametrize("made", NAMES, indirect=True)
def test_builds_into_a_dataset(made):
    cfg, raw, known = made
    if not known:
        return  # a plugin source we know no task columns of
    data = build_dataset(cfg)
    assert len(data.x) == len(raw) and set(data.targets) == set(cfg.tasks)
    rows = torch.cat([data.index[s] for s in ("train", "val", "test")])
    assert sorted(rows.tolist()) == list(range(len(raw)))  # the splits partition the examples


@pytest.mark.parametrize("name", NAMES)
def test_missing_or_unreadable_input_is_one_line(name, tmp_path):
    path, tasks = INPUTS.get(name, lambda tmp: (None, None))(tmp_path)
    if path is None:
        return  # reads bundled data: data.path is not used
    assert "data.path" in user_error(config(name, None, tasks, tmp_path))
    absent = tmp_path / "absent" / path.name
    assert str(absent) in user_error(config(name, absent, tasks, tmp_path))
    junk = tmp_path / f"junk{''.join(path.suffixes)}"
    junk.write_bytes(bytes(range(256)) * 4)
    assert str(junk) in user_error(config(name, junk, tasks, tmp_path))
