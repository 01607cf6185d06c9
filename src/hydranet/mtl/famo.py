"""FAMO, fast adaptive multitask optimization (Liu, Liang, Li, Stone & Liu, 2023, "FAMO: Fast Adaptive
Multitask Optimization", NeurIPS): balances the tasks' loss *decrease rates* with O(1) space and time.
"""

from __future__ import annotations

from pydantic import Field
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.registry import register

EPS = 1e-8  # the paper's ε in log(L_t − min L_t + ε); min L_t is 0 (every hydranet loss is ≥ 0)


class FAMOOptions(Options):
    """Options of `mtl.balancer: {name: famo, …}`."""

    lr: float = Field(0.025, gt=0, description="Adam learning rate of the task logits ξ")
    gamma: float = Field(0.001, ge=0, description="weight decay γ of the task logits ξ")


@register("balancer", "famo", options=FAMOOptions)
class FAMO:
    """z = softmax(ξ); backward of Σ_t z_t·log(L_t + ε) / c with c = Σ_t z_t/(L_t + ε), i.e. of Σ_t w_t·L_t
    with w_t = z_t / (c·(L_t + ε)) (Σ w = 1, as in the authors' code). One backward, no per-task pass.

    ξ update (Algorithm 1): δ_t = log(L_t + ε) − log(L'_t + ε) is how much each loss fell over a step;
    ξ takes an Adam step (lr `mtl.famo_lr`, weight decay `mtl.famo_gamma`) along −J_softmax(ξ)ᵀ δ, so
    tasks whose loss fell least gain weight. The authors recompute L' on the same batch after the
    optimizer step (one extra forward); to keep O(1) extra cost this uses the next step's losses (another
    batch, with the updated parameters), first thing in the next `backward`. The official code also clips
    the shared gradient to norm 1: that is `train.grad_clip` here. Every loss term counts as a task; ξ,
    its Adam state and the previous losses are checkpointed, and nothing syncs with the device.
    """

    def __init__(self, options: FAMOOptions, tasks: dict, seed: int):
        self.lr, self.gamma = options.lr, options.gamma
        self.names: list[str] | None = None
        self.pending: dict | None = None  # a loaded state, applied once the device is known

    def start(self, names: list[str], device: torch.device) -> None:
        """Create ξ = 0 (equal weights) and its optimizer on the losses' device, or restore them."""
        self.names = names
        self.logits = torch.zeros(len(names), device=device, requires_grad=True)  # (T,) ξ
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.gamma)
        self.previous: Tensor | None = None  # (T,) losses of the last step
        state, self.pending = self.pending, None
        if state is not None and state["names"] == names:  # a checkpoint of this very set of terms
            with torch.no_grad():
                self.logits.copy_(state["logits"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.previous = state["previous"].to(device) if len(state["previous"]) else None

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor]:
        names = list(losses)
        current = torch.stack([loss.detach().float() for loss in losses.values()])  # (T,)
        if self.names != names:
            self.start(names, current.device)
        if self.previous is not None:
            self.update(self.previous, current)
        with torch.no_grad():
            z = F.softmax(self.logits, dim=0)
            weights = z / (current + EPS)
            weights = weights / weights.sum()  # z_t / (c·(L_t + ε))
        sum(weights[i] * loss for i, loss in enumerate(losses.values())).backward()
        self.previous = current
        return {name: weights[i] for i, name in enumerate(names)}

    def update(self, before: Tensor, after: Tensor) -> None:
        """One Adam step on ξ with gradient J_softmax(ξ)ᵀ δ, δ = log(before + ε) − log(after + ε)."""
        delta = torch.log(before + EPS) - torch.log(after + EPS)  # (T,) how much each loss fell
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.softmax(self.logits, dim=0), self.logits, grad_outputs=delta)
        self.optimizer.zero_grad()
        self.logits.grad = grad
        self.optimizer.step()

    def state_dict(self) -> dict:
        if self.names is None:
            return dict(self.pending or {})
        previous = torch.zeros(0) if self.previous is None else self.previous
        return {"names": list(self.names), "logits": self.logits.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "previous": previous}

    def load_state_dict(self, state: dict) -> None:
        self.names, self.pending = None, dict(state) if state else None
