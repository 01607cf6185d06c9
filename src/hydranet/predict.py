"""Predictions and evaluation from a run directory: new inputs → decoded per-task outputs.

New inputs go through the preprocessing fitted at training time (`data.json`), so a CSV row or an image
file is turned into exactly what the model saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from hydranet.data import DataInfo, build_dataset, to_model_inputs
from hydranet.data.build import text_inputs
from hydranet.data.images import decode_many, image_files, read_image_file
from hydranet.data.finite import table_row
from hydranet.data.info import SEQUENCE, TEXT
from hydranet.data.sources.sequence import read_sequences
from hydranet.data.sources.table import check_numbers, clean, read_table, table_format
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.fairness.threshold import Thresholds, decision_metrics, row_groups, split_decisions
from hydranet.files import write_csv, write_json
from hydranet.rundir import RunDir
from hydranet.tasks import Task
from hydranet.train.evaluation import eval_settings, evaluate_split, predict_batches
from hydranet.train.run import Run

TABLE_FILES = "one .csv, .csv.gz or .parquet file"


def decode_outputs(run: Run, outputs: dict[str, torch.Tensor]) -> pd.DataFrame:
    """One column per task, named as its kind says (a binary task's column names its positive class): class
    label (classification), probability of the positive class (binary), labels joined by the task's separator
    (multilabel, probability ≥ 0.5), value (regression)."""
    return decode_tasks(run.tasks, outputs)


def decode_tasks(tasks: dict[str, Task], outputs: dict[str, torch.Tensor]) -> pd.DataFrame:
    """`decode_outputs` for a run still training (its reference is stored before it can be loaded as a Run)."""
    return pd.DataFrame({task.column_name: task.column(outputs[name]) for name, task in tasks.items()})


def predictions(run: Run, outputs: dict[str, torch.Tensor], x: torch.Tensor, rows: pd.DataFrame | None,
                where: str) -> pd.DataFrame:
    """`decode_outputs`, and for a run with fairness thresholds (`hydranet threshold`) each thresholded task's
    decision as a class label in a `<task>_decision` column after its probability column, which stays the model's
    (calibrated) probability. The thresholds need the rows' sensitive columns (`rows`, the input table)."""
    frame = decode_outputs(run, outputs)
    thresholds = Thresholds.of(run)
    if thresholds is None:
        return frame
    groups = row_groups(run, {} if rows is None else rows, where)
    for name, decided in thresholds.decide(run, outputs, x, groups, where).items():
        task = run.tasks[name]
        frame.insert(frame.columns.get_loc(task.column_name) + 1, f"{name}_decision",
                     np.asarray(task.info.classes, dtype=object)[decided])
    return frame


def inputs_from_files(run: Run, paths: Sequence[str | Path]) -> tuple[torch.Tensor, list[str]]:
    """Model inputs from a CSV/Parquet table (table runs) or image files / folders (image runs)."""
    x, ids, _ = inputs_and_rows(run, paths)
    return x, ids


def inputs_and_rows(run: Run, paths: Sequence[str | Path]) -> tuple[torch.Tensor, list[str], pd.DataFrame | None]:
    """`inputs_from_files`, and for table runs the table read (its sensitive columns decide thresholded tasks)."""
    if run.info.is_image:
        return *image_file_inputs(run.info, paths), None
    if run.info.kind == SEQUENCE:
        return *sequence_file_inputs(run.info, paths), None
    if len(paths) != 1:
        raise UserError(f"INPUT: this run was trained on a table; give {TABLE_FILES}, not {len(paths)} inputs")
    frame = read_input_table(paths[0])
    return table_inputs(run.info, frame, str(paths[0])), [str(i) for i in range(len(frame))], frame


def read_input_table(path: str | Path) -> pd.DataFrame:
    """The raw table of new inputs for a table run (predict, monitor); a wrong path is one line naming it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; this run was trained on a table (expected {TABLE_FILES})")
    if not path.exists():
        raise UserError(f"{path}: file not found (expected {TABLE_FILES})")
    fmt = table_format(path)
    if fmt is None:
        raise UserError(f"{path}: this run was trained on a table (expected {TABLE_FILES})")
    return read_table(path, fmt)


def table_inputs(info: DataInfo, frame: pd.DataFrame, where: str) -> torch.Tensor:
    """A cleaned table checked against the columns the model was trained with, then encoded as in training.

    Columns the model was not trained with (ids, the task columns, `split`) are ignored. A text run reads its text
    columns (joined and tokenized as in training)."""
    if info.kind == TEXT:
        if len(frame) == 0:
            raise UserError(f"{where}: the table has no rows")
        return text_inputs(info, frame, where)
    return to_model_inputs(info, frame=checked_table(info, frame, where))


def checked_table(info: DataInfo, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """`table_inputs`' checks without the encoding: the server checks each request alone (so a bad row is refused
    with its own message) and encodes the checked rows of many requests at once (the encoding's pandas work costs
    about the same for one row as for a batch)."""
    if len(frame) == 0:
        raise UserError(f"{where}: the table has no rows")
    columns = TableEncoder.from_state(info.encoder).columns
    missing = [c["name"] for c in columns if c["name"] not in frame.columns]
    if missing:
        raise UserError(f"{where}: no column {', '.join(map(repr, missing))}, which the model was trained with "
                        f"(expected the columns {', '.join(c['name'] for c in columns)})")
    for column in columns:
        if column["kind"] == "numeric":
            check_no_text(frame[column["name"]], column["name"], where)
    check_numbers(frame[[c["name"] for c in columns]], where)  # ±inf and beyond float32, as training refuses them
    return frame


def check_no_text(values: pd.Series, name: str, where: str) -> None:
    """A column that was numeric in training takes numbers or missing cells: text there is named with its row."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.notna().to_numpy() & np.isnan(numbers)
    if text.any():
        row = int(np.flatnonzero(text)[0])
        raise UserError(f"{where}: {table_row(name, (row,))}: {values.iloc[row]!r} is not a number (the column was "
                        f"numeric in training: expected a number, or an empty cell for a missing value)")


def python_inputs(info: DataInfo, inputs: Any) -> torch.Tensor:
    """Model inputs from what `Model.predict` was given in Python: a DataFrame (table runs, cleaned as a table
    file is) or an image array/tensor (image runs)."""
    if isinstance(inputs, pd.DataFrame):
        if info.is_image:
            raise UserError("input: this run was trained on images; pass an (N, C, H, W) array or image paths, not a DataFrame")
        return table_inputs(info, clean(inputs, "input"), "input")
    if not info.is_image:
        raise UserError(f"input: this run was trained on a table; pass a pandas DataFrame with its columns or a "
                        f"CSV/Parquet path, not {type(inputs).__name__}")
    return array_inputs(info, inputs)


def sequence_file_inputs(info: DataInfo, paths: Sequence[str | Path]) -> tuple[torch.Tensor, list[str]]:
    """Sequences from one .npz (x (N, T, F) and lengths (N,), as the sequence source reads them) with the trained
    number of features, standardized as in training."""
    if len(paths) != 1 or Path(paths[0]).suffix.lower() != ".npz":
        raise UserError("INPUT: this run was trained on sequences; give one .npz file with arrays x and lengths")
    path = Path(paths[0])
    if not path.is_file():
        raise UserError(f"{path}: file not found (expected a .npz file with arrays x and lengths)")
    series, _ = read_sequences(path)
    if series.shape[1:] != tuple(info.input_shape):
        steps, width = info.input_shape
        raise UserError(f"{path}: x holds sequences of {series.shape[1]} steps of {series.shape[2] - 1} features; this "
                        f"model was trained on {steps} steps of {width - 1}")
    return to_model_inputs(info, series=series), [str(i) for i in range(len(series))]


def image_file_inputs(info: DataInfo, paths: Sequence[str | Path]) -> tuple[torch.Tensor, list[str]]:
    """Image files decoded to the trained channels (and square size, by the rule of `data.image_size`)."""
    tables = [str(p) for p in paths if table_format(Path(p)) is not None]
    if tables:
        raise UserError(f"{tables[0]}: this run was trained on images; give image files or a folder of images")
    files = input_images(paths)
    return encoded_image_inputs(info, [(str(f), read_image_file(f)) for f in files], "INPUT"), [str(f) for f in files]


def encoded_image_inputs(info: DataInfo, items: Sequence[tuple[str, bytes]], where: str) -> torch.Tensor:
    """Encoded images (name, bytes: files, uploads) decoded to the trained channels (and square size, by the rule
    of `data.image_size`), then normalized as in training."""
    return to_model_inputs(info, images=decoded_images(info, items, where))


def decoded_images(info: DataInfo, items: Sequence[tuple[str, bytes]], where: str) -> torch.Tensor:
    """`encoded_image_inputs` before the normalization: uint8 (N, C, H, W) pixels, checked against the trained
    size (the server normalizes a whole batch's pixels at once)."""
    if info.scale != 255.0:
        raise UserError(f"{where}: this run was trained on float arrays, not 0..255 pixels; image files would be "
                        f"misread (predict from Python: hn.load(run).predict(float_array))")
    height, width = info.size
    images = decode_many(items, size=height if height == width else None, channels=info.channels)
    if list(images.shape[2:]) != [height, width]:
        raise UserError(f"{where}: images are {tuple(images.shape[2:])}, this model was trained on {height}x{width}")
    return images


def array_inputs(info: DataInfo, images: Any) -> torch.Tensor:
    """Raw images from Python, (N, C, H, W) in the dtype and range the source produced: uint8 0..255 (integer
    arrays within 0..255 are taken as uint8) or, for float sources (npz), finite floats. No resizing: a
    float array of a uint8 run is refused, since 0..1 and 0..255 floats cannot be told apart reliably."""
    try:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"input: expected an (N, C, H, W) image array, a DataFrame or file paths, "
                        f"got {type(images).__name__}") from None
    expected = (info.channels, *info.size)
    shape = "(N, " + ", ".join(map(str, expected)) + ")"
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise UserError(f"input: images of shape {tuple(x.shape)}; this model expects {shape} (N images, channels, height, width)")
    if len(x) == 0:
        raise UserError(f"input: no images (shape {tuple(x.shape)})")
    if info.scale == 255.0:
        return to_model_inputs(info, images=_as_pixels(x, shape))
    if not x.dtype.is_floating_point:
        raise UserError(f"input: images are {x.dtype}; this run was trained on float images {shape} (pass float32 "
                        f"in the source's range)")
    if not torch.isfinite(x).all():
        raise UserError("input: images hold NaN or inf; expected finite values")
    return to_model_inputs(info, images=x)


def _as_pixels(x: torch.Tensor, shape: str) -> torch.Tensor:
    """uint8 as given, integers within 0..255 as uint8 (what np.round(...).astype(int) gives); no floats."""
    if x.dtype == torch.uint8:
        return x
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise UserError(f"input: images are {x.dtype}; this run was trained on uint8 pixels 0..255 {shape} "
                        f"(pass uint8, e.g. np.round(images).astype(np.uint8))")
    low, high = int(x.min()), int(x.max())
    if low < 0 or high > 255:
        raise UserError(f"input: integer images range {low}..{high}; this run was trained on pixels 0..255")
    return x.to(torch.uint8)


def input_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in the given folders."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += image_files(path)
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: file not found (expected image files or a folder of images)")
    if not files:
        raise UserError(f"INPUT: no image files in {', '.join(map(str, paths))}")
    return files


def predict_paths(run: Run, paths: Sequence[str | Path], output: Path | None = None) -> pd.DataFrame:
    """Predict for files and write a CSV with an `input` column and one column per task (a dense task's column
    names the files its maps were written to)."""
    x, ids, rows = inputs_and_rows(run, paths)
    outputs = predict_batches(run.model, x, *eval_settings(run.config.train))
    frame = predictions(run, outputs, x, rows, str(paths[0]))
    frame.insert(0, "input", ids)
    if output is not None:
        write_csv(output, with_map_files(run.tasks, frame, output))
    return frame


def with_map_files(tasks: dict[str, Task], frame: pd.DataFrame, output: Path) -> pd.DataFrame:
    """The prediction table with each dense task's maps written as files (`<output stem>-<task>/<row>.png` or
    `.npy`, as the task's kind writes them) and the column holding their paths relative to the table."""
    frame = frame.copy()
    for name, task in tasks.items():
        if task.dense:
            folder = output.parent / f"{output.stem}-{name}"
            paths = [task.spec.write_output(folder / f"{row:05d}", value, task.info) for row, value in
                     enumerate(frame[task.column_name])]
            frame[task.column_name] = [str(path.relative_to(output.parent)) for path in paths]
    return frame


def evaluate_run(run: Run, split: str = "test") -> dict[str, dict[str, float]]:
    """Rebuild the run's data (same seed → same split), score one split, write eval-<split>.json. A task with
    fairness thresholds reports the accuracy and F1 of their decisions (ROC-AUC, loss and ECE: of its scores)."""
    if split not in ("train", "val", "test"):
        raise UserError(f"--split: {split!r} is not a split (expected train, val or test)")
    data = build_dataset(run.config)
    if len(data.index[split]) == 0:
        raise UserError(f"--split: the {split} split of this run is empty")
    metrics = evaluate_split(run.model, run.tasks, data.split(split), *eval_settings(run.config.train))
    if RunDir(run.dir).thresholds.exists():  # a second pass over the split, only for a thresholded run
        outputs = predict_batches(run.model, data.split(split)["x"], *eval_settings(run.config.train))
        for name, decided in split_decisions(run, data, split, outputs)[0].items():
            metrics[name] |= decision_metrics(data.split(split)[name].numpy(), decided)
    write_json(RunDir(run.dir).eval_file(split), metrics)
    return metrics
