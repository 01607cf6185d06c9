"""Class-per-folder images (JPEG/PNG) from a folder or straight from a .tar/.tar.gz/.tgz archive.

Layouts: `root/<class>/*.jpg`, or predefined splits `root/{train,val,test}/<class>/*.jpg`; an archive may
wrap either in one top-level folder. Decoded sets are cached by content (see data/cache.py). A folder with an
`images/` folder holds per-pixel label maps beside it instead (`dense_folder`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hydranet.config import Config
from hydranet.data import cache
from hydranet.data.archives import ARCHIVE_SUFFIXES, tar_files
from hydranet.data.dataset import RawData
from hydranet.data.images import decode_many, image_files, is_image_name
from hydranet.data.sources.dense_folder import is_dense_layout, load_dense_folder
from hydranet.data.split import SPLIT_FOLDERS
from hydranet.errors import UserError
from hydranet.registry import register

LAYOUTS = "<class>/<image> or <train|val|test>/<class>/<image>, or unlabeled <image> files only"


@register("source", "image_folder")
def load_image_folder(cfg: Config) -> RawData:
    """Images labelled by their folder name (task column `label`), with predefined splits if present; or, in the
    dense layout, images with a label map column per folder beside `images/`."""
    path = _source_path(cfg)
    size = cfg.data.image_size
    if path.is_dir() and is_dense_layout(path):
        return load_dense_folder(path, cfg)
    if path.is_dir():
        # Read once: the same bytes give the cache key and, on a miss, the images.
        items = read_folder(path)
        digest = cache.files_digest(items)
        return cache.cached(cfg, "image_folder", digest, lambda: decode_set(items, size, f"{path}/"), image_size=size)
    digest = cache.file_digest(path)
    return cache.cached(cfg, "image_folder", digest, lambda: decode_set(read_archive(path), size, f"{path}:"), image_size=size)


def _source_path(cfg: Config) -> Path:
    expected = f"a folder of class folders or a {'/'.join(ARCHIVE_SUFFIXES)} archive of them"
    if cfg.data.path is None:
        raise UserError(f"data.path: required for source image_folder (expected {expected})")
    path = Path(cfg.data.path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: not found (data.path of source image_folder: expected {expected})")
    if path.is_file() and not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise UserError(f"{path}: not a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive (expected {expected})")
    return path


def read_folder(root: Path) -> list[tuple[str, bytes]]:
    """(relative posix path, bytes) of every image file under `root`, sorted by path."""
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in image_files(root)]


def read_archive(path: Path) -> list[tuple[str, bytes]]:
    """(member path, bytes) of every image in a tar archive, streamed and checked complete (data/archives.py)."""
    items = [(name.removeprefix("./"), data) for name, data in tar_files(path, lambda n: is_image_name(n.removeprefix("./")))]
    return sorted(items, key=lambda item: item[0])


def decode_set(items: list[tuple[str, bytes]], size: int | None, prefix: str) -> RawData:
    """Decode named images into RawData; `prefix` + name is how errors point at a file."""
    if not items:
        raise UserError(f"{prefix.rstrip(':/')}: no image files found (expected {LAYOUTS})")
    splits, classes = parse_layout([name for name, _ in items], prefix)
    images = decode_many([(prefix + name, data) for name, data in items], size)
    return RawData(labels={"label": classes}, images=images, split=splits)


def parse_layout(names: list[str], prefix: str = "") -> tuple[np.ndarray | None, np.ndarray]:
    """(split per file or None, class per file) from relative paths; one wrapping top folder is ignored.

    Images directly in the root (no class folders) are unlabeled: their class is None (missing), which
    self-supervised pretraining accepts.
    """
    parts = [name.split("/") for name in names]
    if all(len(p) == 1 for p in parts):
        return None, np.full(len(names), None, dtype=object)
    tops = {p[0] for p in parts}
    if len(tops) == 1 and min(map(len, parts)) >= 3 and next(iter(tops)).lower() not in SPLIT_FOLDERS:
        parts = [p[1:] for p in parts]  # archive made of `dataset/…`: the wrapper is not a class
    # The layout most files follow; the first file that does not is then the one to blame.
    has_splits = 2 * sum(len(p) == 3 and p[0].lower() in SPLIT_FOLDERS for p in parts) > len(parts)
    depth = 3 if has_splits else 2
    for name, p in zip(names, parts):
        if len(p) != depth or (has_splits and p[0].lower() not in SPLIT_FOLDERS):
            raise UserError(f"{prefix}{name}: does not fit the layout {LAYOUTS} of the other files")
    classes = np.array([p[-2] for p in parts], dtype=object)
    splits = np.array([SPLIT_FOLDERS[p[0].lower()] for p in parts], dtype=object) if has_splits else None
    return splits, classes
