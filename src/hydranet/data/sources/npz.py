"""Arrays from a NumPy .npz file: `x` holds the inputs, every other array is a label column.

`x` of shape (N, C, H, W) or (N, H, W) is an image set, (N, F) a table; an optional `split` array gives
predefined train/val/test splits.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.finite import array_item, reject_out_of_range
from hydranet.data.images import resize_images
from hydranet.data.sources.table import read_split, select_features
from hydranet.errors import UserError
from hydranet.registry import register


@register("source", "npz")
def load_npz(cfg: Config) -> RawData:
    """Images or a table from array `x`; labels from the other arrays (one value per example each)."""
    path = npz_path(cfg)
    arrays = read_arrays(path)
    if "x" not in arrays:
        raise UserError(f"{path}: no array 'x' (arrays: {', '.join(arrays) or 'none'}); expected x plus one array per label")
    x = arrays.pop("x")
    for name, values in arrays.items():
        if values.ndim != 1 or len(values) != len(x):
            raise UserError(f"{path}: array {name!r} has shape {values.shape}; expected ({len(x)},), one value per row of x")
    reject_out_of_range(str(path), {"x": x, **arrays}, array_item)
    split = read_split(pd.Series(arrays.pop("split")), str(path), "array") if "split" in arrays else None
    labels = {name: values for name, values in arrays.items()}
    if x.ndim == 2:
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        return RawData(labels=labels, frame=select_features(frame, cfg, exclude={}, where=str(path)), split=split)
    if x.ndim in (3, 4):
        images = _images(x[:, None] if x.ndim == 3 else x, path)
        return RawData(labels=labels, images=resize_images(images, cfg.data.image_size), split=split)
    raise UserError(f"{path}: array 'x' has shape {x.shape}; expected (N, C, H, W) or (N, H, W) images or an (N, F) table")


def npz_path(cfg: Config) -> Path:
    """`data.path` as an existing .npz file, or a UserError saying what was expected."""
    source, expected = cfg.data.source, "expected a .npz file with an array 'x'"
    if cfg.data.path is None:
        raise UserError(f"data.path: required for source {source} ({expected})")
    path = Path(cfg.data.path).expanduser()
    if path.is_dir():
        raise UserError(f"{path}: is a folder (data.path of source {source}: {expected})")
    if not path.is_file():
        raise UserError(f"{path}: file not found (data.path of source {source}: {expected})")
    return path


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file; one that needs pickle (ragged lists, objects) is a UserError naming the file."""
    # allow_pickle=False: object arrays would need pickle, which can run code; text labels load fine as '<U'.
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"{path}: not a readable .npz file without pickled objects ({type(err).__name__}: {err})") from None


def _images(x: np.ndarray, path: Path) -> torch.Tensor:
    """uint8 as is; integers within 0..255 as uint8; anything else float32 (e.g. floats in [0, 1])."""
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.integer) and (x.size == 0 or (x.min() >= 0 and x.max() <= 255)):
        return torch.from_numpy(x.astype(np.uint8))
    if np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_:
        return torch.from_numpy(x.astype(np.float32))
    raise UserError(f"{path}: array 'x' has dtype {x.dtype}; expected numbers")
