"""The server's window of recent traffic: the last rows it answered (inputs and raw outputs), and their drift
against the run's training data, computed as `hydranet monitor` computes it: per input column of a table run, per
image feature (mean and std of each channel) of an image run, per text feature (tokens, unknown-token rate) of a
text run, per sequence feature (steps, each feature's mean and std) of a numeric-sequence run, and per task of the
predictions.

A request only appends its rows; describing the inputs and decoding the predictions (pandas work) is left to the
drift report, which runs in a thread, so the window costs the request path next to nothing. The workers of
`hydranet serve --workers N` pool their windows (`SharedWindow`), so /drift describes all the server's traffic.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from hydranet.data import build_dataset
from hydranet.data.tabular import TableEncoder
from hydranet.files import append_line, write_text
from hydranet.monitor.drift import STAT_TEST_MAX_ROWS, frame_drift
from hydranet.data.info import TABLE
from hydranet.monitor.reference import per_example_tasks
from hydranet.monitor.report import input_features, predictions_drift, reference_frame
from hydranet.predict import decode_tasks, table_inputs
from hydranet.randomness import Purpose, numpy_stream
from hydranet.serve.inputs import TableRows
from hydranet.train.run import Run

MIN_ROWS = 30  # fewer recent rows make the tests too weak to flag anything but a gross shift

Outputs = dict[str, torch.Tensor]
Prepared = torch.Tensor | TableRows  # one request's decoded pixels (uint8), checked table rows or sequences
Recent = tuple[list[Any], list[Outputs]]  # window rows and, per row, its raw outputs


class DriftWindow:
    """The last `size` answered rows of this process. `reference_inputs` (raw train rows, or their image features)
    and `reference_predictions` (the model's decoded answers on them) are fixed at start. `rows(requests, x)` turns
    a batch's requests and their model inputs into window rows (JSON values: table rows as dicts, an image's
    channel statistics as a list), `describe(rows)` turns those into the frame compared with `reference_inputs`;
    `decode(outputs)` turns the raw outputs of `tasks` (the per-example ones; a per-pixel map is not kept) into
    answers. The batcher's thread adds, the event loop takes snapshots: a lock keeps them apart."""

    def __init__(self, size: int, reference_inputs: pd.DataFrame, reference_predictions: pd.DataFrame,
                 categorical: list[str], rows: Callable[[list[Prepared], torch.Tensor], list[Any]],
                 describe: Callable[[list[Any]], pd.DataFrame], decode: Callable[[Outputs], pd.DataFrame],
                 tasks: list[str]):
        self.size, self.reference_inputs, self.reference_predictions = size, reference_inputs, reference_predictions
        self.tasks = tasks  # whose outputs the window keeps: those `decode` reads
        self.categorical, self.rows, self.describe, self.decode = categorical, rows, describe, decode
        self.inputs: deque[Any] = deque(maxlen=size)
        self.outputs: deque[Outputs] = deque(maxlen=size)
        self.lock = threading.Lock()

    def add(self, requests: list[Prepared], x: torch.Tensor, outputs: Outputs) -> None:
        """One batch: its requests, their model inputs `x` and raw outputs (one row per row of `x`)."""
        outputs = self.watched(outputs)
        rows = self.rows(requests, x)
        per_row = [{task: values[i] for task, values in outputs.items()} for i in range(len(x))]
        with self.lock:
            self.inputs.extend(rows)
            self.outputs.extend(per_row)

    def watched(self, outputs: Outputs) -> Outputs:
        """The outputs the window keeps: those of `tasks`."""
        return {task: outputs[task] for task in self.tasks}

    def snapshot(self) -> Callable[[], Recent]:
        """What `drift` reads: a copy of the window taken under its lock (the batcher's thread adds to it), so the
        drift tests can run in a thread on rows that do not change under them."""
        with self.lock:
            recent = list(self.inputs), list(self.outputs)
        return lambda: recent

    def drift(self, snapshot: Callable[[], Recent]) -> dict[str, Any]:
        """Feature drift and prediction drift per task of the window; with too few rows, how many are needed."""
        inputs, outputs = snapshot()
        rows = len(outputs)
        if rows < MIN_ROWS:
            return {"ready": False, "rows": rows, "needed": MIN_ROWS,
                    "message": f"{rows} rows answered so far; drift needs at least {MIN_ROWS}"}
        stacked = {task: torch.stack([row[task] for row in outputs]) for task in outputs[0]}
        return {"ready": True, "rows": rows,
                "predictions": predictions_drift(self.reference_predictions, self.decode(stacked)),
                "features": frame_drift(self.reference_inputs, self.describe(inputs), self.categorical)}


class SharedWindow(DriftWindow):
    """The window of all the workers of `hydranet serve --workers N`: the last `size` rows any of them answered.

    Each worker appends every request (a time stamp, its window rows, its raw outputs) as one JSON line to a log
    of its own in `folder`, the server's private temporary folder; `drift` merges the logs and keeps the newest
    `size` rows. A worker rewrites its log with its newest `size` rows once it holds 2 × `size`, so the logs stay
    bounded and no worker ever writes another's file."""

    def __init__(self, folder: Path, *args: Any):
        super().__init__(*args)
        self.folder, self.log, self.logged = folder, folder / f"window-{os.getpid()}.jsonl", 0

    def add(self, requests: list[Prepared], x: torch.Tensor, outputs: Outputs) -> None:
        outputs = self.watched(outputs)
        record = {"t": time.time_ns(), "rows": self.rows(requests, x),
                  "outputs": {task: values.tolist() for task, values in outputs.items()}}
        append_line(self.log, json.dumps(record))
        self.logged += len(x)
        if self.logged >= 2 * self.size:
            kept = newest(read_log(self.log), self.size)
            write_text(self.log, "".join(json.dumps(record) + "\n" for record in kept))
            self.logged = sum(len(record["rows"]) for record in kept)

    def snapshot(self) -> Callable[[], Recent]:
        return self.merged

    def merged(self) -> Recent:
        """The newest `size` rows of all the workers' logs, oldest first."""
        records = newest(sorted((r for log in self.folder.glob("window-*.jsonl") for r in read_log(log)),
                                key=lambda r: r["t"]), self.size)
        inputs = [row for record in records for row in record["rows"]]
        outputs = [{task: torch.tensor(values[i]) for task, values in record["outputs"].items()}
                   for record in records for i in range(len(record["rows"]))]
        return inputs[-self.size:], outputs[-self.size:]


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of one worker's log; a line cut short (its worker stopped while writing it) is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def newest(records: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The shortest tail of `records` (in time order) holding at least `size` rows."""
    rows = 0
    for start in range(len(records) - 1, -1, -1):
        rows += len(records[start]["rows"])
        if rows >= size:
            return records[start:]
    return records


def drift_window(run: Run, model: Callable[[torch.Tensor], Outputs], size: int,
                 shared: Path | None = None) -> DriftWindow:
    """A window whose reference is up to 1,000 train rows (statistical tests, as `hydranet monitor` by default) and
    `model`'s predictions on them; `shared`: the folder where the workers of one server pool their windows."""
    tasks = per_example_tasks(run.tasks)  # a per-pixel map has no prediction drift, as in `hydranet monitor`
    decode = lambda outputs: decode_tasks(tasks, outputs)  # noqa: E731
    if run.info.kind != TABLE:  # per-example features of the model inputs (images, texts, sequences), as monitor's
        x = reference_inputs(run, STAT_TEST_MAX_ROWS)
        reference = input_features(run.info, x)
        rows = lambda requests, x: input_features(run.info, x).to_numpy().tolist()  # noqa: E731
        describe = lambda stats: pd.DataFrame(stats, columns=reference.columns, dtype="float64")  # noqa: E731
        parts = (size, reference, decode(model(x)), [], rows, describe, decode, list(tasks))
    else:
        columns = TableEncoder.from_state(run.info.encoder).columns
        names = [c["name"] for c in columns]
        reference = reference_frame(run, STAT_TEST_MAX_ROWS)[names]
        predictions = decode(model(table_inputs(run.info, reference, "reference")))
        parts = (size, reference, predictions, [c["name"] for c in columns if c["kind"] == "categorical"],
                 table_rows, lambda rows: pd.DataFrame(rows, columns=names), decode, list(tasks))
    return SharedWindow(shared, *parts) if shared is not None else DriftWindow(*parts)


def table_rows(requests: list[TableRows], x: torch.Tensor) -> list[dict[str, Any]]:
    """A batch's checked table rows as window rows."""
    return [row for request in requests for row in request.rows]


def reference_inputs(run: Run, rows: int) -> torch.Tensor:
    """Model inputs of up to `rows` train images, texts or sequences, drawn as `reference_frame` draws table rows."""
    data = build_dataset(run.config)
    train = data.index["train"].numpy()
    if len(train) > rows:
        train = numpy_stream(run.config.seed, Purpose.MONITOR).choice(train, size=rows, replace=False)
    normalize = data.normalizer()
    x = data.x[sorted(train)]
    return normalize(x) if normalize is not None else x
