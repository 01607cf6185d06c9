"""Model inputs prepared by one run re-expressed as another run prepares them (`InputMap`), so a run trained on
another split or seed (a distillation teacher) reads a student's batches exactly as it read its own.

Both preparations are affine per input (images: `(x / scale − mean) / std` per channel; tables: standardized
numbers and one-hot categories, `data/tabular.py`), so the map is one gather and one multiply-add per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hydranet.data.info import DataInfo
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError


@dataclass
class InputMap:
    """Inputs prepared as `source` does → as `target` does: `x[:, index]·scale + shift` (tables; a target column
    the source lacks, a category it never saw, is 0 as the target's encoder writes an unseen category), or
    `x·scale + shift` per channel (images, index None)."""

    scale: Tensor
    shift: Tensor
    index: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.index is not None:
            x = x.index_select(1, self.index)
        return x * self.scale + self.shift

    def to(self, device: torch.device | str) -> InputMap:
        index = None if self.index is None else self.index.to(device)
        return InputMap(self.scale.to(device), self.shift.to(device), index)


def input_map(source: DataInfo, target: DataInfo, where: str) -> InputMap | None:
    """The map from `source`'s inputs to `target`'s; None when they are prepared alike (nothing to do).

    Refused in one line naming `where`: an image run and a table, images of another shape, a table feature the
    source does not have or has as a number where the target has categories (or the reverse). A number missing
    in the source reaches the target as the source's train mean, which its standardization wrote as 0.
    """
    if source.to_dict() | {"tasks": {}} == target.to_dict() | {"tasks": {}}:
        return None
    if source.kind != target.kind:
        raise UserError(f"{where}: takes {target.kind} inputs, the student's are {source.kind} inputs")
    if source.is_image:
        return _image_map(source, target, where)
    return _table_map(source, target, where)


def _image_map(source: DataInfo, target: DataInfo, where: str) -> InputMap:
    """(x_s·std_s + mean_s)·scale_s / scale_t is the target's raw/scale; standardize it with the target's numbers."""
    if tuple(source.input_shape) != tuple(target.input_shape):
        raise UserError(f"{where}: takes inputs of shape {tuple(target.input_shape)}, the student's are "
                        f"{tuple(source.input_shape)}")
    channels = source.input_shape[0]
    mean_s, std_s = _per_channel(source, channels)
    mean_t, std_t = _per_channel(target, channels)
    ratio = source.scale / target.scale
    scale, shift = std_s * ratio / std_t, (mean_s * ratio - mean_t) / std_t
    return InputMap(scale.view(-1, 1, 1), shift.view(-1, 1, 1))


def _per_channel(info: DataInfo, channels: int) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(info.mean or [0.0] * channels, dtype=torch.float32)
    std = torch.tensor(info.std or [1.0] * channels, dtype=torch.float32)
    return mean, std


def _table_map(source: DataInfo, target: DataInfo, where: str) -> InputMap:
    """One (source index, scale, shift) per target column, in the target's column order."""
    encoder, wanted_encoder = TableEncoder.from_state(source.encoder), TableEncoder.from_state(target.encoder)
    if not (encoder.plain and wanted_encoder.plain):
        raise UserError(f"{where}: its inputs are encoded otherwise than the student's, and only standardized numbers "
                        f"and one-hot categories map onto each other (set the same data.encoder as the teacher's)")
    columns = {column["name"]: column for column in encoder.columns}
    positions = {name: i for i, name in enumerate(encoder.feature_names)}
    index, scale, shift = [], [], []
    for wanted in wanted_encoder.columns:
        name, have = wanted["name"], columns.get(wanted["name"])
        if have is None or have["kind"] != wanted["kind"]:
            found = "lacks it" if have is None else f"has it as {have['kind']}"
            raise UserError(f"{where}: reads feature {name!r} as {wanted['kind']}; the student's data {found}")
        if wanted["kind"] == "numeric":  # z_t = (z_s·σ_s + μ_s − μ_t) / σ_t
            index.append(positions[name])
            scale.append(have["std"] / wanted["std"])
            shift.append((have["mean"] - wanted["mean"]) / wanted["std"])
            continue
        for category in wanted["categories"]:
            seen = positions.get(f"{name}={category}")
            index.append(0 if seen is None else seen)
            scale.append(0.0 if seen is None else 1.0)
            shift.append(0.0)
    return InputMap(torch.tensor(scale), torch.tensor(shift), torch.tensor(index, dtype=torch.long))
