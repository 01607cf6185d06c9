"""What a fairness mitigation adds to a training run (adversarial debiasing: its adversaries and balancer step),
registered as `run_parts` "fairness", so assembling a run imports no fairness code (train/surface.py `RunParts`).
"""

from __future__ import annotations

import torch

from hydranet.config import Config
from hydranet.data import Dataset
from hydranet.data.build import mitigation_method
from hydranet.registry import register
from hydranet.rundir import RunDir
from hydranet.tasks import Task
from hydranet.train.surface import RunParts


def mitigated_tasks(cfg: Config) -> list[str]:
    """`fairness.tasks`, by default every task."""
    return cfg.fairness.tasks or list(cfg.tasks)


@register("run_parts", "fairness")
class MitigationParts:
    """A mitigation that acts during training offers `run_parts(tasks, data, device)` and optionally
    `check(infos)`; one that only weighs examples (reweigh) or none at all adds nothing."""

    @staticmethod
    def check(cfg: Config, data: Dataset) -> None:
        check = getattr(mitigation_method(cfg), "check", None)
        if check is not None:
            check({task: data.info.tasks[task] for task in mitigated_tasks(cfg)})

    @staticmethod
    def build(cfg: Config, tasks: dict[str, Task], data: Dataset, run: RunDir, device: torch.device) -> RunParts:
        make = getattr(mitigation_method(cfg), "run_parts", None)
        if make is None:
            return RunParts()
        return make({task: tasks[task] for task in mitigated_tasks(cfg)}, data, device)
