"""Uncertainty weighting (Kendall, Gal & Cipolla, 2018, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR): each task's loss scaled by a learned homoscedastic noise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.registry import register


def task_slot(index: dict[str, int], term: str) -> int | None:
    """Which per-task parameter a loss term uses: its own task's, its base task's ("task@suffix"), or none."""
    return index.get(term, index.get(term.partition("@")[0]))


@register("balancer", "uncertainty")
class Uncertainty(nn.Module):
    """Backward of Σ_t exp(−s_t)·L_t + s_t with learned log-variances s_t = log σ_t² (init 0: weight 1).

    Why this form: the paper's regression term is ½(exp(−s)·L + s) and its classification term
    exp(−s)·L + ½s. One form for every task kind keeps the weights comparable across kinds, with the
    same optimum exp(s*) = L for each. LibMTL and the Nash-MTL code use ½(exp(−s)·L + s) for all;
    without the ½ the starting weights are 1, the scale of `equal`, so a learning rate tuned there fits.

    The s_t are an `nn.Module` parameter, so the trainer moves them to the device and its optimizer
    trains them with the network (weight decay 0). The trainer builds its optimizer before any loss is
    seen, so there is one s per task, created here; a non-task term "task@suffix" (the same task on
    perturbed inputs) shares its task's s, and a term of no task (e.g. "simclr") keeps weight 1.
    """

    def __init__(self, options: Options, tasks: dict, seed: int):
        super().__init__()
        self.index = {name: i for i, name in enumerate(tasks)}
        self.log_vars = nn.Parameter(torch.zeros(len(self.index)))  # (T,) s_t

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor | float]:
        total, weights = 0.0, {}
        for name, loss in losses.items():
            i = task_slot(self.index, name)
            if i is None:
                total, weights[name] = total + loss, 1.0
                continue
            s = self.log_vars[i].to(loss.dtype)
            total = total + torch.exp(-s) * loss + s
            weights[name] = torch.exp(-s).detach()
        total.backward()
        return weights
