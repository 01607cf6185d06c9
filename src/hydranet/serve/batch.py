"""`BatchAnswers`: what one batch of /predict requests goes through, in the batcher's thread — each request's
inputs prepared on its own, the model once on all rows, the answers decoded, the drift window and the metrics
updated once per batch, and each request's JSON answer written there, so the event loop only routes bytes.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from hydranet.data import to_model_inputs
from hydranet.data.info import SEQUENCE
from hydranet.errors import UserError
from hydranet.fairness.threshold import Thresholds, row_groups
from hydranet.serve.backend import Backend
from hydranet.serve.inputs import ImageFiles, encode_table_rows, image_pixels, sequence_inputs, table_rows
from hydranet.serve.metrics import ServerMetrics
from hydranet.serve.window import DriftWindow, Prepared
from hydranet.train.run import Run


class BatchAnswers:
    """Called by the MicroBatcher with the gathered requests (image files, or table rows whose shape was checked);
    returns per request its JSON body, or the UserError that refuses it (422) — a bad request fails alone and its
    rows never reach the model. Image pixels are normalized once for the whole batch (exact arithmetic: the same
    numbers as per request)."""

    def __init__(self, run: Run, backend: Backend, window: DriftWindow, metrics: ServerMetrics,
                 thresholds: Thresholds | None, sensitive: tuple[str, ...] = ()):
        self.run, self.backend, self.window, self.metrics = run, backend, window, metrics
        self.thresholds, self.sensitive = thresholds, sensitive

    def __call__(self, requests: list[ImageFiles | list[Any]]) -> list[bytes | UserError]:
        prepared = [self.prepare(request) for request in requests]
        good = [p for p in prepared if not isinstance(p, UserError)]
        if not good:
            return prepared
        x = self.model_inputs(good)
        self.metrics.batch_rows.observe(len(x))
        outputs = self.backend(x)
        self.window.add(good, x, outputs)
        bodies = iter(self.json_bodies(good, outputs))
        return [request if isinstance(request, UserError) else next(bodies) for request in prepared]

    def json_bodies(self, requests: list[Prepared], outputs: dict[str, torch.Tensor]) -> list[bytes]:
        """Each request's JSON answer from its own rows of the batch's outputs; the batch's predictions counted."""
        bodies, counted, start = [], {name: [] for name in self.run.tasks}, 0
        for request in requests:
            rows = slice(start, start + len(request))
            start = rows.stop
            answers = self.answers({name: values[rows] for name, values in outputs.items()}, request)
            for name, values in answers.items():
                counted[name] += values
            bodies.append(json_body({"predictions": [dict(zip(answers, row)) for row in zip(*answers.values())]}))
        self.metrics.count_answers(counted)
        return bodies

    def prepare(self, request: ImageFiles | list[Any]) -> Prepared | UserError:
        """One request's pixels, cleaned rows or sequences (as model inputs); the UserError that refuses it when an
        image or a cell is bad."""
        try:
            if self.run.info.is_image:
                return image_pixels(self.run.info, request)
            if self.run.info.kind == SEQUENCE:
                return sequence_inputs(self.run.info, request)
            return table_rows(self.run.info, request, self.sensitive)
        except UserError as err:
            return err

    def model_inputs(self, prepared: list[Prepared]) -> torch.Tensor:
        """One model input of the batch's requests, in order: pixels normalized together, rows encoded together,
        sequences (standardized per request) stacked."""
        if self.run.info.is_image:
            return to_model_inputs(self.run.info, images=torch.cat(prepared))
        if self.run.info.kind == SEQUENCE:
            return torch.cat(prepared)
        return encode_table_rows(self.run.info, prepared)

    def answers(self, outputs: dict[str, torch.Tensor], request: Prepared) -> dict[str, list[dict[str, Any]]]:
        """Per task, one request's answers from its rows of the outputs. Decoded per request, not per batch: torch's
        vectorized sigmoid and softmax round the last bit differently with the tensor's length, and a request's
        answers must not depend on the requests it was batched with.

        A thresholded task's label becomes the thresholds' decision (its probability stays the model's), the same
        as `hydranet predict`'s `<task>_decision`. Thresholds exist for table runs only; their per-row draw hashes
        the request's encoded rows, as predict's, and their groups come from the request's frame."""
        answers = {name: task.answers(outputs[name]) for name, task in self.run.tasks.items()}
        if self.thresholds is not None:
            x = encode_table_rows(self.run.info, [request])
            groups = row_groups(self.run, request.frame, "rows")
            for name, decided in self.thresholds.decide(self.run, outputs, x, groups, "rows").items():
                for answer, positive in zip(answers[name], decided):
                    answer["label"] = self.run.tasks[name].info.classes[positive]
        return answers


def json_body(content: Any) -> bytes:
    """`content` as Starlette's JSONResponse writes it (compact, UTF-8, no NaN), written here once rather than
    validated and re-encoded by FastAPI per request."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
