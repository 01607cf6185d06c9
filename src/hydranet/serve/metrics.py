"""Prometheus metrics of one server, in a registry of its own (not prometheus_client's global one, so two apps in
one process, as in the tests, count apart). The workers of `serve --workers N` count in prometheus_client's
multiprocess mode, and /metrics answers the sum over all of them.
"""

from __future__ import annotations

import os
import collections
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it once, when it is first imported

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """Requests, errors, latency, batch sizes, predicted classes and the latest drift scores. `shared`: the server's
    folder for its workers' metric files (`metrics_folder`), which the server put in PROMETHEUS_MULTIPROC_DIR
    before it started them: counters and histograms are summed over the workers, requests in progress too
    (livesum), and a drift gauge is the most recent value any worker set (all compute drift on the pooled window)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, shared: Path | None = None) -> None:
        if shared is not None and os.environ.get(MULTIPROC_ENV) != str(metrics_folder(shared)):
            raise RuntimeError(f"{MULTIPROC_ENV} must name {metrics_folder(shared)} before prometheus_client loads")
        self.shared = shared
        self.registry = CollectorRegistry()
        options: dict[str, Any] = {"registry": self.registry}
        self.requests = Counter("hydranet_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], **options)
        self.errors = Counter("hydranet_errors", "requests answered with a 4xx or 5xx status, by endpoint and reason",
                              ["endpoint", "reason"], **options)
        self.latency = Histogram("hydranet_request_seconds", "time from request to response, by endpoint",
                                 ["endpoint"], **options)
        self.in_progress = Gauge("hydranet_predict_in_progress", "/predict requests being answered now",
                                 multiprocess_mode="livesum", **options)
        self.batch_rows = Histogram("hydranet_batch_rows", "rows per model call (dynamic batching)",
                                    buckets=BATCH_BUCKETS, **options)
        self.predictions = Counter("hydranet_predictions", "answers per task and predicted class or label "
                                   "(tasks that predict a value count under label \"\"; a per-pixel map adds its "
                                   "predicted pixel share to each class)", ["task", "label"], **options)
        self.drift_score = Gauge("hydranet_drift_score", "latest drift test of the window: the p-value (≤ 1,000 "
                                 "reference rows) or distance, per feature or task", ["kind", "name"],
                                 multiprocess_mode="mostrecent", **options)
        self.drifted = Gauge("hydranet_drifted", "1 when the latest drift test flags the feature or task",
                             ["kind", "name"], multiprocess_mode="mostrecent", **options)

    def count_answers(self, per_task: dict[str, list[dict[str, Any]]]) -> None:
        """One count per row and task, under the label(s) it predicted, or split over the classes by its pixel
        shares (a segmentation map: each image adds its predicted share of pixels per class, so the counts of a task
        are the images answered, and a class's share of them is its predicted pixel share): a batch's answers per
        task, added up first so each label's counter is touched once per batch."""
        for task, answers in per_task.items():
            counts: collections.Counter = collections.Counter()
            for answer in answers:
                counts.update(answer_counts(answer))
            for label, count in counts.items():
                self.predictions.labels(task, label).inc(count)

    def set_drift(self, report: dict[str, Any]) -> None:
        """The drift gauges from a ready `DriftWindow.drift()` report."""
        for kind, key, results in (("feature", "features", "features"), ("prediction", "predictions", "tasks")):
            for result in (report[key] or {}).get(results, []):
                score = result.get("p_value", result.get("distance"))
                if score is not None:
                    self.drift_score.labels(kind, result["feature"]).set(score)
                    self.drifted.labels(kind, result["feature"]).set(float(result["drift"]))

    def render(self) -> bytes:
        """The metrics in Prometheus' text format: this server's, or the sum over the workers of a shared one."""
        if self.shared is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(metrics_folder(self.shared)))
        return generate_latest(merged)


def answer_counts(answer: dict[str, Any]) -> dict[str, float]:
    """What one answer adds to the prediction counts: its pixel shares, its labels, or 1 under its label ("" for
    a value)."""
    if "pixel_shares" in answer:
        return answer["pixel_shares"]
    labels = answer["labels"] if "labels" in answer else [answer.get("label", "")]
    return collections.Counter(labels)


def metrics_folder(shared: Path) -> Path:
    """Where the workers of a server sharing `shared` write their metric files."""
    return shared / "metrics"
