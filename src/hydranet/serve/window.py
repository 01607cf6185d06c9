"""The server's window of recent traffic: the last rows it answered (inputs and raw outputs), and their drift
against the run's training data, computed as `hydranet monitor` computes it: per input column of a table run, per
image feature (mean and std of each channel) of an image run, and per task of the predictions.

A request only appends its rows; describing the inputs and decoding the predictions (pandas work) is left to the
drift report, which runs in a thread, so the window costs the request path next to nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import pandas as pd
import torch

from hydranet.data import build_dataset
from hydranet.data.tabular import TableEncoder
from hydranet.monitor.drift import STAT_TEST_MAX_ROWS, frame_drift
from hydranet.monitor.reference import image_features
from hydranet.monitor.report import input_pixels, predictions_drift, reference_frame
from hydranet.predict import decode_outputs, table_inputs
from hydranet.randomness import Purpose, numpy_stream
from hydranet.train.run import Run

MIN_ROWS = 30  # fewer recent rows make the tests too weak to flag anything but a gross shift

Outputs = dict[str, torch.Tensor]


class DriftWindow:
    """The last `size` answered rows. `reference_inputs` (raw train rows, or their image features) and
    `reference_predictions` (the model's decoded answers on them) are fixed at start. `describe(rows)` turns window
    input rows into the frame compared with `reference_inputs`; `decode(outputs)` turns raw outputs into answers."""

    def __init__(self, size: int, reference_inputs: pd.DataFrame, reference_predictions: pd.DataFrame,
                 categorical: list[str], describe: Callable[[list[Any]], pd.DataFrame],
                 decode: Callable[[Outputs], pd.DataFrame]):
        self.reference_inputs, self.reference_predictions = reference_inputs, reference_predictions
        self.categorical, self.describe, self.decode = categorical, describe, decode
        self.inputs: deque[Any] = deque(maxlen=size)
        self.outputs: deque[dict[str, torch.Tensor]] = deque(maxlen=size)

    def add(self, inputs: list[Any], outputs: Outputs) -> None:
        """One request's input rows and its raw outputs (one row per input row)."""
        self.inputs.extend(inputs)
        self.outputs.extend({task: values[i] for task, values in outputs.items()} for i in range(len(inputs)))

    def recent(self) -> tuple[list[Any], list[dict[str, torch.Tensor]]]:
        """A copy of the window (inputs, outputs), taken on the event loop, which alone adds to it, so the drift
        tests can run in a thread on rows that do not change under them."""
        return list(self.inputs), list(self.outputs)

    def drift(self, recent: tuple[list[Any], list[dict[str, torch.Tensor]]]) -> dict[str, Any]:
        """Feature drift and prediction drift per task of `recent()`; with too few rows, how many are needed."""
        inputs, outputs = recent
        rows = len(outputs)
        if rows < MIN_ROWS:
            return {"ready": False, "rows": rows, "needed": MIN_ROWS,
                    "message": f"{rows} rows answered so far; drift needs at least {MIN_ROWS}"}
        stacked = {task: torch.stack([row[task] for row in outputs]) for task in outputs[0]}
        return {"ready": True, "rows": rows,
                "predictions": predictions_drift(self.reference_predictions, self.decode(stacked)),
                "features": frame_drift(self.reference_inputs, self.describe(inputs), self.categorical)}


def drift_window(run: Run, model: Callable[[torch.Tensor], Outputs], size: int) -> DriftWindow:
    """A window whose reference is up to 1,000 train rows (statistical tests, as `hydranet monitor` by default) and
    `model`'s predictions on them. Its input rows are the table rows as dicts, or the images' model inputs."""
    decode = lambda outputs: decode_outputs(run, outputs)  # noqa: E731
    if run.info.is_image:
        x = reference_images(run, STAT_TEST_MAX_ROWS)
        describe = lambda images: image_features(input_pixels(run.info, torch.stack(images)), 1.0)  # noqa: E731
        return DriftWindow(size, describe(list(x)), decode(model(x)), [], describe, decode)
    columns = TableEncoder.from_state(run.info.encoder).columns
    names = [c["name"] for c in columns]
    reference = reference_frame(run, STAT_TEST_MAX_ROWS)[names]
    predictions = decode(model(table_inputs(run.info, reference, "reference")))
    return DriftWindow(size, reference, predictions, [c["name"] for c in columns if c["kind"] == "categorical"],
                       lambda rows: pd.DataFrame(rows, columns=names), decode)


def window_rows(inputs: torch.Tensor | pd.DataFrame) -> list[Any]:
    """A request's inputs as window rows: table rows as dicts, images as their model inputs."""
    if isinstance(inputs, pd.DataFrame):
        return inputs.to_dict("records")
    return list(inputs)


def reference_images(run: Run, rows: int) -> torch.Tensor:
    """Model inputs of up to `rows` train images, drawn as `reference_frame` draws table rows."""
    data = build_dataset(run.config)
    train = data.index["train"].numpy()
    if len(train) > rows:
        train = numpy_stream(run.config.seed, Purpose.MONITOR).choice(train, size=rows, replace=False)
    normalize = data.normalizer()
    return normalize(data.x[sorted(train)])
