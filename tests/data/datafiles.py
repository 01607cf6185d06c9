"""Small files for the data tests: PNGs with known pixels, tar archives, the shared data folder.

Imported by conftest.py and the tests (a plain module, since tests/ folders are not packages).
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def write_png(path: Path, array: np.ndarray) -> None:
    """uint8 (H, W) or (H, W, 3) array → PNG (lossless, so tests can compare pixels exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def pixels(seed: int, size=(4, 5), grey: bool = False) -> np.ndarray:
    """A deterministic random image of (H, W) = size."""
    shape = size if grey else (*size, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def make_tar(folder: Path, archive: Path, wrapper: str | None = None) -> Path:
    """Pack a folder's content into a .tar.gz, optionally under one top-level folder."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            tar.add(path, arcname=f"{wrapper}/{rel}" if wrapper else rel, recursive=False)
    return archive


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar(folder, per_batch=3):
    """The cifar-10-batches-py layout with tiny batches (bytes keys, as in the original Python 2 pickles)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        batches[name] = (data, labels)
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels, b"batch_label": name.encode()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in CIFAR_NAMES]}))
    return batches


def dense_folder(root: Path, splits: tuple[str, ...] = ("train", "test"), per_split: int = 4, size=(6, 8)) -> Path:
    """A tiny dense image_folder set: `<split>/images/<i>.png` RGB images, `<split>/label/<i>.png` class indices
    (the image's index mod 3 on the left half, 0 on the right), `<split>/depth/<i>.png` 16-bit millimetres (1000 +
    100·i everywhere) and `<split>/normals/<i>.npy` (H, W, 3) facing the camera; the last image of every split has
    no label map (a missing label)."""
    height, width = size
    for s, split in enumerate(splits):
        for i in range(per_split):
            index = s * per_split + i
            folder = root / split
            write_png(folder / "images" / f"{i}.png", pixels(index, size))
            if i == per_split - 1:
                continue
            label = np.zeros(size, dtype=np.uint8)
            label[:, : width // 2] = index % 3
            write_png(folder / "label" / f"{i}.png", label)
            write_png(folder / "depth" / f"{i}.png", np.full(size, 1000 + 100 * index, dtype=np.uint16))
            (folder / "normals").mkdir(parents=True, exist_ok=True)
            np.save(folder / "normals" / f"{i}.npy", np.broadcast_to(np.array([0, 0, -1.0]), (height, width, 3)))
    return root
