"""IMTL, impartial multi-task learning (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, 2021, "Towards Impartial
Multi-task Learning", ICLR): IMTL-G gives the update equal projections on every task gradient's direction.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions
from hydranet.mtl.gram import GramMethod
from hydranet.mtl.uncertainty import task_slot
from hydranet.registry import register


def imtl_g_coefficients(gram: np.ndarray) -> np.ndarray:
    """(T,) α, Σ α = 1, with (Σ_k α_k g_k)·g_t/|g_t| the same for every t: α ∝ G⁺ d, d_t = |g_t|.

    Then (G α)_t = d_t·const, i.e. equal projections on the unit gradients. The pseudo-inverse is torchjd's
    generalization of the paper's closed form (which inverts a (T−1)² matrix) to linearly dependent
    gradients; both agree when the gradients are independent. A degenerate sum (no gradient) gives α = 0.
    """
    gram = np.asarray(gram, dtype=np.float64)
    v = np.linalg.pinv(gram, hermitian=True) @ np.sqrt(np.clip(np.diag(gram), 0.0, None))
    total = v.sum()
    return np.zeros_like(v) if abs(total) < 1e-12 else v / total


class IMTLOptions(GradientOptions):
    """Options of `mtl.balancer: {name: imtl, …}`."""

    loss_scale: bool = Field(False, description="also IMTL-L: each task's loss becomes exp(s_t)·L_t − s_t with a learned s_t (init 0), so every scaled loss stays near 1 (the paper's hybrid IMTL)")


@register("balancer", "imtl", options=IMTLOptions)
class IMTL(nn.Module, GramMethod):
    """Shared parameters get T·Σ_t α_t g_t with IMTL-G's α (Σ α = 1; the factor T keeps `equal`'s scale:
    identical gradients g give T·g); task-specific ones their own gradient (weight 1), as LibMTL does.

    `loss_scale: true` adds IMTL-L: the terms are exp(s_t)·L_t − s_t first (one learned s per task, trained
    by the trainer's optimizer like `uncertainty`'s; a "task@suffix" term shares its task's s, a term of no
    task is left as it is), and IMTL-G combines their gradients. The pseudo-inverse runs on the CPU, so each
    step syncs once. Returned weights: each term's coefficient in the shared gradient (times exp(s_t) with
    loss scaling, the factor on the raw loss).
    """

    def __init__(self, options: IMTLOptions, tasks: dict, seed: int):
        super().__init__()
        self.level = options.gradients
        self.index = {name: i for i, name in enumerate(tasks)}
        self.log_scales = nn.Parameter(torch.zeros(len(self.index))) if options.loss_scale else None  # (T,) s_t

    def scaled(self, losses: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor | float]]:
        """IMTL-L's terms exp(s)·L − s, and each raw loss's factor exp(s) (the losses as they are when off)."""
        if self.log_scales is None:
            return losses, {name: 1.0 for name in losses}
        terms, factors = {}, {}
        for name, loss in losses.items():
            i = task_slot(self.index, name)
            s = self.log_scales[i].to(loss.dtype) if i is not None else None
            terms[name] = loss if s is None else torch.exp(s) * loss - s
            factors[name] = 1.0 if s is None else torch.exp(s).detach()
        return terms, factors

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor | float]:
        terms, factors = self.scaled(losses)
        coeffs = self.gram_backward(terms, shared_params, lambda gram: len(gram) * imtl_g_coefficients(gram))
        return {name: c * factors[name] for name, c in coeffs.items()}
