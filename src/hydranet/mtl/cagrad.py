"""CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, 2021, "Conflict-Averse Gradient
Descent for Multi-task Learning", NeurIPS): the update that most improves the worst task near the mean gradient.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions
from hydranet.mtl.gram import GramMethod
from hydranet.registry import register


RIDGE = 1e-10  # added to G's diagonal, times its mean diagonal: every face's system solvable with dependent gradients
TOL = 1e-9  # stop when no KKT multiplier is below −TOL·max|∇F|


def dual_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """w ∈ simplex minimizing F(w) = g_w·g0 + √φ·|g_w| with g_w = Σ w_t g_t, g0 the mean gradient, √φ = c·|g0|.

    The dual of max_d min_t g_t·d s.t. |d − g0| ≤ c|g0|, written with the Gram matrix only. Solved (exactly, up to a
    ridge of 1e-10·trace(G)/T in the face solves) by a primal active-set method (Lawson & Hanson's scheme for non-negative least squares): F is minimized on the
    whole simplex first, indices leaving one at a time where their weight would turn negative (`best_on_face`,
    one small linear solve per step; real task gradients keep most of them: 2 solves for 16 MLP heads); then,
    while an index's KKT multiplier is negative, the most negative one enters (an exact line search toward its
    vertex) and F is minimized again on the face in use. It replaces the authors' SLSQP, whose per-call
    overhead in scipy (1.5–5 ms) was most of what CAGrad cost above the other gradient methods, and which
    stopped far from the optimum when the task gradients' norms differ by 10³ or more. Every step lowers F, so
    at the step cap the point is still feasible and better than the start.
    """
    t = len(gram)
    if np.trace(gram) <= 0:  # no gradient at all: every w gives d = 0
        return np.full(t, 1.0 / t)
    b = gram.mean(axis=1)  # (T,) g_t·g0
    sqrt_phi = c * np.sqrt(max(gram.mean(), 0.0)) + 1e-8
    gram = gram + RIDGE * np.trace(gram) / t * np.eye(t)  # positive definite: |g_w| > 0
    w = best_on_face(gram, b, sqrt_phi, np.full(t, 1.0 / t))  # from the whole simplex down
    for _ in range(4 * t + 10):  # each index enters and leaves a few times at most
        gradient = b + sqrt_phi * (gram @ w) / np.sqrt(w @ gram @ w)  # ∇F
        slack = np.where(w > 0, 0.0, gradient - gradient[w > 0].mean())  # the multipliers of w ≥ 0
        if slack.min() >= -TOL * np.abs(gradient).max():
            break
        toward = -w
        toward[slack.argmin()] += 1.0  # e_j − w: a descent direction, since its slope is slack_j < 0
        w = w + line_step(gram, b, sqrt_phi, w, toward) * toward
        w = best_on_face(gram, b, sqrt_phi, w)
    return w


def line_step(gram: np.ndarray, b: np.ndarray, sqrt_phi: float, w: np.ndarray, d: np.ndarray) -> float:
    """argmin over s ∈ [0, 1] of F(w + s·d), for a descent direction d, in closed form.

    F(w + s d) = const + (b·d)·s + √φ·√h(s) with h = A s² + B s + C > 0; its slope is zero where
    (2As + B)/(2√h) = r := −(b·d)/√φ, which with (2As + B)² = 4A·h − (4AC − B²) gives h = (4AC − B²)/(4(A − r²)).
    """
    a, bb, cc = d @ gram @ d, 2 * (w @ gram @ d), w @ gram @ w
    r = -(b @ d) / sqrt_phi
    if (2 * a + bb) / (2 * np.sqrt(a + bb + cc)) <= r:  # still falling at s = 1
        return 1.0
    if a <= r * r:  # only by round-off: a slope that rises by s = 1 crosses r below √A
        return 0.0
    h = (4 * a * cc - bb * bb) / (4 * (a - r * r))
    return float(np.clip((2 * r * np.sqrt(h) - bb) / (2 * a), 0.0, 1.0))


def best_on_face(gram: np.ndarray, b: np.ndarray, sqrt_phi: float, w: np.ndarray) -> np.ndarray:
    """The minimizer of F on the face of the simplex where w > 0, from w.

    Moves toward the minimizer on the face's affine hull (or, when there is none, along the direction in which F
    falls); when a weight would turn negative it stops there, drops that index and repeats on the smaller face.
    F is convex, so every such move lowers it; a single index is its own minimizer, so the loop ends.
    """
    while True:
        face = w > 0
        current = w[face]
        target, bounded = face_minimizer(gram[np.ix_(face, face)], b[face], sqrt_phi)
        if bounded and (target > 0).all():
            w = np.zeros_like(w)
            w[face] = target
            return w
        direction = target - current if bounded else target
        blocking = np.flatnonzero(direction < 0)
        if not len(blocking):  # only by round-off (a direction on the face sums to 0)
            return w
        ratios = current[blocking] / -direction[blocking]
        moved = np.clip(current + ratios.min() * direction, 0.0, None)
        moved[blocking[ratios.argmin()]] = 0.0
        w = np.zeros_like(w)
        w[face] = moved


def face_minimizer(gram: np.ndarray, b: np.ndarray, sqrt_phi: float) -> tuple[np.ndarray, bool]:
    """(w, True): the minimizer of F on {Σ w = 1} in these coordinates; (q, False): no minimizer, F falls along q.

    Stationarity b + k·G w = μ·1 with k = √φ/|g_w| and Σ w = 1 give w = p + q/k, p = G⁻¹1/α, q = (β/α)·G⁻¹1 −
    G⁻¹b (α = 1ᵀG⁻¹1, β = 1ᵀG⁻¹b); since pᵀGq = 0, |g_w|² = 1/α + qᵀGq/k², and k = √φ/|g_w| solves to
    k² = α(φ − qᵀGq). When φ ≤ qᵀGq, F's slope along q is |g_q|(√φ − |g_q|) ≤ 0 at infinity, so (F being convex)
    it falls along q from every point.
    """
    u, v = np.linalg.solve(gram, np.stack([np.ones(len(b)), b], axis=1)).T
    alpha, beta = u.sum(), v.sum()
    q = beta / alpha * u - v
    excess = sqrt_phi**2 - q @ gram @ q
    if excess <= 0:
        return q, False
    return u / alpha + q / np.sqrt(alpha * excess), True


def cagrad_coefficients(gram: np.ndarray, c: float) -> np.ndarray:
    """(T,) coefficients of the task gradients in d = (g0 + √φ/|g_w|·g_w) / (1 + c²).

    The 1/(1 + c²) rescale is the authors' default (`rescale=1`); with c = 0 this is exactly g0 = mean g_t.
    """
    t = len(gram)
    if c == 0:
        return np.full(t, 1.0 / t)
    w = dual_weights(gram, c)
    sqrt_phi = c * np.sqrt(max(gram.mean(), 0.0)) + 1e-8
    scale = sqrt_phi / (np.sqrt(max(w @ gram @ w, 0.0)) + 1e-8)  # λ = √φ / |g_w|
    return (1.0 / t + scale * w) / (1 + c * c)


class CAGradOptions(GradientOptions):
    """Options of `mtl.balancer: {name: cagrad, …}`."""

    c: float = Field(0.4, ge=0, description="radius c of the ball around the mean gradient (0: the mean gradient)")
    scale: Literal["sum", "mean"] = Field("sum", description="sum: the shared update is T·d, the summed losses' scale, as the authors' code does (c = 0 then equals the equal balancer) | mean: d itself, the mean gradient's scale (1/T of it)")


@register("balancer", "cagrad", options=CAGradOptions)
class CAGrad(GramMethod):
    """Shared parameters get T·d (`scale: sum`, the default: the authors' code multiplies d by T "to match
    the sum loss", so c = 0 gives the `equal` balancer's gradient) or d (`scale: mean`, the mean gradient's
    scale, 1/T of it); task-specific parameters get their own gradient (weight 1), as in the authors' and
    LibMTL's code.

    `c` is the radius of the ball around g0 (c = 0: the plain mean, or sum, of the gradients). Every loss term
    counts as a task. The small dual problem runs on the CPU, so each step syncs with the device once.
    Returned weights: each term's coefficient in the shared gradient.
    """

    def __init__(self, options: CAGradOptions, tasks: dict, seed: int):
        self.c, self.sum_scale, self.level = options.c, options.scale == "sum", options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        factor = len(losses) if self.sum_scale else 1
        return self.gram_backward(losses, shared_params, lambda gram: factor * cagrad_coefficients(gram, self.c))
