"""Batched inference and per-task metrics on a whole split (used by the trainer, `evaluate` and `predict`)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from hydranet.tasks import Task


@torch.no_grad()
def predict_batches(model: nn.Module, x: torch.Tensor, batch_size: int, bf16: bool = False) -> dict[str, torch.Tensor]:
    """Raw model outputs per task for all of x, in eval mode, as float32 on x's device."""
    was_training = model.training
    model.eval()
    device = x.device
    cast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    outputs: dict[str, list[torch.Tensor]] = {}
    with cast:
        for chunk in x.split(batch_size):
            for task, pred in model(chunk).items():
                outputs.setdefault(task, []).append(pred.float())
    model.train(was_training)
    return {task: torch.cat(parts) for task, parts in outputs.items()}


def evaluate_split(model: nn.Module, tasks: dict[str, Task], split: dict[str, torch.Tensor],
                   batch_size: int, bf16: bool = False) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} over one split; tasks without any label in it are left out."""
    preds = predict_batches(model, split["x"], batch_size, bf16)
    result = {}
    for name, task in tasks.items():
        metrics = task.metrics(preds[name].cpu(), split[name].cpu())
        if metrics:
            result[name] = metrics
    return result
