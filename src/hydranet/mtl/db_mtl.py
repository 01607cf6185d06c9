"""DB-MTL, dual-balancing multi-task learning (Lin, Ye, Xu, Shi & Zhang, 2023, "Dual-Balancing for Multi-Task
Learning", arXiv:2308.12029): log losses balance the loss scales, equal-norm gradients balance the gradients.
"""

from __future__ import annotations

from pydantic import Field
import torch
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.mtl.gradients import backward_private, set_grad, term_gradients
from hydranet.registry import register

EPS = 1e-8  # in log(L_t + ε) and in the norm ratio, as in the authors' (LibMTL's) code


def balanced_sum(buffer: Tensor) -> tuple[Tensor, Tensor]:
    """(Σ_t α_t b_t, α) with α_t = max_k |b_k| / |b_t|: every row rescaled to the largest row's norm, then summed."""
    norms = buffer.norm(dim=1)  # (T,)
    alpha = norms.max() / (norms + EPS)
    return alpha @ buffer, alpha


class DBMTLOptions(Options):
    """Options of `mtl.balancer: {name: db_mtl, …}`."""

    beta: float = Field(0.9, ge=0, le=1, description="β of the gradients' moving average b ← g + β/k^σ·(b − g) at step k")
    beta_sigma: float = Field(0.5, ge=0, description="σ: how fast the moving average's weight β/k^σ decays with the step k")


@register("balancer", "db_mtl", options=DBMTLOptions)
class DBMTL:
    """Loss-scale balancing: each task's gradient is that of log(L_t + ε), i.e. ∇L_t / (L_t + ε). Gradient-
    magnitude balancing: a moving average b_t of those gradients on the shared parameters, every b_t rescaled
    to the largest one's norm, then summed (the shared gradient); task-specific parameters get the gradient
    of Σ_t log(L_t + ε). As the authors' code (LibMTL's `DB_MTL`) does.

    Why the sum at the largest norm: no task's gradient shrinks, and the update keeps `equal`'s scale. The
    average b (T, P) and the step count are checkpointed (exact resume); nothing syncs with the device.
    Returned weights: α_t, the factor on each task's averaged log-loss gradient.
    """

    def __init__(self, options: DBMTLOptions, tasks: dict, seed: int):
        self.beta, self.beta_sigma = options.beta, options.beta_sigma
        self.step = 0
        self.buffer: Tensor | None = None  # (T, P) b

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor]:
        names = list(losses)
        inverse = {name: 1.0 / (loss.detach().float() + EPS) for name, loss in losses.items()}  # d log(L+ε)/dL
        if not shared_params:
            backward_private(losses, inverse, [])
            return inverse
        self.step += 1
        grads = term_gradients(list(losses.values()), shared_params)  # (T, P)
        grads = grads * torch.stack([inverse[name] for name in names]).to(grads)[:, None]  # ∇ log(L_t + ε)
        if self.buffer is None or self.buffer.shape != grads.shape:
            self.buffer = torch.zeros_like(grads)
        decay = self.beta / self.step ** self.beta_sigma
        self.buffer = grads + decay * (self.buffer.to(grads) - grads)
        combined, alpha = balanced_sum(self.buffer)
        set_grad(shared_params, combined)
        backward_private(losses, inverse, shared_params)
        return {name: alpha[i] for i, name in enumerate(names)}

    def state_dict(self) -> dict:
        return {"step": self.step, "buffer": torch.zeros(0) if self.buffer is None else self.buffer.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.buffer = state["buffer"].clone() if state["buffer"].numel() else None
