"""Numeric sequences from a NumPy .npz file: `x` (N, T, F) padded to T steps, `lengths` (N,) the real steps of
each, every other array a label column (one value per sequence); an optional `split` array as for npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.sequences import padded_series
from hydranet.data.sources.npz import npz_path, read_arrays
from hydranet.data.sources.table import read_split
from hydranet.errors import UserError
from hydranet.registry import register


@register("source", "sequence")
def load_sequences(cfg: Config) -> RawData:
    """Padded sequences with their lengths; ragged lists cannot be stored without pickle and are refused by the
    reader, so a file either holds one rectangular `x` or is named in the error."""
    path = npz_path(cfg)
    series, arrays = read_sequences(path)
    for name, values in arrays.items():
        if values.ndim != 1 or len(values) != len(series):
            raise UserError(f"{path}: array {name!r} has shape {values.shape}; expected ({len(series)},), one value "
                            f"per sequence of x")
    split = read_split(pd.Series(arrays.pop("split")), str(path), "array") if "split" in arrays else None
    return RawData(labels=dict(arrays), series=series, split=split)


def read_sequences(path: Path) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The file's `x` and `lengths` as a padded series (N, T, F + 1), and its other arrays (training and `predict`
    read sequence files this one way)."""
    arrays = read_arrays(path)
    missing = [name for name in ("x", "lengths") if name not in arrays]
    if missing:
        raise UserError(f"{path}: no array {missing[0]!r} (arrays: {', '.join(arrays) or 'none'}); expected x (N, T, F), "
                        f"lengths (N,) and one array per label")
    x, lengths = arrays.pop("x"), arrays.pop("lengths")
    if x.dtype.kind not in "fiub":
        raise UserError(f"{path}: array 'x' has dtype {x.dtype}; expected numbers")
    return padded_series(x.astype(np.float64), lengths, str(path)), arrays
