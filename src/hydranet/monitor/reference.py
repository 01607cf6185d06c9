"""The reference a run stores at the end of training, so `hydranet monitor` (and a server) need neither the
training data nor a rebuilt split: reference.json holds statistics of the train split and of the predictions on
val, reference_rows.parquet a seeded sample of train rows for the statistical tests (`monitor.keep_rows`).

Registered as `run_parts` "monitor", so the training loop imports none of it (train/surface.py). Only numpy,
pandas and torch here: scipy's tests load with report.py, when monitoring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from hydranet.config import Config
from hydranet.data import Dataset, to_model_inputs
from hydranet.data.build import load_raw
from hydranet.data.info import SEQUENCE, TABLE, DataInfo
from hydranet.data.tabular import TableEncoder
from hydranet.data.text import CLS_ID, UNK_ID
from hydranet.files import write_json, write_parquet
from hydranet.predict import decode_tasks
from hydranet.randomness import Purpose, numpy_stream
from hydranet.registry import register
from hydranet.rundir import RunDir
from hydranet.tasks import Task
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.surface import RunParts

FORMAT = 1  # reference.json's layout version
QUANTILES = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 100)  # percentiles stored per numeric column
BINS = 1000  # histogram bins per numeric column: the stored-statistics Wasserstein is off by at most half a bin
IMAGE_CHUNK = 4096  # images turned to float at once when computing per-image features
PREDICTION = "prediction/"  # prefix of the prediction columns of an image run's sample


def summarize_column(values: pd.Series, categorical: bool) -> dict[str, Any]:
    """One column's statistics: its missing share, then the count of each category (as text, as the drift tests
    count them) or the mean, the population standard deviation (what Evidently norms Wasserstein by),
    percentiles and a histogram of its numbers."""
    present = values.dropna()
    missing = 1 - len(present) / len(values) if len(values) else 0.0
    if categorical:
        counts = present.astype(str).value_counts()
        return {"kind": "categorical", "missing": missing, "count": int(counts.sum()),
                "frequencies": {str(k): int(v) for k, v in counts.items()}}
    numbers = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=np.float64)
    summary: dict[str, Any] = {"kind": "numeric", "missing": 1 - len(numbers) / len(values) if len(values) else 0.0,
                               "count": len(numbers)}
    if len(numbers):
        counts, edges = np.histogram(numbers, bins=BINS)
        summary.update(mean=float(numbers.mean()), std=float(numbers.std()),
                       quantiles={str(q): float(v) for q, v in zip(QUANTILES, np.percentile(numbers, QUANTILES))},
                       histogram={"edges": edges.tolist(), "counts": counts.tolist()})
    return summary


def summarize_frame(frame: pd.DataFrame, categorical: Any = ()) -> dict[str, dict[str, Any]]:
    """`summarize_column` of every column; numeric unless named in `categorical`."""
    categorical = set(categorical)
    return {str(name): summarize_column(frame[name], name in categorical) for name in frame.columns}


def sample_positions(train: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """The sorted train indices of the reference sample: all of them when there are at most `rows`, else a draw
    seeded by the run's seed (Purpose.MONITOR): the sample training stores and older runs' monitoring rebuilds."""
    if len(train) > rows:
        train = numpy_stream(seed, Purpose.MONITOR).choice(train, size=rows, replace=False)
    return np.sort(train)


def image_features(images: torch.Tensor, scale: float) -> pd.DataFrame:
    """Per image and channel, the mean and the standard deviation of its pixel values in [0, 1].

    Why these: a darker, brighter or tinted camera moves the channel means, noise, blur and a contrast change
    move the standard deviations, and both are cheap, need no model and read in pixel units; brightness (the
    mean over channels) would only repeat the channel means."""
    return pd.DataFrame(channel_statistics(images, scale).numpy(), columns=image_feature_names(images.shape[1]))


def channel_statistics(images: torch.Tensor, scale: float) -> torch.Tensor:
    """`image_features` as a float64 tensor (images, 2 × channels): the means of the channels, then their stds."""
    chunks = []
    for chunk in images.split(IMAGE_CHUNK):
        pixels = chunk.to(torch.float64) / scale
        chunks.append(torch.cat([pixels.mean(dim=(2, 3)), pixels.std(dim=(2, 3), correction=0)], dim=1))
    return torch.cat(chunks)


def image_feature_names(channels: int) -> list[str]:
    """The columns of `image_features`, in `channel_statistics`' order."""
    return [f"mean_c{c}" for c in range(channels)] + [f"std_c{c}" for c in range(channels)]


def text_features(ids: torch.Tensor) -> pd.DataFrame:
    """Per text (rows of token ids): `tokens`, how many the model read (without [CLS] and padding; a text cut at
    data.text.max_length counts as that many), and `unknown_rate`, the share of them that are [UNK].

    Why these: longer or shorter texts and words the tokenizer never learned (another language, a new product
    name, encoding damage) are what moves under a text model first, and both read without the model. What words
    the texts use is not compared (no per-token histogram)."""
    tokens = (ids > CLS_ID).sum(dim=1).to(torch.float64)  # [PAD] is 0 and [CLS] 1; every other id is a token
    unknown = (ids == UNK_ID).sum(dim=1).to(torch.float64)
    return pd.DataFrame({"tokens": tokens.numpy(), "unknown_rate": (unknown / tokens.clamp_min(1)).numpy()})


def sequence_features(info: DataInfo, x: torch.Tensor) -> pd.DataFrame:
    """Per sequence (model inputs (N, T, F + 1)): `steps`, how many are real, then each feature's mean and standard
    deviation over the real steps, in the data's units (`mean_f0`, …, `std_f0`, …).

    Why these, as a text's token count: longer or shorter sequences, a sensor that reads higher or lower (the means)
    and one that gets noisier or flat (the stds) are what moves first, and all read without the model. How the
    values move within a sequence (its shape, its frequency) is not compared."""
    valid = (x[..., -1] > 0.5).to(torch.float64)  # (N, T)
    steps = valid.sum(dim=1)
    values = (x[..., :-1].to(torch.float64) * torch.tensor(info.std, dtype=torch.float64)
              + torch.tensor(info.mean, dtype=torch.float64)) * valid[..., None]  # the data's units, padding 0
    count = steps.clamp_min(1)[:, None]
    mean = values.sum(dim=1) / count
    spread = ((values - mean[:, None]) ** 2 * valid[..., None]).sum(dim=1) / count
    width = x.shape[-1] - 1
    columns = {"steps": steps.numpy()}
    columns.update({f"mean_f{i}": mean[:, i].numpy() for i in range(width)})
    columns.update({f"std_f{i}": spread[:, i].sqrt().numpy() for i in range(width)})
    return pd.DataFrame(columns)


def stored_features(info: DataInfo, stored: torch.Tensor) -> pd.DataFrame:
    """Per-example features of inputs as a dataset stores them: an image run's channel statistics, a text run's
    token count and unknown-token rate, a numeric-sequence run's steps and per-feature mean and std."""
    if info.is_image:
        return image_features(stored, info.scale)
    return sequence_features(info, stored) if info.kind == SEQUENCE else text_features(stored)


def pixel_statistics(images: torch.Tensor, scale: float) -> dict[str, dict[str, Any]]:
    """Per channel, `summarize_column` of all pixel values in [0, 1] of these images (the sample: 1,000 CIFAR
    images are a million values per channel, plenty for percentiles, and cheap)."""
    pixels = images.to(torch.float64) / scale
    return {f"c{c}": summarize_column(pd.Series(pixels[:, c].flatten().numpy()), False)
            for c in range(pixels.shape[1])}


def table_rows(cfg: Config, data: Dataset) -> pd.DataFrame:
    """The raw rows a table run was trained on, in the user's units: kept by `build_dataset`, read again only
    for a Dataset made some other way."""
    return data.frame if data.frame is not None else load_raw(cfg).frame


def table_columns(encoder_state: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(names, categorical names) of the source columns a table model was trained on."""
    columns = TableEncoder.from_state(encoder_state).columns
    return [c["name"] for c in columns], [c["name"] for c in columns if c["kind"] == "categorical"]


def prediction_summary(predictions: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Statistics of decoded predictions: class labels (and joined multilabel labels) as categories, a binary
    task's probability and a regression value as numbers."""
    categorical = [c for c in predictions.columns if not pd.api.types.is_numeric_dtype(predictions[c])]
    return summarize_frame(predictions, categorical)


def build_reference(cfg: Config, data: Dataset, tasks: dict[str, Task], model: torch.nn.Module,
                    device: torch.device) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """reference.json's content and the sample (None when `monitor.keep_rows` is false)."""
    train = data.index["train"].numpy()
    positions = sample_positions(train, cfg.monitor.reference_rows, cfg.seed)
    if data.info.kind != TABLE:  # images, texts, sequences: described per example
        features = summarize_frame(stored_features(data.info, data.x[torch.from_numpy(train)]))
        sample = example_sample(cfg, data, tasks, model, device, positions)
        extra = ({"pixels": pixel_statistics(data.x[torch.from_numpy(positions)], data.info.scale)}
                 if data.info.is_image else {})
    else:
        raw = table_rows(cfg, data)
        names, categorical = table_columns(data.info.encoder)
        features = summarize_frame(raw.iloc[train][names], categorical)
        sample, extra = raw.iloc[positions].reset_index(drop=True), {}
    reference = {"format": FORMAT, "kind": data.info.kind, "train_rows": len(train),
                 "sample_rows": len(positions) if cfg.monitor.keep_rows and sample is not None else 0, "features": features, **extra,
                 "predictions": val_predictions(cfg, data, tasks, model, device)}
    return reference, sample if cfg.monitor.keep_rows else None


def example_sample(cfg: Config, data: Dataset, tasks: dict[str, Task], model: torch.nn.Module, device: torch.device,
                   positions: np.ndarray) -> pd.DataFrame:
    """The sampled train images, texts or sequences as rows: their features (`stored_features`), then the model's
    decoded predictions on them (columns `prediction/<task column>`), so prediction drift gets the same row tests as
    a table's without the examples themselves."""
    stored = data.x[torch.from_numpy(positions)]
    x = to_model_inputs(data.info, images=stored) if data.info.is_image else stored
    predicted = decoded_predictions(cfg, tasks, model, x, device)
    return pd.concat([stored_features(data.info, stored), predicted.add_prefix(PREDICTION)], axis=1)


def decoded_predictions(cfg: Config, tasks: dict[str, Task], model: torch.nn.Module, x: torch.Tensor,
                        device: torch.device) -> pd.DataFrame:
    """A column per task of the model's decoded predictions on model inputs `x` (computed on `device`); dense tasks
    (a map per example) are left out: prediction drift compares one value per example."""
    outputs = predict_batches(model, x.to(device), *eval_settings(cfg.train))
    return decode_tasks(per_example_tasks(tasks), {task: out.cpu() for task, out in outputs.items()})


def per_example_tasks(tasks: dict[str, Task]) -> dict[str, Task]:
    """The tasks whose predictions drift is measured on: one value per example, so dense tasks are left out."""
    return {name: task for name, task in tasks.items() if not task.dense}


def val_predictions(cfg: Config, data: Dataset, tasks: dict[str, Task], model: torch.nn.Module,
                    device: torch.device) -> dict[str, Any]:
    """{split, rows, columns: statistics per task column} of the model's decoded predictions on val (on test
    when val is empty; none when both are)."""
    split = next((name for name in ("val", "test") if len(data.index[name])), None)
    if split is None:
        return {"split": None, "rows": 0, "columns": {}}
    predicted = decoded_predictions(cfg, tasks, model, data.split(split)["x"], device)
    return {"split": split, "rows": len(predicted), "columns": prediction_summary(predicted)}


def parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns that also hold other objects (a plugin source's mix of numbers and names) as text: Parquet
    needs one type per column, and the drift tests compare categories as text anyway."""
    mixed = [name for name in frame.columns if frame[name].dtype == object
             and not frame[name].dropna().map(lambda v: isinstance(v, str)).all()]
    return frame.assign(**{name: frame[name].map(lambda v: v if pd.isna(v) else str(v)) for name in mixed})


def write_reference(run: RunDir, reference: dict[str, Any], sample: pd.DataFrame | None) -> None:
    """The sample first, reference.json last: a reference.json that names a sample means the sample is whole."""
    if sample is not None:
        write_parquet(run.reference_rows, parquet_ready(sample))
    write_json(run.reference, reference, indent=None)  # read by programs; a histogram per column


class StoreReference:
    """A callback that stores the reference when training ends normally (all epochs, or stopped by a callback).

    Its `on_fit_end` fires after the weight average's and early stopping's (make_callbacks' order), so the
    predictions come from the weights the run saves; an interrupted or failed fit stores nothing."""

    def __init__(self, cfg: Config, tasks: dict[str, Task], data: Dataset, run: RunDir):
        self.cfg, self.tasks, self.data, self.run = cfg, tasks, data, run

    def on_fit_end(self, trainer) -> None:
        if trainer.epoch < trainer.epochs and not trainer.should_stop:
            return
        reference, sample = build_reference(self.cfg, self.data, self.tasks, trainer.eval_model, trainer.device)
        write_reference(self.run, reference, sample)


@register("run_parts", "monitor")
class MonitorReference:
    """What monitoring adds to every training run: the callback that stores its reference."""

    @staticmethod
    def check(cfg: Config, data: Dataset) -> None:
        """Every run can store a reference: nothing to refuse."""

    @staticmethod
    def build(cfg: Config, tasks: dict[str, Task], data: Dataset, run: RunDir, device: torch.device) -> RunParts:
        return RunParts(callbacks=[StoreReference(cfg, tasks, data, run)])
