"""What an exported model needs around it, as plain JSON: preprocessing.json (raw rows or images → the input
tensor, exactly as `predict` prepares them) and outputs.json (each named output → what `predict` writes).
"""

from __future__ import annotations

from typing import Any

from hydranet.data import DataInfo
from hydranet.data.dataset import MISSING_STRINGS
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.export.graph import INPUT, OPSET
from hydranet.tasks import Task

TABLE_STEPS = [
    "read the CSV with pandas, '?' as missing (na_values=['?']); strip column names",
    "in text columns, strip each cell, treat `missing` markers as missing, and read the column as numbers when "
    "every present cell is one",
    "numeric column: (value - mean) / std in float64, then float32; missing -> 0 (the train mean)",
    "categorical column: one float per category in `categories` order, 1.0 where the stripped text equals it; "
    "missing or unseen values -> all 0",
    "concatenate in `columns` order: a float32 matrix (N, width) whose columns are `features`",
]
IMAGE_STEPS = [
    "decode with Pillow; if height == width: image.draft(mode, (size, size)) (JPEG's cheap downscale), "
    "convert to `mode`, resize to size x size with Image.Resampling.BILINEAR when it differs; "
    "otherwise every image must already be height x width",
    "array (H, W, C) uint8 -> (C, H, W) float32; x = (pixels / scale - mean[c]) / std[c] per channel",
    "stack into (N, C, H, W)",
]


def preprocessing(info: DataInfo) -> dict[str, Any]:
    """preprocessing.json: the fitted train-split statistics and the steps that apply them."""
    base = {"input": INPUT, "dtype": "float32", "kind": info.kind}
    if info.is_image:
        return {**base, "layout": "NCHW", "size": list(info.size or ()), "channels": info.channels,
                "mode": "L" if info.channels == 1 else "RGB", "scale": info.scale,
                "mean": list(info.mean), "std": list(info.std), "steps": IMAGE_STEPS}
    encoder = TableEncoder.from_state(info.encoder or {"columns": []})
    if not encoder.plain:
        raise UserError(f"data.encoder: the exported preprocessing reproduces standardized numbers and one-hot "
                        f"categories only; this run's encoder is {encoder.options.model_dump()} (serve it with "
                        f"`hydranet serve`, or train with the default data.encoder to export it)")
    return {**base, "width": len(encoder.feature_names), "missing": sorted(MISSING_STRINGS),
            "columns": encoder.state_dict()["columns"], "features": encoder.feature_names, "steps": TABLE_STEPS}


def outputs(tasks: dict[str, Task], info: DataInfo, run_identity: str, spatial: bool = False) -> dict[str, Any]:
    """outputs.json: the graph's input, and per task its output's name, `predict`'s column header, shape, kind
    and decoding rule. `spatial`: the graph takes any height and width (named so in the shapes), else the run's."""
    shape = list(info.input_shape)
    if spatial:
        shape[-2:] = ["height", "width"]
    return {
        "opset": OPSET,
        "input": {"name": INPUT, "dtype": "float32", "shape": ["batch", *shape]},
        "tasks": {name: {"output": name, "column": task.column_name, "kind": task.kind,
                         "shape": output_shape(task, shape[-2:]), **task.decoding()}
                  for name, task in tasks.items()},
        "run": run_identity,
    }


def output_shape(task: Task, picture: list[Any]) -> list[Any]:
    """A task's output shape: (batch[, outputs]) per example, (batch, height, width[, outputs]) per pixel."""
    pixels = picture if task.dense else []
    return ["batch", *pixels] if task.spec.squeeze else ["batch", *pixels, task.info.outputs]
