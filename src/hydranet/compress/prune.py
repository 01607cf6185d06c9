"""Pruning a trained HydraNet: global magnitude pruning to a target sparsity (torch.nn.utils.prune), structured
pruning that removes channels and neurons (Torch-Pruning), and the gradual cubic schedule of Zhu & Gupta (2017).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils import prune

from hydranet.config import Options
from hydranet.models import HydraNet
from hydranet.tasks import Task

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


class PruneOptions(Options):
    """Options of `hydranet compress --method prune`."""

    structure: Literal["unstructured", "channels"] = Field(
        "unstructured", description="unstructured: zero the smallest weights of all layers together | channels: "
        "remove whole channels and neurons (the model gets smaller and faster)")
    amount: float = Field(0.5, gt=0, lt=1, description="unstructured: the fraction of weights zeroed (sparsity); "
                          "channels: the fraction of each prunable layer's channels removed")
    importance: Literal["l1", "taylor"] = Field("l1", description="channels: which to remove, by L1 norm of their "
                                                "weights or by first-order Taylor |weight × gradient| of the summed task losses")
    schedule: Literal["oneshot", "gradual"] = Field("oneshot", description="oneshot: prune once (then fine-tune for "
                                                    "`epochs`) | gradual: unstructured sparsity grows on the cubic schedule while fine-tuning")
    epochs: int = Field(0, ge=0, description="fine-tuning epochs through the normal trainer (gradual needs at least 1)")
    end: float = Field(0.75, gt=0, le=1, description="gradual: the fraction of fine-tuning steps after which the "
                       "final sparsity is reached (the rest fine-tunes at it)")
    every: int = Field(10, ge=1, description="gradual: steps between two pruning steps (Zhu & Gupta's Δt)")


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every conv and linear weight, trunk and heads alike: what global magnitude pruning ranks together."""
    return [(module, "weight") for module in model.modules() if isinstance(module, PRUNABLE)]


def magnitude_prune(model: nn.Module, sparsity: float) -> None:
    """Zero the `sparsity` fraction of all prunable weights with the smallest magnitude, ranked across layers
    (global L1, as torch.nn.utils.prune's global_unstructured, which cannot flatten channels_last conv weights),
    and make it permanent with torch.nn.utils.prune: the weights stay plain parameters, so the run's weights file
    and every reader of it are unchanged. Zeros rank lowest, so sparsity only ever grows."""
    targets = prunable(model)
    scores = torch.cat([getattr(m, n).detach().abs().reshape(-1) for m, n in targets])
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[torch.topk(scores, round(sparsity * scores.numel()), largest=False).indices] = False
    for (module, name), mask in zip(targets, keep.split([getattr(m, n).numel() for m, n in targets])):
        prune.custom_from_mask(module, name, mask.reshape(getattr(module, name).shape))
        prune.remove(module, name)


def sparsity(model: nn.Module) -> float:
    """The fraction of prunable weights that are exactly zero."""
    weights = [getattr(module, name) for module, name in prunable(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def cubic_sparsity(step: int, final: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta (2017), eq. 1: s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n Δt))³ from step t0 = `start` to
    t0 + nΔt = `end`: pruning fast while many weights are redundant, slower as few are left; s_i before, s_f after."""
    if step <= start:
        return initial if end > start else final
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


class GradualPruning:
    """Trainer callback: raise the sparsity on the cubic schedule every `every` steps until `end` × the run's steps
    (end 0: the final sparsity from the first step, one-shot pruning kept through fine-tuning), and zero the pruned
    weights again after every optimizer step, so the optimizer never revives them. Because it acts at step
    boundaries, the run's balancer, augmentation and early stopping apply unchanged."""

    def __init__(self, final: float, end: float = 0.75, every: int = 10):
        self.final, self.end_fraction, self.every = final, end, every
        self.masks: list[tuple[Tensor, Tensor]] = []
        self.end = 0

    def on_fit_start(self, trainer) -> None:
        self.end = round(self.end_fraction * trainer.total_steps)
        self._prune(trainer.model, trainer.step)

    def on_step_end(self, trainer, losses) -> None:
        if trainer.step <= self.end and (trainer.step % self.every == 0 or trainer.step == self.end):
            self._prune(trainer.model, trainer.step)
        else:
            self.apply()

    def on_fit_end(self, trainer) -> None:
        self.apply()  # weights restored at the end (early stopping's best) keep the final sparsity too

    def _prune(self, model: nn.Module, step: int) -> None:
        target = cubic_sparsity(step, self.final, 0, self.end)
        if target > 0:
            with torch.no_grad():
                magnitude_prune(model, target)
        self.masks = [(getattr(m, n), getattr(m, n) != 0) for m, n in prunable(model)]

    @torch.no_grad()
    def apply(self) -> None:
        for weight, mask in self.masks:
            weight.mul_(mask)


def structured_prune(model: HydraNet, tasks: dict[str, Task], example: dict[str, Tensor], amount: float,
                     importance: str) -> None:
    """Remove `amount` of the channels and neurons of every prunable layer of the trunk and the heads' hidden
    layers, in place, with Torch-Pruning's dependency graph (a removed conv channel takes its BatchNorm entry and
    the next layer's inputs with it). Each head's output layer keeps its outputs. Taylor importance scores the
    shared trunk by the gradient of the summed task losses on `example` (a train batch), each head by its own."""
    import torch_pruning as tp  # optional: only structured pruning needs it

    outputs = [_output_layer(head) for head in model.heads.values()]
    scorer = tp.importance.TaylorImportance() if importance == "taylor" else tp.importance.MagnitudeImportance(p=1)
    model.eval()  # the dependency graph is traced once; BatchNorm must not update its statistics while it is
    pruner = tp.pruner.MetaPruner(model, example["x"][:2], importance=scorer, pruning_ratio=amount,
                                  ignored_layers=outputs, output_transform=lambda out: sum(v.float().sum() for v in out.values()))
    if importance == "taylor":
        model.zero_grad()
        predictions = model(example["x"])
        sum(task.loss(predictions[name], example[name]) for name, task in tasks.items()).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)


def _output_layer(head: nn.Module) -> nn.Module:
    """A head's last linear layer: its outputs are the task's, never pruned."""
    return [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
