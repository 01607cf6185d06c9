"""The graph's named inputs for each kind of run, and how the model input `x` that `predict` builds maps onto them.

Images and tables: one float32 `x`. Texts: `input_ids` and `attention_mask` (int64, (batch, sequence)), as Hugging
Face models take them; numeric sequences: `values` (standardized, (batch, sequence, features)) and `mask` (int64).
The sequence length is dynamic up to the trained one, so a batch is padded only to its longest example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hydranet.data import DataInfo
from hydranet.data.info import SEQUENCE, TEXT
from hydranet.data.text import PAD_ID

INPUT = "x"
NAMES = {TEXT: ("input_ids", "attention_mask"), SEQUENCE: ("values", "mask")}


@dataclass(frozen=True)
class GraphInputs:
    """What one run's graph takes; `split` and `join` are inverse on what `predict` builds (padding trailing)."""

    kind: str
    input_shape: tuple[int, ...]  # one example as the model sees it (DataInfo.input_shape)
    spatial: bool = False  # an image graph that takes any height and width (a trunk whose layers all do: `any_size`)

    @classmethod
    def of(cls, info: DataInfo, spatial: bool = False) -> GraphInputs:
        return cls(info.kind, tuple(info.input_shape), spatial)

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES.get(self.kind, (INPUT,))

    @property
    def sequential(self) -> bool:
        return self.kind in NAMES

    def split(self, x: Tensor) -> tuple[Tensor, ...]:
        """The graph's inputs for model inputs `x`: ids and their mask (pad id 0 is padding), or values and the
        validity channel as the mask."""
        if self.kind == TEXT:
            return x, (x != PAD_ID).long()
        if self.kind == SEQUENCE:
            return x[..., :-1].float(), (x[..., -1] > 0.5).long()
        return (x.float(),)

    def join(self, *inputs: Tensor) -> Tensor:
        """The model input from the graph's inputs, inside the graph. The mask decides what is padding: ids and
        values where it is 0 are replaced by the padding the model knows (id 0, zeros), so a caller may pad with
        anything."""
        if self.kind == TEXT:
            ids, mask = inputs
            return ids * mask
        if self.kind == SEQUENCE:
            values, mask = inputs
            valid = mask.to(values.dtype)[..., None]  # (B, T, 1)
            return torch.cat([values * valid, valid], dim=-1)
        return inputs[0]

    def trim(self, x: Tensor) -> Tensor:
        """`x` cut to its longest real example (texts, sequences): what a caller of the graph would feed."""
        if not self.sequential:
            return x
        longest = int(self.split(x)[1].sum(dim=1).max()) if len(x) else 1
        return x[:, :max(longest, 1)]

    def feeds(self, x: Tensor) -> dict[str, np.ndarray]:
        """ONNX Runtime's input dict for model inputs `x`, trimmed."""
        return {name: t.contiguous().numpy() for name, t in zip(self.names, self.split(self.trim(x)))}

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...]:
        """torch.export's dynamic dimensions per input: the batch, for texts and sequences the length up to the
        trained one (learned positions have no rows beyond it), for a spatial image graph its height and width."""
        batch = torch.export.Dim("batch")
        if self.spatial:
            return ({0: batch, 2: torch.export.Dim("height"), 3: torch.export.Dim("width")},)
        if not self.sequential:
            return ({0: batch},)
        sequence = torch.export.Dim("sequence", max=self.input_shape[0])
        return tuple({0: batch, 1: sequence} for _ in self.names)

    def describe(self) -> list[dict[str, Any]]:
        """outputs.json's `inputs`: name, dtype and shape of each."""
        if not self.sequential:
            shape = [*self.input_shape[:-2], "height", "width"] if self.spatial else list(self.input_shape)
            return [{"name": INPUT, "dtype": "float32", "shape": ["batch", *shape]}]
        first = ({"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]} if self.kind == TEXT else
                 {"name": "values", "dtype": "float32", "shape": ["batch", "sequence", self.input_shape[1] - 1]})
        return [first, {"name": self.names[1], "dtype": "int64", "shape": ["batch", "sequence"]}]
