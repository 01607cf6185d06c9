"""CIFAR-10 in its original `cifar-10-batches-py` pickle format, from a folder or `cifar-10-python.tar.gz`.

Task column `label` holds class names; the data set's own train/test split is kept.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from hydranet.config import Config
from hydranet.data import cache
from hydranet.data.archives import ARCHIVE_SUFFIXES, tar_files
from hydranet.data.dataset import RawData
from hydranet.data.images import resize_images
from hydranet.errors import UserError
from hydranet.registry import register

BATCH = re.compile(r"^(data_batch_\d+|test_batch|batches\.meta)$")
EXPECTED = "a cifar-10-batches-py folder (data_batch_1..5, test_batch, batches.meta) or cifar-10-python.tar.gz"
# The pickles hold numpy arrays and lists only; refusing every other global keeps a pickle from running code.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


@register("source", "cifar10")
def load_cifar10(cfg: Config) -> RawData:
    """The 60,000 32×32 colour images (50,000 train, 10,000 test), cached after the first read."""
    path = _source_path(cfg)
    size = cfg.data.image_size
    if path.is_file():
        digest = cache.file_digest(path)
        return cache.cached(cfg, "cifar10", digest, lambda: _build(_archive_batches(path), str(path), size), image_size=size)
    batches = _folder_batches(path)  # read once: the bytes give both the cache key and, on a miss, the images
    digest = cache.files_digest(batches.items())
    return cache.cached(cfg, "cifar10", digest, lambda: _build(batches, str(path), size), image_size=size)


def _source_path(cfg: Config) -> Path:
    if cfg.data.path is None:
        raise UserError(f"data.path: required for source cifar10 (expected {EXPECTED})")
    path = Path(cfg.data.path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: not found (data.path of source cifar10: expected {EXPECTED})")
    if path.is_file() and not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise UserError(f"{path}: a file but not a {'/'.join(ARCHIVE_SUFFIXES)} archive (expected {EXPECTED})")
    return path


def _folder_batches(path: Path) -> dict[str, bytes]:
    """Batch files of a folder, also when given the folder that contains `cifar-10-batches-py`."""
    inner = path / "cifar-10-batches-py"
    folder = inner if inner.is_dir() else path
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and BATCH.match(p.name)}


def _archive_batches(path: Path) -> dict[str, bytes]:
    """Batch files streamed from the tar archive (nothing extracted to disk), checked complete."""
    return {name.rsplit("/", 1)[-1]: data for name, data in tar_files(path, lambda n: bool(BATCH.match(n.rsplit("/", 1)[-1])))}


def _build(batches: dict[str, bytes], where: str, size: int | None) -> RawData:
    """Stack the train batches (in order) then the test batch into images, class names and splits."""
    train = sorted((n for n in batches if n.startswith("data_batch_")), key=lambda n: int(n.rsplit("_", 1)[1]))
    missing = [n for n in ("batches.meta", "test_batch") if n not in batches] + ([] if train else ["data_batch_1"])
    if missing:
        raise UserError(f"{where}: no {', '.join(missing)} (expected {EXPECTED})")
    names = [_text(n) for n in _field(_unpickle(batches["batches.meta"], f"{where}:batches.meta"), "label_names", f"{where}:batches.meta")]
    images, codes, splits = [], [], []
    for name in [*train, "test_batch"]:
        data, labels = _batch(batches[name], f"{where}:{name}")
        images.append(data)
        codes.append(labels)
        splits.append(np.full(len(labels), "test" if name == "test_batch" else "train", dtype=object))
    codes_all = np.concatenate(codes)
    if len(codes_all) and (codes_all.min() < 0 or codes_all.max() >= len(names)):
        raise UserError(f"{where}: labels outside 0..{len(names) - 1} (batches.meta names {len(names)} classes)")
    pixels = torch.from_numpy(np.concatenate(images)).view(-1, 3, 32, 32)  # rows are R, G, B planes of 32×32
    labels = np.asarray(names, dtype=object)[codes_all]
    return RawData(labels={"label": labels}, images=resize_images(pixels, size), split=np.concatenate(splits))


def _batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (n, 3072), int64 (n,)) of one pickled batch."""
    batch = _unpickle(raw, where)
    try:
        data = np.asarray(_field(batch, "data", where), dtype=np.uint8)
        labels = np.asarray(_field(batch, "labels", where), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: not a CIFAR-10 batch ({err})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise UserError(f"{where}: data has shape {data.shape} for {len(labels)} labels; expected (n, 3072)")
    return data, labels


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR-10 batch holds only arrays and lists")
        return super().find_class(module, name)


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        value = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # pickle raises many types for damaged or foreign files
        raise UserError(f"{where}: not a CIFAR-10 pickle ({type(err).__name__}: {err})") from None
    if not isinstance(value, dict):
        raise UserError(f"{where}: not a CIFAR-10 pickle (expected a dict, got {type(value).__name__})")
    return value


def _field(batch: dict, key: str, where: str):
    """A batch entry; the original pickles (Python 2) have bytes keys, re-pickled copies str keys."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise UserError(f"{where}: not a CIFAR-10 pickle (no key {key!r})")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
