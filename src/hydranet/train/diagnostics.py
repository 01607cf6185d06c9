"""Gradient diagnostics: how much the loss terms' gradients on the shared parameters agree, per epoch.

Sampled every `mtl.diagnostics_every` steps into `record["gradients"]`: mean pairwise cosine, conflict rate (cosine < 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hydranet.train.gradients import term_gradients


def cosine_matrix(grads: Tensor) -> tuple[Tensor, Tensor]:
    """(T, T) cosines of the rows and a mask of the defined ones (both gradients non-zero)."""
    norms = grads.norm(dim=1, keepdim=True)  # (T, 1)
    unit = grads / norms.clamp_min(torch.finfo(grads.dtype).tiny)  # rows scaled first: tiny norms cannot underflow
    defined = (norms > 0) & (norms > 0).T
    return unit @ unit.T, defined


class GradientDiagnostics:
    """Trainer callback; add it before MetricsLog so its numbers are in the record when the line is written.

    Sums stay tensors on the training device between samples: sampling never waits for the device.
    """

    def __init__(self, every: int):
        self.every = every
        self.on_epoch_start(None)

    def on_epoch_start(self, trainer) -> None:
        self.count, self.samples = 0, 0
        self.names: list[str] | None = None

    def on_losses(self, trainer, losses: dict[str, Tensor]) -> None:
        due = self.every > 0 and self.count % self.every == 0
        self.count += 1
        if not due or len(losses) < 2 or not trainer.shared:
            return
        names = [name for name, loss in losses.items() if loss.requires_grad]
        if len(names) < 2:
            return
        grads = term_gradients([losses[name] for name in names], trainer.shared)  # (T, P); .grad untouched
        cos, defined = cosine_matrix(grads.detach())
        if self.names != names:  # first sample of the epoch (the terms do not change within one)
            self.names, self.samples = names, 0
            self.sum = torch.zeros_like(cos)
            self.negative = torch.zeros_like(cos)
            self.defined = torch.zeros_like(cos)
        self.sum += torch.where(defined, cos, torch.zeros_like(cos))
        self.negative += (defined & (cos < 0)).float()
        self.defined += defined.float()
        self.samples += 1

    def on_epoch_end(self, trainer, record: dict) -> None:
        if not self.samples or self.names is None:
            return  # one term only, or off
        record["gradients"] = summarize(self.names, self.sum.cpu(), self.negative.cpu(), self.defined.cpu(), self.samples)


def summarize(names: list[str], total: Tensor, negative: Tensor, defined: Tensor, samples: int) -> dict:
    """{"cosine": {"a|b": mean}, "conflict_rate": {"a|b": share < 0}, "samples": n}; NaN where never defined."""
    cosine, conflict = {}, {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            n = float(defined[i, j])
            key = f"{names[i]}|{names[j]}"
            cosine[key] = float(total[i, j]) / n if n else float("nan")
            conflict[key] = float(negative[i, j]) / n if n else float("nan")
    return {"cosine": cosine, "conflict_rate": conflict, "samples": samples}
