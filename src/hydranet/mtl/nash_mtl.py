"""Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, 2022, "Multi-Task Learning as a
Bargaining Game", ICML): the update is the Nash bargaining solution Σ α_t g_t with Gᵀ G α = 1/α.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientMethod, GradientOptions, combine, independent_backward
from hydranet.mtl.gram import cpu_gram
from hydranet.registry import register


def nash_alpha(gram: np.ndarray, start: np.ndarray | None = None, tol: float = 1e-12,
               max_iter: int = 100) -> np.ndarray:
    """α > 0 with α_t·(K α)_t = 1 for every t (K = gram), by damped Newton on f(α) = ½αᵀKα − Σ log α_t.

    ∇f = Kα − 1/α vanishes exactly at the bargaining solution, and f is convex and self-concordant, so
    Newton steps damped by 1/(1 + λ) (λ: the Newton decrement) stay positive and converge from any start
    (Boyd & Vandenberghe §9.6). It replaces the paper's sequence of cvxpy problems, which is not available.
    A row of zeros (a term with no gradient on the shared parameters) has no solution: it gets α = 0.
    """
    gram = np.asarray(gram, dtype=np.float64)
    alpha = np.zeros(len(gram))
    live = np.diag(gram) > 1e-12 * max(np.diag(gram).max(), 1e-300)
    k = gram[np.ix_(live, live)] + 1e-12 * np.trace(gram) * np.eye(live.sum())  # tiny ridge: near-singular K
    if len(k) == 2 and (pair := nash_pair(k)) is not None:
        alpha[live] = pair
        return alpha
    a = start[live] if start is not None and np.all(start[live] > 0) else 1.0 / np.sqrt(np.diag(k))
    for _ in range(max_iter):
        grad = k @ a - 1.0 / a
        hess = k + np.diag(1.0 / a**2)
        step = np.linalg.solve(hess, -grad)
        decrement = float(np.sqrt(max(-grad @ step, 0.0)))  # λ
        if decrement**2 / 2 < tol:
            break
        a = a + step / (1.0 + decrement) if decrement > 0.25 else a + step
    alpha[live] = a
    return alpha


def nash_pair(k: np.ndarray) -> np.ndarray | None:
    """Two tasks in closed form: subtracting the two equations α_t·(Kα)_t = 1 leaves K₁₁α₁² = K₂₂α₂², so
    α₂ = α₁·√(K₁₁/K₂₂) and α_t² = √K_ss / (√K_tt·(√(K₁₁K₂₂) + K₁₂)) (s the other task). None when round-off
    leaves √(K₁₁K₂₂) + K₁₂ ≤ 0 (two opposite gradients: no bargaining solution; Newton's iterations decide)."""
    r1, r2 = np.sqrt(k[0, 0]), np.sqrt(k[1, 1])
    d = r1 * r2 + k[0, 1]
    if not d > 0:
        return None
    return np.array([np.sqrt(r2 / (r1 * d)), np.sqrt(r1 / (r2 * d))])


class NashMTLOptions(GradientOptions):
    """Options of `mtl.balancer: {name: nash_mtl, …}`."""

    update_every: int = Field(1, ge=1, description="re-solve the weights every this many steps, reuse them in between")
    max_norm: float = Field(1.0, ge=0, description="clip the shared gradient to this norm (0: off)")


@register("balancer", "nash_mtl", options=NashMTLOptions)
class NashMTL(GradientMethod):
    """Backward with weights α solving α_t·(Gᵀ G α)_t = 1 on the raw Gram matrix, as the paper does and as
    the authors' code does (it divides Gᵀ G by its Frobenius norm n for the solver and carries n into the
    constraints): then ‖Σ α_t g_t‖² = αᵀ Gᵀ G α = T, whatever the gradients' scale. Here the solve also runs
    on Gᵀ G / n, for conditioning, and α' is rescaled to α = α' / √n. Shared parameters get Σ α_t g_t,
    clipped to norm `max_norm` (0: off; at the parameter level by its norm √(αᵀ Gᵀ G α), taken from the Gram
    matrix), and task-specific ones the gradient of Σ α_t L_t. Every loss term counts as a task.

    `update_every` = k re-solves α every k steps only (the paper's speed-up); the other steps
    are one plain backward of Σ α_t L_t. The solve runs on the CPU, so solving steps sync with the
    device once; reused steps do not. The step counter and α are checkpointed (exact resume).
    """

    def __init__(self, options: NashMTLOptions, tasks: dict, seed: int):
        self.update_every = options.update_every
        self.max_norm = options.max_norm
        self.level = options.gradients
        self.step = 0
        self.alpha: np.ndarray | None = None

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        if not shared_params:
            return independent_backward(losses)
        names = list(losses)
        stale = self.alpha is None or len(self.alpha) != len(names)
        if stale or self.step % self.update_every == 0:
            grads = self.task_gradients(losses, shared_params)  # (T, P), or (T, B·D) on the features
            gram = cpu_gram(grads.matrix)  # (T, T); the sync of a solving step
            norm = np.linalg.norm(gram)
            scale = np.sqrt(norm) if norm > 0 else 1.0  # α' of Gᵀ G / n is √n·α of Gᵀ G
            start = None if stale else self.alpha * scale
            self.alpha = nash_alpha(gram / (norm if norm > 0 else 1.0), start) / scale
            weights = {name: float(a) for name, a in zip(names, self.alpha)}
            # on z, or with gradients already in `.grad` (clipped together with them), the norm needs a pass
            clip_later = grads.features is not None or any(p.grad is not None for p in shared_params)
            clip = 1.0 if clip_later else self.clip_factor(gram)
            combine(losses, shared_params, grads, torch.from_numpy(self.alpha * clip), weights)
        else:
            weights = {name: float(a) for name, a in zip(names, self.alpha)}
            sum(weights[name] * loss for name, loss in losses.items()).backward()
            clip_later = True
        if self.max_norm > 0 and clip_later:
            nn.utils.clip_grad_norm_(shared_params, self.max_norm)
        self.step += 1
        return weights

    def clip_factor(self, gram: np.ndarray) -> float:
        """`clip_grad_norm_`'s factor for the shared gradient Σ α_t g_t, whose norm √(αᵀ G α) the Gram matrix
        already gives: no pass over the shared gradients (on z the norm of the trunk's gradient is unknown)."""
        if self.max_norm <= 0:
            return 1.0
        norm = float(np.sqrt(max(self.alpha @ gram @ self.alpha, 0.0)))  # √T at a solve with no dead term
        return min(1.0, self.max_norm / (norm + 1e-6))

    def state_dict(self) -> dict:
        alpha = torch.zeros(0) if self.alpha is None else torch.from_numpy(self.alpha.copy())
        return {"step": self.step, "alpha": alpha}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.alpha = state["alpha"].double().numpy() if len(state["alpha"]) else None
