"""The server's window of recent traffic: the last rows it answered (raw inputs and decoded predictions), and
their drift against the run's training data, computed as `hydranet monitor` computes it.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import pandas as pd
import torch

from hydranet.data import build_dataset
from hydranet.data.tabular import TableEncoder
from hydranet.monitor.drift import STAT_TEST_MAX_ROWS, frame_drift
from hydranet.monitor.report import predictions_drift, reference_frame
from hydranet.predict import decode_outputs, table_inputs
from hydranet.randomness import Purpose, numpy_stream
from hydranet.train.run import Run

MIN_ROWS = 30  # fewer recent rows make the tests too weak to flag anything but a gross shift


class DriftWindow:
    """The last `size` answered rows. `reference_inputs` (raw train rows; None for image runs, whose pixels are
    not compared) and `reference_predictions` (the model's decoded answers on the reference) are fixed at start."""

    def __init__(self, size: int, reference_inputs: pd.DataFrame | None, reference_predictions: pd.DataFrame,
                 categorical: list[str]):
        self.reference_inputs, self.reference_predictions = reference_inputs, reference_predictions
        self.categorical = categorical
        self.inputs: deque[dict[str, Any]] = deque(maxlen=size)
        self.predictions: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, inputs: pd.DataFrame | None, predictions: pd.DataFrame) -> None:
        if inputs is not None and self.reference_inputs is not None:
            self.inputs.extend(inputs.to_dict("records"))
        self.predictions.extend(predictions.to_dict("records"))

    def recent(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A copy of the window (inputs, predictions), taken on the event loop, which alone adds to it, so the drift
        tests can run in a thread on rows that do not change under them."""
        return list(self.inputs), list(self.predictions)

    def drift(self, recent: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> dict[str, Any]:
        """Feature drift (table runs) and prediction drift per task of `recent()`; with too few rows, how many are
        needed."""
        inputs, predictions = recent
        rows = len(predictions)
        if rows < MIN_ROWS:
            return {"ready": False, "rows": rows, "needed": MIN_ROWS,
                    "message": f"{rows} rows answered so far; drift needs at least {MIN_ROWS}"}
        report: dict[str, Any] = {"ready": True, "rows": rows,
                                  "predictions": predictions_drift(self.reference_predictions,
                                                                   pd.DataFrame(predictions))}
        if self.reference_inputs is None:
            report["features"] = None
            report["message"] = "an image run: prediction drift only (pixels are not compared)"
        else:
            current = pd.DataFrame(inputs, columns=self.reference_inputs.columns)
            report["features"] = frame_drift(self.reference_inputs, current, self.categorical)
        return report


def drift_window(run: Run, model: Callable[[torch.Tensor], dict[str, torch.Tensor]], size: int) -> DriftWindow:
    """A window whose reference is up to 1,000 train rows (statistical tests, as `hydranet monitor` by default) and
    `model`'s predictions on them."""
    if run.info.is_image:
        return DriftWindow(size, None, decode_outputs(run, model(reference_images(run, STAT_TEST_MAX_ROWS))), [])
    columns = TableEncoder.from_state(run.info.encoder).columns
    reference = reference_frame(run, STAT_TEST_MAX_ROWS)[[c["name"] for c in columns]]
    predictions = decode_outputs(run, model(table_inputs(run.info, reference, "reference")))
    return DriftWindow(size, reference, predictions, [c["name"] for c in columns if c["kind"] == "categorical"])


def reference_images(run: Run, rows: int) -> torch.Tensor:
    """Model inputs of up to `rows` train images, drawn as `reference_frame` draws table rows."""
    data = build_dataset(run.config)
    train = data.index["train"].numpy()
    if len(train) > rows:
        train = numpy_stream(run.config.seed, Purpose.MONITOR).choice(train, size=rows, replace=False)
    normalize = data.normalizer()
    return normalize(data.x[sorted(train)])
