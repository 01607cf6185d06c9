"""The dense `image_folder` layout: images plus parallel folders of per-pixel label maps (Cityscapes/NYUv2 style).

    root/images/<name>.png            root/<label>/<name>.png or .npy        one pool, split by fraction
    root/<train|val|test>/images/…    root/<train|val|test>/<label>/…        predefined splits

Each folder beside `images/` (or `image/`) is a label column named after it; a map belongs to the image with the same
path inside its folder, suffix aside. An image without a map in a label folder has that label missing (every pixel
unlabeled, masked like any missing label); a map without an image, a map of another size than its image, a file of
other channels than the rest of its folder, or an unreadable file is a UserError naming the file.
"""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.images import GREY_MODES, decode_many, is_image_name
from hydranet.data.split import SPLIT_FOLDERS, SPLITS
from hydranet.errors import UserError

IMAGE_FOLDERS = ("images", "image")  # NYUv2 in LibMTL's layout says `image`
MAP_SUFFIXES = (".png", ".npy")
# A 3-channel label PNG holds unit vectors (normals) as 8-bit colours: v = colour / 255 · 2 − 1.
VECTOR_SCALE, VECTOR_SHIFT = 2.0 / 255.0, -1.0


def image_dir(folder: Path) -> Path | None:
    """The images folder of a dense layout group (root or one split folder), None if there is none."""
    return next((folder / name for name in IMAGE_FOLDERS if (folder / name).is_dir()), None)


def is_dense_layout(root: Path) -> bool:
    """Whether a folder holds the dense layout: an `images/` folder in it or in one of its split folders."""
    groups = [root, *(child for child in root.iterdir() if child.is_dir() and child.name.lower() in SPLIT_FOLDERS)]
    return any(image_dir(group) is not None for group in groups)


def load_dense_folder(root: Path, cfg: Config) -> RawData:
    """Images (uint8, (N, C, H, W), at their own size) and one float32 (N, H, W[, 3]) map column per label folder,
    NaN for the examples without a map."""
    if cfg.data.image_size is not None:
        raise UserError(f"data.image_size: the dense image_folder layout ({root}) keeps the images' own size, since "
                        f"resizing would blur the label maps; set it to null")
    groups = split_groups(root)
    images, splits, keys = [], [], []
    for split, folder in groups:
        found = _files(image_dir(folder), is_image_name)
        images += [(str(path), path.read_bytes()) for path in found.values()]
        keys += [(folder, key) for key in found]
        splits += [split] * len(found)
    if not images:
        raise UserError(f"{root}: no image files in its images/ folder(s)")
    pixels = decode_many(images, None)
    labels = read_label_columns(groups, keys, tuple(pixels.shape[2:]), cfg.data.label_scale)
    unknown = sorted(set(cfg.data.label_scale) - set(labels))
    if unknown:
        raise UserError(f"data.label_scale: {root} has no label folder {unknown[0]!r} "
                        f"(label folders: {', '.join(labels) or 'none'})")
    has_splits = splits[0] is not None
    return RawData(labels=labels, images=pixels, split=np.array(splits, dtype=object) if has_splits else None)


def split_groups(root: Path) -> list[tuple[str | None, Path]]:
    """[(None, root)] for one pool, else [(split, split folder)] for each split folder, each with its images/."""
    if image_dir(root) is not None:
        return [(None, root)]
    groups = [(SPLIT_FOLDERS[child.name.lower()], child) for child in root.iterdir()
              if child.is_dir() and child.name.lower() in SPLIT_FOLDERS]
    groups.sort(key=lambda group: (SPLITS.index(group[0]), group[1].name))  # train's examples first
    for _, folder in groups:
        if image_dir(folder) is None:
            raise UserError(f"{folder}: a split folder of the dense layout needs an images/ folder beside its label folders")
    return groups


def _files(folder: Path, wanted) -> dict[str, Path]:
    """Files under `folder` that `wanted(name)` accepts, by their path inside it without suffix, sorted; hidden
    files and folders are skipped."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if not any(part.startswith(".") for part in rel.split("/")) and wanted(rel):
            found[PurePosixPath(rel).with_suffix("").as_posix()] = path
    return found


def read_label_columns(groups: list[tuple[str | None, Path]], keys: list[tuple[Path, str]], size: tuple[int, int],
                       scales: dict[str, float]) -> dict[str, np.ndarray]:
    """Every label folder of every group as one column in the images' order; `size` (H, W) is every image's."""
    names = sorted({child.name for _, folder in groups for child in folder.iterdir()
                    if child.is_dir() and child.name not in IMAGE_FOLDERS and not child.name.startswith(".")})
    row = {key: i for i, key in enumerate(keys)}
    columns = {name: read_column(name, groups, row, size, scales.get(name, 1.0)) for name in names}
    return {name: maps for name, maps in columns.items() if maps is not None}


def read_column(name: str, groups: list[tuple[str | None, Path]], row: dict[tuple[Path, str], int],
                size: tuple[int, int], scale: float) -> np.ndarray | None:
    """The maps of label folder `name` in every group, at their images' rows (`row`), NaN where a map is missing;
    None when no group has a file there. The first map decides the column's channels."""
    maps, first = None, None
    for _, folder in groups:
        if not (folder / name).is_dir():
            continue  # this split has no such maps: its examples miss the label
        for key, path in _files(folder / name, lambda rel: True).items():
            if (folder, key) not in row:
                raise UserError(f"{path}: no image {key}.* in {image_dir(folder)} for this label map")
            value = read_map(path, scale)
            if maps is None:
                maps, first = np.full((len(row), *size, *value.shape[2:]), np.nan, dtype=np.float32), path
            check_map(path, value, maps.shape[1:], first)
            maps[row[(folder, key)]] = value
    return maps


def check_map(path: Path, value: np.ndarray, expected: tuple[int, ...], first: Path) -> None:
    """A map must have its image's size and the channels of its folder's first map."""
    if value.shape[:2] != expected[:2]:
        raise UserError(f"{path}: label map is {value.shape[1]}×{value.shape[0]} (width×height) but its image is "
                        f"{expected[1]}×{expected[0]}")
    if value.shape[2:] != expected[2:]:
        raise UserError(f"{path}: label map has {_channels(value.shape)} channel(s) but {first} has "
                        f"{_channels(expected)}; a label folder holds one kind of map")


def _channels(shape: tuple[int, ...]) -> int:
    return shape[2] if len(shape) == 3 else 1


def read_map(path: Path, scale: float) -> np.ndarray:
    """One label file as float32 (H, W) or (H, W, 3): a .npy as stored; a one-channel PNG (class indices, 8/16-bit
    depths, edges) divided by `scale` (`data.label_scale`); an RGB PNG as vectors in [−1, 1]."""
    suffix = path.suffix.lower()
    if suffix not in MAP_SUFFIXES:
        raise UserError(f"{path}: not a label map (expected {' or '.join(MAP_SUFFIXES)})")
    value = _read_npy(path) if suffix == ".npy" else _read_png(path, scale)
    if value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[2] != 3):
        raise UserError(f"{path}: a label map is (H, W) or (H, W, 3), got shape {value.shape}")
    return value.astype(np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        value = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises ValueError, OSError, EOFError … for a broken file
        raise UserError(f"{path}: not a readable .npy array ({type(err).__name__}: {err})") from None
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise UserError(f"{path}: a label map holds numbers, found dtype {value.dtype}")
    return value


def _read_png(path: Path, scale: float) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(path.read_bytes()))
        image.load()
    except Exception as err:  # PIL raises many types for broken files
        raise UserError(f"{path}: not a readable PNG ({type(err).__name__}: {err})") from None
    if image.mode in GREY_MODES or image.mode == "P":  # "P": a palette PNG's indices are the classes (VOC)
        return np.asarray(image, dtype=np.float64) / scale
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.float64) * VECTOR_SCALE + VECTOR_SHIFT
    raise UserError(f"{path}: a label PNG has one channel (classes, depths, edges) or three (normals as RGB), "
                    f"found mode {image.mode}")
