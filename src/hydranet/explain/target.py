"""What an attribution explains: one task's head of the multi-head model as a (N, K) score, and which of the K.

HydraNet's forward returns {task: output}; Captum wants one tensor and a target index per example. `TaskScores`
adapts the model once, for every method, and `Target` says which score each example's attribution is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.tasks import Task


class TaskScores(nn.Module):
    """One task's raw head output as (N, K): class logits (classification), label logits (multilabel), or the
    single logit (binary) / standardized value (regression) as K = 1. Captum picks column `target[i]` of row i,
    so every method explains a scalar per example: a logit, or the regression output."""

    head_layers = True  # Grad-CAM's default layer may be in the task's own head (a conv head's last map)

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)[self.task].float()
        return out.unsqueeze(-1) if out.ndim == 1 else out  # (N,) heads (binary, regression) → (N, 1)

    def rows(self, part: slice) -> "TaskScores":
        """The scores of the examples `part` of a batch: the same for every example here (a per-pixel task's
        `RegionScores` keeps each example's region)."""
        return self


@dataclass
class Target:
    """Which score of a task each example's attribution is for, and how to name it in outputs."""

    index: Tensor  # (N,) int64 column of TaskScores
    names: list[str]  # per example: "logit of class 3", "logit of odd", "value"


def choose_target(task: Task, scores: Tensor, requested: str | None) -> Target:
    """The predicted class by default (the highest score: argmax of the logits, or the most probable label of a
    multilabel task), `requested` (a class/label name or index) for another; single-output heads have one."""
    classes = task.info.classes or []
    width = scores.shape[1]
    if width == 1:
        if requested is not None:
            raise UserError(f"--target: task {task.name!r} ({task.kind}) has one output; give no --target")
        return Target(torch.zeros(len(scores), dtype=torch.long), [_one_output_name(task)] * len(scores))
    index = scores.argmax(1) if requested is None else torch.full((len(scores),), class_index(task, requested))
    return Target(index.long().cpu(), [f"logit of {classes[i] if i < len(classes) else i}" for i in index.tolist()])


def _one_output_name(task: Task) -> str:
    """A binary head's one logit is for its positive class; a regression head's output is its value."""
    classes = task.info.classes or []
    return f"logit of {classes[-1]}" if classes else "value (standardized)"


def class_index(task: Task, text: str) -> int:
    """A class or label by name or index → its index; anything else names the choices."""
    classes, k = task.info.classes or [], task.info.outputs
    if text in classes:
        return classes.index(text)
    if text.isdigit() and int(text) < k:
        return int(text)
    shown = ", ".join(classes[:12]) + (", …" if len(classes) > 12 else "")
    raise UserError(f"--target: {text!r} is not a class of {task.name!r} (expected one of {shown} or an index below {k})")
