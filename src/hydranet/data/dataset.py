"""The two data shapes of hydranet: what a Source returns (`RawData`) and what training reads (`Dataset`).

A Source only reads examples; encoding labels, splitting and normalizing happen once in `data.build`,
so every source gets seeded stratified splits, masked missing labels and train-only statistics for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from hydranet.data.info import IMAGE, SEQUENCE, TABLE, TEXT, DataInfo


@dataclass
class RawData:
    """Examples as a source read them.

    Exactly one of `images` (uint8, (N, C, H, W)), `frame` (raw feature columns of a table), `texts` (one string
    per example; `frame` then keeps the text columns they were joined from) and `series` (float32 (N, T, F + 1):
    numeric sequences, padded, the last channel 1 where a step is real and 0 where it is padding) is set.
    `labels` maps column names to raw values (strings or numbers; None/NaN/''/'?' mean missing), one
    entry per example; `split` optionally gives each example's predefined split ('train'/'val'/'test').
    `columns` holds a table's columns that are read but are not features unless also in `frame`: the example-weight
    column (`data.weight_column`) and the sensitive attributes (`fairness.sensitive`), raw, one entry per example.
    """

    labels: dict[str, np.ndarray]
    images: torch.Tensor | None = None
    frame: pd.DataFrame | None = None
    split: np.ndarray | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    texts: list[str] | None = None
    series: torch.Tensor | None = None

    def __len__(self) -> int:
        for inputs in (self.images, self.texts, self.series):
            if inputs is not None:
                return len(inputs)
        return len(self.frame)

    @property
    def kind(self) -> str:
        if self.images is not None:
            return IMAGE
        if self.texts is not None:
            return TEXT
        return SEQUENCE if self.series is not None else TABLE


class ImageNormalizer:
    """Stored images (uint8 0..255, or floats) → model inputs: divided by `scale`, then standardized per channel.

    One function for training batches, whole splits and prediction, so they all see the same numbers.
    """

    def __init__(self, info: DataInfo, device: torch.device | str = "cpu"):
        self.scale = info.scale
        self.mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / self.scale - self.mean) / self.std  # keeps the memory format (channels_last)


@dataclass
class Dataset:
    """Examples in memory plus the index of each split.

    `x` holds images as the source read them ((N, C, H, W), usually uint8: a quarter of float32's memory,
    normalized batch by batch) or tables already encoded as float32 (N, F). `targets[task]` is int64 class
    indices with -1 for missing (classification) or float32 with NaN for missing (binary, multilabel,
    regression). `info` is all that `predict` needs to turn new inputs into model inputs (saved as data.json).
    `weights[task]` (float32 (N,), optional) weighs each example in that task's training loss; a batch carries it
    as `weight_key(task)` beside the task's targets.
    `extras` holds other per-example tensors (N, …) that a training component reads from its batches under their own
    key, which contains `@` so it never meets a task (the sensitive group of adversarial debiasing).
    `frame` keeps a table's raw rows as the source read them, for the monitoring reference a run stores (read
    once, not again at the end of training); None for images.
    """

    x: torch.Tensor
    targets: dict[str, torch.Tensor]
    index: dict[str, torch.Tensor]
    info: DataInfo
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    frame: pd.DataFrame | None = None

    def split(self, name: str, stored: bool = False) -> dict[str, torch.Tensor]:
        """One split as a batch-like dict {"x": …, task: …} of contiguous tensors; `x` as model inputs
        (normalized float32), or as stored when `stored` (then `normalizer` makes model inputs of batches)."""
        idx = self.index[name]
        normalize = None if stored else self.normalizer()
        out = {"x": self.x[idx] if normalize is None else normalize(self.x[idx])}
        out.update({task: y[idx] for task, y in self.targets.items()})
        out.update({weight_key(task): w[idx] for task, w in self.weights.items()})
        out.update({key: values[idx] for key, values in self.extras.items()})
        return out

    def normalizer(self, device: torch.device | str = "cpu") -> ImageNormalizer | None:
        """What turns stored images into model inputs on `device`; None for tables (stored already encoded)."""
        return ImageNormalizer(self.info, device) if self.info.is_image else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


def weight_key(task: str) -> str:
    """The batch key of a task's example weights: `@` cannot occur in a task name, so it never meets one."""
    return f"{task}@weight"


MISSING_STRINGS = frozenset({"", "?", "nan", "NaN", "NA", "N/A", "null", "None"})


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a raw label is missing (None, NaN, '', '?', 'NA' …)."""
    series = pd.Series(values, dtype=object)
    text = series.map(lambda v: str(v).strip() if v is not None else "")
    return (series.isna() | text.isin(MISSING_STRINGS)).to_numpy(dtype=bool, copy=True)
