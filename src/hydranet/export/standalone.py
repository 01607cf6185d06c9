"""Predict from a hydranet export with ONNX Runtime alone: the same columns `hydranet predict` writes.

Copied into every export folder as predict_onnx.py. It imports no hydranet: numpy, pandas, onnxruntime, Pillow
for images, tokenizers for texts. It reads preprocessing.json and outputs.json (and a text run's tokenizer.json),
which say every number used here.

    python predict_onnx.py EXPORT_DIR table.csv          # a table or text run: one CSV or Parquet file
    python predict_onnx.py EXPORT_DIR images/ a.png      # an image run: image files or folders
    python predict_onnx.py EXPORT_DIR series.npz         # a sequence run: x (N, T, F) and lengths (N,)
prints CSV (an `input` column, then one column per task) to stdout; a per-pixel task's cell is its map as a JSON
nested list (rows of pixels), which `predict()` returns as a numpy array.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import onnxruntime as ort
import pandas as pd

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
NORMAL = NormalDist()  # the standard normal: inv_cdf is Phi^-1 (Wichura's AS241, accurate to float64 rounding)


def predict(folder: str | Path, inputs: list[str | Path]) -> pd.DataFrame:
    """One row per input example: `input` (row number or image file), then each task's decoded prediction under
    its `column` header."""
    folder = Path(folder)
    pre = json.loads((folder / "preprocessing.json").read_text(encoding="utf-8"))
    spec = json.loads((folder / "outputs.json").read_text(encoding="utf-8"))
    readers = {"image": image_inputs, "table": table_inputs, "text": text_inputs, "sequence": sequence_inputs}
    feeds, ids = readers[pre["kind"]](pre, inputs, folder)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [task["output"] for task in spec["tasks"].values()]
    raw = dict(zip(names, session.run(names, feeds)))
    columns = {"input": ids}
    for task in spec["tasks"].values():
        columns[task["column"]] = decode(raw[task["output"]], task)
    return pd.DataFrame(columns)


def decode(output: np.ndarray, task: dict) -> list:
    """A raw output → the column `hydranet predict` writes, by the task's `decode` rule."""
    rule = task["decode"]
    if rule == "argmax":  # class name of the highest score
        return [task["classes"][i] for i in output.argmax(-1)]
    if rule == "argmax_last_axis":  # per pixel: the index of its class in `classes`
        return list(output.argmax(-1))
    if rule == "identity":  # the graph gives the values themselves (depth maps, unit normals)
        return list(output)
    if rule == "sigmoid":  # probability of classes[1]
        return list(sigmoid(output))
    if rule == "sigmoid_threshold":  # labels at or above the threshold, joined
        on = sigmoid(output) >= task["threshold"]
        return [task["separator"].join(label for label, yes in zip(task["labels"], row) if yes) for row in on]
    if rule == "affine":  # standardized value → original units
        return list(output * np.float32(task["scale"]) + np.float32(task["shift"]))
    raise ValueError(f"unknown decode rule {rule!r} in outputs.json")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.float32)


def read_frame(inputs: list[str | Path]) -> pd.DataFrame:
    """The one CSV/Parquet file of a table or text run."""
    (path,) = inputs
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, na_values=["?"], low_memory=False)


def text_inputs(pre: dict, inputs: list[str | Path], folder: Path) -> tuple[dict, list[str]]:
    """One CSV/Parquet file of texts → input_ids and attention_mask, padded to the longest row."""
    from tokenizers import Tokenizer  # only text exports need it

    frame = clean(read_frame(inputs), set(pre["missing"]))  # as a table's cells: markers missing, numbers read
    absent = [name for name in pre["columns"] if name not in frame.columns]
    if absent:
        raise ValueError(f"{inputs[0]}: no column {', '.join(map(repr, absent))}, which the model was trained with")
    cells = [[text_cell(value) for value in frame[name]] for name in pre["columns"]]
    texts = [pre["separator"].join(part for part in row if part) for row in zip(*cells)]
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:  # hydranet refuses them too: the model never saw a text of [CLS] alone
        raise ValueError(f"{inputs[0]}: row {empty[0] + 1} has no text in column(s) {', '.join(pre['columns'])}")
    tokenizer = Tokenizer.from_file(str(folder / pre["tokenizer"]))
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    rows = [[pre["cls_id"], *e.ids[:pre["max_length"] - 1]] for e in encoded]
    ids = np.full((len(rows), max(map(len, rows))), pre["pad_id"], np.int64)  # padded to the longest row
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    mask = (ids != pre["pad_id"]).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}, [str(i) for i in range(len(rows))]


def text_cell(value: object) -> str:
    """A cell's text, stripped; a missing one (NaN, None) is empty."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()


def sequence_inputs(pre: dict, inputs: list[str | Path], folder: Path) -> tuple[dict, list[str]]:
    """One .npz (x (N, T, F), lengths (N,)) → standardized values and the mask of real steps."""
    (path,) = inputs
    with np.load(path, allow_pickle=False) as arrays:
        x, lengths = arrays["x"].astype(np.float64), arrays["lengths"]
    if x.ndim != 3 or x.shape[2] != pre["features"] or x.shape[1] > pre["max_length"]:
        raise ValueError(f"{path}: x has shape {x.shape}; expected (N, T, {pre['features']}) with "
                         f"T <= {pre['max_length']}")
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    values = ((x.astype(np.float32) - np.float32(pre["mean"])) / np.float32(pre["std"])) * mask[..., None]
    return {"values": values.astype(np.float32), "mask": mask.astype(np.int64)}, [str(i) for i in range(len(x))]


def table_inputs(pre: dict, inputs: list[str | Path], folder: Path) -> tuple[dict, list[str]]:
    """One CSV/Parquet file → (N, width) float32, encoded column by column as preprocessing.json's steps say."""
    frame = clean(read_frame(inputs), set(pre["missing"]))
    absent = [c["name"] for c in pre["columns"] if c["name"] not in frame.columns]
    if absent:
        raise ValueError(f"{inputs[0]}: no column {', '.join(map(repr, absent))}, which the model was trained with")
    parts = [encode_column(frame[c["name"]], c, set(pre["missing"])) for c in pre["columns"]]
    x = np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0), np.float32)
    return {pre["input"]: x.astype(np.float32)}, [str(i) for i in range(len(frame))]


def clean(frame: pd.DataFrame, markers: set[str]) -> pd.DataFrame:
    """Stripped names and cells, missing markers as NaN, text columns of numbers as numbers."""
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object and not pd.api.types.is_string_dtype(column):
            continue
        text = column.astype("string").str.strip()
        text = text.mask(text.isin(markers))
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.notna().sum() == text.notna().sum():
            frame[name] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            frame[name] = text.astype(object).where(text.notna(), np.nan)
    return frame


def encode_column(series: pd.Series, column: dict, markers: set[str]) -> np.ndarray:
    """A numeric column scaled (missing → 0), then its missing indicator if it has one; a categorical one one-hot
    (missing, unseen → zeros) or as its code (missing, unseen → 0)."""
    series = series.reset_index(drop=True)
    text = series.astype(str).str.strip()
    numeric_dtype = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
    missing = (series.isna() if numeric_dtype else series.isna() | text.isin(markers)).to_numpy()
    if column["kind"] == "numeric":
        values = series.astype(float) if pd.api.types.is_bool_dtype(series) else series if numeric_dtype else text
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if (np.isnan(numbers) & ~missing).any():
            raise ValueError(f"column {column['name']!r}: a value is not a number")
        if np.isinf(numbers).any():  # hydranet refuses ±inf too: a scaled inf would be inf or NaN outputs
            raise ValueError(f"column {column['name']!r}: a value is infinite (expected finite numbers)")
        z = np.where(missing, np.float32(0), scale(np.where(missing, 0.0, numbers), column))
        parts = [z, missing.astype(np.float32)] if column.get("indicator") else [z]
        return np.stack(parts, axis=1).astype(np.float32)
    codes = pd.Categorical(text.where(~missing), categories=column["categories"]).codes
    if column.get("encoding") == "embedding":  # the code the graph embeds; 0: missing or unseen
        return (codes.astype(np.float32) + 1)[:, None]
    out = np.zeros((len(series), len(column["categories"])), np.float32)
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1.0
    return out


def scale(numbers: np.ndarray, column: dict) -> np.ndarray:
    """Finite numbers → float32 by the column's `scaling`: standard, robust, or quantile (the interpolated train
    rank, clipped, through the standard normal quantile function)."""
    scaling = column.get("scaling", "standard")
    if scaling == "quantile":
        values, ranks = np.asarray(column["values"], np.float64), np.asarray(column["ranks"], np.float64)
        if len(values) < 2:
            return np.zeros(len(numbers), np.float32)
        p = np.clip(np.interp(numbers, values, ranks), column["bound"], 1 - column["bound"])
        return np.array([NORMAL.inv_cdf(float(v)) for v in p], np.float64).astype(np.float32)
    if scaling == "robust":
        return ((numbers - column["median"]) / column["iqr"]).astype(np.float32)
    return ((numbers - column["mean"]) / column["std"]).astype(np.float32)


def image_inputs(pre: dict, inputs: list[str | Path], folder: Path) -> tuple[dict, list[str]]:
    """Image files and folders (searched recursively, sorted) → (N, C, H, W) float32, normalized per channel."""
    from PIL import Image  # only image exports need Pillow

    files = []
    for item in map(Path, inputs):
        files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                        and not any(part.startswith(".") for part in p.relative_to(item).parts)) if item.is_dir() else [item]
    height, width = pre["size"]
    size, mode = (height if height == width else None), pre["mode"]
    arrays = []
    for path in files:
        image = Image.open(path)
        if size is not None:
            image.draft(mode, (size, size))
        image = image.convert(mode) if image.mode != mode else image
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(image)
        arrays.append(array.reshape(array.shape[0], array.shape[1], -1).transpose(2, 0, 1))
    pixels = np.stack(arrays).astype(np.float32)
    mean = np.asarray(pre["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(1, -1, 1, 1)
    return {pre["input"]: (pixels / np.float32(pre["scale"]) - mean) / std}, [str(p) for p in files]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    frame = predict(argv[0], argv[1:])
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(frame.columns)
    # str() of a float32 is its shortest repr, as pandas writes predict's CSV
    columns = [frame[name].to_numpy() for name in frame.columns]
    writer.writerows([cell(value) for value in row] for row in zip(*columns))


def cell(value) -> str:
    """A CSV cell: a per-pixel map as a JSON nested list, anything else as str() writes it."""
    return json.dumps(value.tolist()) if isinstance(value, np.ndarray) and value.ndim else str(value)


if __name__ == "__main__":
    main(sys.argv[1:])
