"""Seeded train/val/test splits: by fraction, stratified on a task, or as the source predefined them.

Vectorized: examples are ranked at random inside their stratum, and each rank's position in the
stratum decides its split, so every class keeps about the same share in every split.
"""

from __future__ import annotations

import numpy as np
import torch

from hydranet.config import SplitConfig
from hydranet.errors import UserError
from hydranet.randomness import Purpose, numpy_stream, stream

SPLITS = ("train", "val", "test")
# Folder names that mean a predefined split (image_folder's class-per-folder and dense layouts), any case.
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def make_splits(n: int, cfg: SplitConfig, seed: int, strata: np.ndarray | None = None,
                predefined: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Index tensors of the train, val and test examples (sorted, disjoint, covering all n)."""
    rng = numpy_stream(seed, Purpose.SPLIT)
    strata = np.zeros(n, dtype=np.int64) if strata is None else strata
    if predefined is None:
        split = _fractions(strata, rng, test=cfg.test, val=cfg.val)
    else:
        split = _carve(np.asarray(predefined, dtype=object), strata, rng, cfg)
    index = {name: torch.from_numpy(np.flatnonzero(split == name)) for name in SPLITS}
    if len(index["train"]) == 0:
        raise UserError(f"data.split: the train split is empty ({n} examples, val={cfg.val}, test={cfg.test})")
    return index


def _fractions(strata: np.ndarray, rng: np.random.Generator, test: float, val: float) -> np.ndarray:
    """Assign 'test' to the first `test` share of each stratum's random order, then 'val', then 'train'."""
    n = len(strata)
    order = np.lexsort((rng.random(n), strata))  # by stratum, randomly inside it
    sorted_strata = strata[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_strata)) + 1]
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    position = (rank + 0.5) / np.repeat(sizes, sizes)  # in (0, 1): where the example falls in its stratum
    split_sorted = np.where(position < test, "test", np.where(position < test + val, "val", "train"))
    split = np.empty(n, dtype=object)
    split[order] = split_sorted
    return split


def _carve(predefined: np.ndarray, strata: np.ndarray, rng: np.random.Generator, cfg: SplitConfig) -> np.ndarray:
    """Keep the source's splits; carve the missing val (and test) shares out of its train split."""
    split = predefined.copy()
    has = set(split.tolist())
    train = np.flatnonzero(split == "train")
    test = 0.0 if "test" in has else cfg.test
    val = 0.0 if "val" in has else cfg.val
    if (test or val) and len(train):
        split[train] = _fractions(strata[train], rng, test=test, val=val)
    return split


def label_subset(train: torch.Tensor, fraction: float, seed: int, strata: np.ndarray | None = None) -> torch.Tensor:
    """A seeded `fraction` of the train indices, the same share of every stratum (class-balanced few-label
    subsets, as label-efficiency studies use); nested: a smaller fraction keeps a subset of a larger one."""
    if fraction >= 1:
        return train
    rng = numpy_stream(seed, Purpose.LABELS)
    strata = np.zeros(len(train), dtype=np.int64) if strata is None else strata[train.numpy()]
    keep = _fractions(strata, rng, test=fraction, val=0.0) == "test"
    if not keep.any():
        raise UserError(f"data.labels_fraction: {fraction} of {len(train)} train examples keeps none; use a larger fraction")
    return train[torch.from_numpy(keep)]


def random_rows(arrays: dict[str, torch.Tensor], limit: int | None, seed: int) -> dict[str, torch.Tensor]:
    """`limit` rows of every array drawn at random (seeded), kept in their split order; all rows when `limit`
    is None or not smaller. Not the first `limit`: a predefined split is often stored sorted by class
    (CIFAR-10's folders are), and its first 1,000 test images would all be airplanes."""
    n = len(next(iter(arrays.values())))
    if limit is None or limit >= n:
        return arrays
    pick = torch.randperm(n, generator=stream(seed, Purpose.ROWS))[:limit].sort().values
    return {k: v[pick.to(v.device)] for k, v in arrays.items()}
