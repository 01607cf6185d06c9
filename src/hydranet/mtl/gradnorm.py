"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, 2018, "GradNorm: Gradient Normalization for Adaptive
Loss Balancing in Deep Multitask Networks", ICML): weights that equalize the tasks' relative training rates.
"""

from __future__ import annotations

from pydantic import Field
import torch
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.mtl.gradients import independent_backward, last_matrix, term_gradients
from hydranet.registry import register


class GradNormOptions(Options):
    """Options of `mtl.balancer: {name: gradnorm, …}`."""

    alpha: float = Field(1.5, ge=0, description="asymmetry α, how strongly slow tasks are pulled up (Chen et al., 2018)")
    lr: float = Field(0.025, gt=0, description="Adam learning rate of the task weights")


@register("balancer", "gradnorm", options=GradNormOptions)
class GradNorm:
    """Backward of Σ_t w_t·L_t; then w takes one Adam step (lr `mtl.gradnorm_lr`) on the grad-norm loss
    L_grad = Σ_t |G_t − Ḡ·r_t^α| and is renormalized to Σ w = T (Algorithm 1 of the paper).

    G_t = |∇_W w_t L_t| on W, the last shared layer's weight; Ḡ = mean G_t; r_t = L̃_t / mean L̃ with
    L̃_t = L_t / L_t(0) the inverse training rate (L_t(0): the first step's loss); α = `mtl.gradnorm_alpha`.
    The target Ḡ·r^α is a constant (as in the paper), and since G_t = w_t·|∇_W L_t| the gradient of L_grad
    on w_t is sign(G_t − target_t)·|∇_W L_t|: one batched backward to W (heads and one layer) for all
    terms, no double backward. w is not a trainer parameter (it follows its own rule): it lives here with its own Adam, is
    kept ≥ 1e-3 before renormalizing, and is checkpointed. Every loss term counts as a task; nothing syncs.
    """

    def __init__(self, options: GradNormOptions, tasks: dict, seed: int):
        self.alpha, self.lr = options.alpha, options.lr
        self.names: list[str] | None = None
        self.pending: dict | None = None  # a loaded state, applied once the device is known

    def start(self, names: list[str], losses: Tensor) -> None:
        """w = 1 and L(0) = the first losses, on the losses' device; or the checkpointed ones."""
        self.names = names
        self.weights = torch.ones(len(names), device=losses.device, requires_grad=True)  # (T,) w
        self.optimizer = torch.optim.Adam([self.weights], lr=self.lr)
        self.initial = losses.clone()  # (T,) L(0)
        state, self.pending = self.pending, None
        if state is not None and state["names"] == names:
            with torch.no_grad():
                self.weights.copy_(state["weights"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.initial = state["initial"].to(losses.device)

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor]:
        if not shared_params:
            return independent_backward(losses)
        names, terms = list(losses), list(losses.values())
        current = torch.stack([loss.detach().float() for loss in terms])  # (T,)
        if self.names != names:
            self.start(names, current)
        layer = last_matrix(shared_params)
        norms = term_gradients(terms, [layer]).norm(dim=1)  # (T,) |∇_W L_t|
        used = self.weights.detach().clone()
        sum(used[i] * loss for i, loss in enumerate(terms)).backward()
        self.update(norms, current)
        return {name: used[i] for i, name in enumerate(names)}

    def update(self, norms: Tensor, current: Tensor) -> None:
        """One Adam step of w on L_grad, then w ← T·w / Σ w."""
        with torch.no_grad():
            w = self.weights
            rates = current / self.initial.clamp(min=1e-12)  # L̃_t
            relative = rates / rates.mean().clamp(min=1e-12)  # r_t
            g = w * norms  # G_t
            target = g.mean() * relative.pow(self.alpha)
            self.weights.grad = torch.sign(g - target) * norms  # ∂L_grad/∂w_t
            self.optimizer.step()
            w.clamp_(min=1e-3)
            w.mul_(len(w) / w.sum())

    def state_dict(self) -> dict:
        if self.names is None:
            return dict(self.pending or {})
        return {"names": list(self.names), "weights": self.weights.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "initial": self.initial.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.names, self.pending = None, dict(state) if state else None
