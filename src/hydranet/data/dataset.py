"""The two data shapes of hydranet: what a Source returns (`RawData`) and what training reads (`Dataset`).

A Source only reads examples; encoding labels, splitting and normalizing happen once in `data.build`,
so every source gets seeded stratified splits, masked missing labels and train-only statistics for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch


@dataclass
class RawData:
    """Examples as a source read them.

    Exactly one of `images` (uint8, (N, C, H, W)) and `frame` (raw feature columns of a table) is set.
    `labels` maps column names to raw values (strings or numbers; None/NaN/''/'?' mean missing), one
    entry per example; `split` optionally gives each example's predefined split ('train'/'val'/'test').
    """

    labels: dict[str, np.ndarray]
    images: torch.Tensor | None = None
    frame: pd.DataFrame | None = None
    split: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.frame)

    @property
    def kind(self) -> str:
        return "image" if self.images is not None else "table"


@dataclass
class Dataset:
    """Encoded, normalized tensors in memory plus the index of each split.

    `x` is float32 ((N, C, H, W) images or (N, F) tables); `targets[task]` is int64 class indices with
    -1 for missing (classification) or float32 with NaN for missing (binary, multilabel, regression).
    `info` is JSON-able and is all that `predict` needs to turn new inputs into model inputs.
    """

    x: torch.Tensor
    targets: dict[str, torch.Tensor]
    index: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> dict[str, torch.Tensor]:
        """One split as a batch-like dict {"x": …, task: …} of contiguous tensors."""
        idx = self.index[name]
        out = {"x": self.x[idx]}
        out.update({task: y[idx] for task, y in self.targets.items()})
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


MISSING_STRINGS = frozenset({"", "?", "nan", "NaN", "NA", "N/A", "null", "None"})


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a raw label is missing (None, NaN, '', '?', 'NA' …)."""
    series = pd.Series(values, dtype=object)
    text = series.map(lambda v: str(v).strip() if v is not None else "")
    return (series.isna() | text.isin(MISSING_STRINGS)).to_numpy(dtype=bool, copy=True)
