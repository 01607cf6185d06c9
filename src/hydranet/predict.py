"""Predictions and evaluation from a run directory: new inputs → decoded per-task outputs.

New inputs go through the preprocessing fitted at training time (`data.json`), so a CSV row or an image
file is turned into exactly what the model saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from hydranet.data import build_dataset, to_model_inputs
from hydranet.data.images import image_files, load_image_files
from hydranet.data.sources.table import check_numbers, clean
from hydranet.errors import UserError
from hydranet.files import write_csv, write_json
from hydranet.rundir import RunDir
from hydranet.train.evaluation import eval_settings, evaluate_split, predict_batches
from hydranet.train.run import Run

TABLE_SUFFIXES = (".csv", ".parquet")


def decode_outputs(run: Run, outputs: dict[str, torch.Tensor]) -> pd.DataFrame:
    """One column per task: class label (classification), probability of the positive class (binary),
    labels joined by the task's separator (multilabel, probability ≥ 0.5), value (regression)."""
    columns: dict[str, Any] = {}
    for name, task in run.tasks.items():
        columns[name] = task.column(outputs[name])
    return pd.DataFrame(columns)


def inputs_from_files(run: Run, paths: Sequence[str | Path]) -> tuple[torch.Tensor, list[str]]:
    """Model inputs from a CSV/Parquet table (table runs) or image files / folders (image runs)."""
    info = run.info
    tables = [str(p) for p in paths if Path(p).suffix.lower() in TABLE_SUFFIXES or str(p).endswith(".csv.gz")]
    if info.is_image and tables:
        raise UserError(f"{tables[0]}: this run was trained on images; give image files or a folder of images")
    if not info.is_image:
        if len(paths) != 1 or not tables:
            raise UserError("INPUT: this run was trained on a table; give exactly one CSV or Parquet file")
        frame = read_table(Path(paths[0]))
        check_numbers(frame[[c for c in info.features if c in frame.columns]], str(paths[0]))
        return to_model_inputs(info, frame=frame), [str(i) for i in range(len(frame))]
    files = input_images(paths)
    height, width = info.size
    images = load_image_files(files, size=height if height == width else None, channels=info.channels)
    if list(images.shape[2:]) != [height, width]:
        raise UserError(f"INPUT: images are {tuple(images.shape[2:])}, this model was trained on {height}x{width}")
    return to_model_inputs(info, images=images), [str(f) for f in files]


def read_table(path: Path) -> pd.DataFrame:
    """A table read and cleaned exactly as the csv/parquet sources read training data."""
    if not path.exists():
        raise UserError(f"{path}: file not found (expected a CSV or Parquet table)")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, na_values=["?"], low_memory=False)
    return clean(frame)


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
    """Predict for files and write a CSV with an `input` column and one column per task."""
    x, ids = inputs_from_files(run, paths)
    outputs = predict_batches(run.model, x, *eval_settings(run.config.train))
    frame = decode_outputs(run, outputs)
    frame.insert(0, "input", ids)
    if output is not None:
        write_csv(output, frame)
    return frame


def evaluate_run(run: Run, split: str = "test") -> dict[str, dict[str, float]]:
    """Rebuild the run's data (same seed → same split), score one split, write eval-<split>.json."""
    if split not in ("train", "val", "test"):
        raise UserError(f"--split: {split!r} is not a split (expected train, val or test)")
    data = build_dataset(run.config)
    if len(data.index[split]) == 0:
        raise UserError(f"--split: the {split} split of this run is empty")
    metrics = evaluate_split(run.model, run.tasks, data.split(split), *eval_settings(run.config.train))
    write_json(RunDir(run.dir).eval_file(split), metrics)
    return metrics
