"""Batched inference and per-task metrics on a whole split (used by the trainer, `evaluate` and `predict`)."""

from __future__ import annotations

import torch
from torch import nn

from hydranet.config import TrainConfig
from hydranet.errors import UserError
from hydranet.tasks import Task
from hydranet.train.precision import autocast


def eval_settings(train: TrainConfig) -> tuple[int, str, str]:
    """(batch size, precision, tta) of a run's evaluation: `predict_batches(model, x, *eval_settings(cfg.train))`."""
    return train.eval_batch_size, train.precision, train.eval_tta


def forward_tta(model: nn.Module, x: torch.Tensor, tta: str) -> dict[str, torch.Tensor]:
    """Raw outputs per task as float32; with tta "flip", the mean over x and its left-right mirror.

    Averaging the logits of both orientations is the test-time augmentation of the CIFAR-10 speed runs:
    training with random flips makes the model nearly, but not exactly, mirror-invariant.
    """
    outputs = {task: pred.float() for task, pred in model(x).items()}
    if tta == "flip":
        heads = getattr(model, "heads", {})
        mirrored = {task: unmirror(pred.float(), heads[task] if task in heads else None)
                    for task, pred in model(x.flip(3)).items()}
        outputs = {task: (pred + mirrored[task]) / 2 for task, pred in outputs.items()}
    return outputs


def unmirror(pred: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
    """The output for a mirrored image, mirrored back: dense outputs put the pixel axes first, (B, H, W[, K])
    (`hydranet.kinds`), so their W axis is 2; a per-example output (B[, K]) has no pixels to move. A head whose
    values themselves change in a mirror (normals: x changes sign) says how with its `mirror`."""
    if pred.ndim < 3:
        return pred
    mirror = getattr(head, "mirror", None)
    return pred.flip(2) if mirror is None else mirror(pred.flip(2))


@torch.inference_mode()
def predict_batches(model: nn.Module, x: torch.Tensor, batch_size: int, precision: str = "fp32",
                    tta: str = "none") -> dict[str, torch.Tensor]:
    """Raw model outputs per task for all of x, in eval mode, as float32 on x's device.

    `precision` and `tta` are the run's `train.precision` (fp32, bf16 or auto, resolved for x's device)
    and `train.eval_tta`.
    """
    if tta == "flip" and x.ndim != 4:
        raise UserError(f"train.eval_tta: flip needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    outputs: dict[str, list[torch.Tensor]] = {}
    with autocast(x.device, precision):
        for chunk in x.split(batch_size):
            for task, pred in forward_tta(model, chunk, tta).items():
                outputs.setdefault(task, []).append(pred)
    model.train(was_training)
    return {task: torch.cat(parts) for task, parts in outputs.items()}


def evaluate_split(model: nn.Module, tasks: dict[str, Task], split: dict[str, torch.Tensor],
                   batch_size: int, precision: str = "fp32", tta: str = "none") -> dict[str, dict[str, float]]:
    """{task: {metric: value}} over one split; tasks without any label in it are left out."""
    preds = predict_batches(model, split["x"], batch_size, precision, tta)
    result = {}
    for name, task in tasks.items():
        metrics = task.metrics(preds[name].cpu(), split[name].cpu())
        if metrics:
            result[name] = metrics
    return result
