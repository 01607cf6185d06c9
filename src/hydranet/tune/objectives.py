"""What a study optimizes: validation metrics, the parameter count and the measured inference latency.

`--objectives val/left/accuracy:max,params:min` parses into a list of Objective; one objective is an ordinary
study, several a multi-objective one with a Pareto front.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hydranet.config import Config, metric_problem
from hydranet.errors import UserError
from hydranet.tasks import higher_is_better
from hydranet.train.evaluation import predict_batches

MODEL_OBJECTIVES = ("params", "latency")  # measured on the trained model rather than read from val metrics


@dataclass(frozen=True)
class Objective:
    name: str  # val/loss, val/<task>/<metric>, params or latency
    maximize: bool

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    @property
    def per_epoch(self) -> bool:
        """Whether the trainer reports it every epoch (what pruning needs)."""
        return self.name.startswith("val/")


def parse_objectives(text: str | None, cfg: Config) -> list[Objective]:
    """`name[:min|max],…`; without a text the run's early-stopping monitor (or val/loss) is the one objective.
    A missing direction follows the metric: accuracy-like up, losses, errors, params and latency down."""
    if not text:
        monitor = cfg.train.early_stopping.monitor or "val/loss"
        return [Objective(monitor, higher_is_better(monitor))]
    objectives = []
    for item in (part.strip() for part in text.split(",")):
        name, _, way = item.partition(":")
        if name not in MODEL_OBJECTIVES:
            problem = metric_problem(cfg.tasks, name)
            if problem:
                raise UserError(f"--objectives: {problem}, or params or latency")
        if way not in ("", "min", "max"):
            raise UserError(f"--objectives: {item!r} must end in :min or :max (or name no direction)")
        maximize = way == "max" if way else name not in MODEL_OBJECTIVES and higher_is_better(name)
        objectives.append(Objective(name, maximize))
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise UserError(f"--objectives: {', '.join(names)} names one objective twice")
    return objectives


def summary_value(summary: dict, name: str) -> float | None:
    """`val/loss` (the sum of the task losses, as the trainer sums them) or `val/<task>/<metric>` of a run's
    summary, i.e. of its final weights; None when the run has no val split."""
    val = summary.get("val") or {}
    if not val:
        return None
    if name == "val/loss":
        return sum(m.get("loss", 0.0) for m in val.values())
    _, task, metric = name.split("/")
    return val[task][metric]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def latency_ms(predict: Callable[[], object], repeats: int = 30, warmup: int = 5) -> float:
    """Median wall-clock milliseconds of one call of `predict` (one example through the model, as `Model.predict_raw`
    does it), after warm-up calls, so one-off allocations and scheduler noise do not count."""
    for _ in range(warmup):
        predict()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def model_latency_ms(model: nn.Module, input_shape: tuple[int, ...], precision: str) -> float:
    """Inference latency of one example: eval mode, no gradients, the run's train.precision, on the model's device."""
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_shape, device=device)

    def predict() -> None:
        with torch.inference_mode():
            predict_batches(model, x, 1, precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return latency_ms(predict)
