"""What an exported model needs around it, as plain JSON: preprocessing.json (raw rows or images → the input
tensor, exactly as `predict` prepares them) and outputs.json (each named output → what `predict` writes).
"""

from __future__ import annotations

from typing import Any

from hydranet.data import DataInfo
from hydranet.data.dataset import MISSING_STRINGS
from hydranet.data.info import TEXT
from hydranet.data.tabular import QUANTILE_BOUND, TableEncoder, quantile_ranks
from hydranet.data.text import CLS_ID, PAD_ID
from hydranet.export.graph import OPSET
from hydranet.export.inputs import INPUT, GraphInputs
from hydranet.tasks import Task

TOKENIZER = "tokenizer.json"  # a text export's tokenizer, the Hugging Face `tokenizers` file the run trained

TABLE_STEPS = [
    "read the CSV with pandas, '?' as missing (na_values=['?']); strip column names",
    "in text columns, strip each cell, treat `missing` markers as missing, and read the column as numbers when "
    "every present cell is one",
    "numeric column, by its `scaling`, in float64, then float32: standard: (value - mean) / std; robust: "
    "(value - median) / iqr; quantile: Phi^-1(clip(interp(value, values, ranks), bound, 1 - bound)), interp "
    "numpy.interp's piecewise-linear interpolation, Phi^-1 the standard normal quantile function (0 when `values` "
    "holds fewer than two); missing -> 0 (the train centre of every scaling)",
    "numeric column with `indicator` true: one more float after it, 1.0 where the value is missing, else 0.0",
    "categorical column, by its `encoding`: onehot: one float per category in `categories` order, 1.0 where the "
    "stripped text equals it, missing or unseen values -> all 0; embedding: one float, the category's position in "
    "`categories` plus 1, missing or unseen values -> 0 (the unknown slot; the graph embeds the code)",
    "concatenate in `columns` order: a float32 matrix (N, width) whose columns are `features`",
]
IMAGE_STEPS = [
    "decode with Pillow; if height == width: image.draft(mode, (size, size)) (JPEG's cheap downscale), "
    "convert to `mode`, resize to size x size with Image.Resampling.BILINEAR when it differs; "
    "otherwise every image must already be height x width",
    "array (H, W, C) uint8 -> (C, H, W) float32; x = (pixels / scale - mean[c]) / std[c] per channel",
    "stack into (N, C, H, W)",
]


TEXT_STEPS = [
    "read and clean the CSV (or Parquet) as a table run's (`missing` markers are missing; a column whose cells are "
    "all numbers holds numbers, written as Python's str of a float); each row's text: the `columns` cells, "
    "stripped, missing or empty ones left out, joined by `separator`",
    f"tokenize with {TOKENIZER} (tokenizers.Tokenizer.from_file; encode without special tokens); input_ids: "
    "cls_id, then the first max_length - 1 token ids",
    "pad every row to the batch's longest with pad_id; attention_mask: 1 on the ids, 0 on the padding",
]
SEQUENCE_STEPS = [
    "read the .npz: x (N, T, F) with T <= max_length and F = features, lengths (N,) in 1..T",
    "values = (x - mean[f]) / std[f] per feature, float32; mask = 1 on steps < length, 0 after",
    "the graph zeroes values where mask is 0; padding must follow the real steps",
]


def preprocessing(info: DataInfo) -> dict[str, Any]:
    """preprocessing.json: the fitted train-split statistics and the steps that apply them."""
    if info.is_sequential:
        return sequence_preprocessing(info)
    base = {"input": INPUT, "dtype": "float32", "kind": info.kind}
    if info.is_image:
        return {**base, "layout": "NCHW", "size": list(info.size or ()), "channels": info.channels,
                "mode": "L" if info.channels == 1 else "RGB", "scale": info.scale,
                "mean": list(info.mean), "std": list(info.std), "steps": IMAGE_STEPS}
    encoder = TableEncoder.from_state(info.encoder or {"columns": []})
    return {**base, "width": len(encoder.feature_names), "missing": sorted(MISSING_STRINGS),
            "columns": [table_column(c, encoder) for c in encoder.columns], "features": encoder.feature_names,
            "steps": TABLE_STEPS}


def table_column(column: dict[str, Any], encoder: TableEncoder) -> dict[str, Any]:
    """One fitted column as preprocessing.json gives it: which scaling or encoding it has, named (the encoder's state
    says it by which statistics it holds), and the numbers that apply it. Quantile scaling gives the distinct train
    quantiles and the rank each maps to, so a reader interpolates without repeating the fit's tie rule."""
    name = column["name"]
    if column["kind"] == "categorical":
        return {"name": name, "kind": "categorical", "encoding": encoder.options.categorical,
                "categories": list(column["categories"])}
    if "quantiles" in column:
        values, ranks = quantile_ranks(column["quantiles"])
        scaling = {"scaling": "quantile", "values": values.tolist(), "ranks": ranks.tolist(), "bound": QUANTILE_BOUND}
    elif "median" in column:
        scaling = {"scaling": "robust", "median": column["median"], "iqr": column["iqr"]}
    else:
        scaling = {"scaling": "standard", "mean": column["mean"], "std": column["std"]}
    return {"name": name, "kind": "numeric", **scaling, "indicator": bool(column.get("indicator"))}


def sequence_preprocessing(info: DataInfo) -> dict[str, Any]:
    """Texts: the text columns, how they are joined and tokenized (the tokenizer itself is TOKENIZER beside it);
    sequences: the per-feature standardization. Both: the graph's inputs and the longest sequence it takes."""
    base = {"inputs": list(GraphInputs.of(info).names), "kind": info.kind, "max_length": info.input_shape[0]}
    if info.kind == TEXT:
        return {**base, "columns": list(info.features), "separator": info.separator, "tokenizer": TOKENIZER,
                "missing": sorted(MISSING_STRINGS), "cls_id": CLS_ID, "pad_id": PAD_ID, "steps": TEXT_STEPS}
    return {**base, "features": info.input_shape[1] - 1, "mean": list(info.mean), "std": list(info.std),
            "steps": SEQUENCE_STEPS}


def outputs(tasks: dict[str, Task], info: DataInfo, run_identity: str, spatial: bool = False) -> dict[str, Any]:
    """outputs.json: the graph's inputs (`input`: the one of an image or table graph), and per task its output's
    name, `predict`'s column header, shape, kind and decoding rule. `spatial`: the graph takes any height and width
    (named so in the shapes), else the run's."""
    inputs = GraphInputs.of(info, spatial).describe()
    return {
        "opset": OPSET,
        **({"input": inputs[0]} if len(inputs) == 1 else {}),
        "inputs": inputs,
        "tasks": {name: {"output": name, "column": task.column_name, "kind": task.kind,
                         "shape": output_shape(task, inputs[0]["shape"][-2:]), **task.decoding()}
                  for name, task in tasks.items()},
        "run": run_identity,
    }


def output_shape(task: Task, picture: list[Any]) -> list[Any]:
    """A task's output shape: (batch[, outputs]) per example, (batch, height, width[, outputs]) per pixel."""
    pixels = picture if task.dense else []
    return ["batch", *pixels] if task.spec.squeeze else ["batch", *pixels, task.info.outputs]
