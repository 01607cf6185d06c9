"""Fixtures of the data tests: configs pointing at files made in tmp_path, tiny PNG folders.

Everything is generated per test, and every cache lives in tmp_path (never ~/.cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.data.datafiles import pixels, write_png

from hydranet.config import Config


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(source, path=None, tasks=None, **data_fields) → Config with its cache in tmp_path."""

    def make(source: str, path=None, tasks=None, **data) -> Config:
        data = {"source": source, "path": None if path is None else str(path), "cache_dir": str(tmp_path / "cache"), **data}
        return Config.model_validate({"data": data, "tasks": tasks or {"label": {}}})

    return make


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """root/<class>/<i>.png: 2 cats, 3 dogs, RGB 4×5 (H×W)."""
    root = tmp_path / "pets"
    for i in range(2):
        write_png(root / "cat" / f"{i}.png", pixels(i))
    for i in range(3):
        write_png(root / "dog" / f"{i}.png", pixels(10 + i))
    return root


@pytest.fixture
def split_folder(tmp_path) -> Path:
    """root/{train,test}/<class>/<i>.png, grey 6×6."""
    root = tmp_path / "split"
    seed = 100
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                seed += 1
                write_png(root / split / cls / f"{i}.png", pixels(seed, (6, 6), grey=True))
    return root
