"""Minimizing F(w) = b·w + √φ·|g_w| over the simplex {w ≥ 0, Σ w = 1}, with g_w = Σ_t w_t g_t known only through the
Gram matrix G of the g_t: CAGrad's dual (b = G·1/T) and MGDA's min-norm point (b = 0, where F's minimizer is that of
|g_w|²). T is small, so numpy on the CPU in float64.

A primal active-set method (Lawson & Hanson's scheme for non-negative least squares): F is minimized on the whole
simplex first, indices leaving one at a time where their weight would turn negative (`best_on_face`, one small
linear solve per step); then, while an index's KKT multiplier is negative, the most negative one enters (an exact
line search toward its vertex) and F is minimized again on the face in use. Exact up to a ridge of 1e-10·trace(G)/T
in the face solves, which keeps every face's system solvable when gradients are dependent (more tasks than
dimensions, or repeated tasks), and up to the round-off of a float32 Gram matrix, which `positive_definite` lifts
when it made G indefinite (by −λ_min, which can be 10–1000 times the ridge). Every step lowers F, so at the step
cap the point is still feasible and better than the start.
"""

from __future__ import annotations

import math

import numpy as np

RIDGE = 1e-10  # added to G's diagonal, times its mean diagonal: every face's system solvable with dependent gradients
TOL = 1e-9  # stop when no KKT multiplier is below −TOL·max|∇F|


def simplex_minimizer(gram: np.ndarray, b: np.ndarray, sqrt_phi: float) -> np.ndarray:
    """w on the simplex minimizing b·w + √φ·|g_w|, for a positive semi-definite G and √φ > 0; uniform when every
    g_t is 0 (a zero trace: every w gives g_w = 0)."""
    t = len(gram)
    if np.trace(gram) <= 0:
        return np.full(t, 1.0 / t)
    if t == 2:
        return segment_minimizer(gram, b, sqrt_phi)
    gram = positive_definite(gram)  # |g_w| > 0, and every face's system solvable
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


def segment_minimizer(gram: np.ndarray, b: np.ndarray, sqrt_phi: float) -> np.ndarray:
    """T = 2 in Python floats: F along w = (1 − s, s) is convex in s, so its minimum is at s = 0 when F rises from
    there, else `segment_step`'s closed form (for MGDA, b = 0: the paper's γ = clip((v2−v1)·v2/|v1−v2|², 0, 1)).
    No numpy arithmetic: a numpy call right after a backward costs 35–85 µs on the project's CPU, 4–8 times what
    it costs repeated (`benchmarks/mtl_solvers.py`), and the general path's dozen of them cost a tenth of a
    two-task step on a small model. A determinant that round-off made negative is raised to zero, then the
    ridge of `positive_definite` makes it positive (opposite gradients otherwise gave √ of a negative h)."""
    g11, g12, g22 = float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1])
    bound = math.sqrt(max(g11 * g22, 0.0))
    g12 = max(-bound, min(g12, bound))  # |g12| ≤ √(g11·g22): positive semi-definite, before the ridge makes it definite
    ridge = RIDGE * (g11 + g22) / 2
    g11, g22 = g11 + ridge, g22 + ridge
    a, bb, cc = g11 + g22 - 2 * g12, 2 * (g12 - g11), g11  # |g_w|² = a·s² + bb·s + cc
    r = -(float(b[1]) - float(b[0])) / sqrt_phi
    s = 0.0 if bb / (2 * math.sqrt(cc)) >= r else segment_step(a, bb, cc, r)  # F's slope at s = 0 is √φ·(that − r)
    return np.array([1.0 - s, s])


def positive_definite(gram: np.ndarray) -> np.ndarray:
    """G + ridge·I, ridge = 1e-10·trace(G)/T, plus −λ_min(G) when G is indefinite: a Gram matrix of float32 gradients
    is, when the gradients are dependent (as many tasks as features, or repeated tasks), only positive semi-definite
    up to its round-off (eigenvalues of −1e-9 on a trace of 0.07 were seen), and a face solve on an indefinite G
    would give weights of ±10⁸. The Cholesky factorization tests definiteness; the eigenvalues are computed only
    when it fails."""
    ridged = gram + RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    try:
        np.linalg.cholesky(ridged)
        return ridged
    except np.linalg.LinAlgError:
        return ridged - min(np.linalg.eigvalsh(gram)[0], 0.0) * np.eye(len(gram))


def line_step(gram: np.ndarray, b: np.ndarray, sqrt_phi: float, w: np.ndarray, d: np.ndarray) -> float:
    """argmin over s ∈ [0, 1] of F(w + s·d), for a descent direction d (`segment_step` on its coefficients)."""
    return segment_step(d @ gram @ d, 2 * (w @ gram @ d), w @ gram @ w, -(b @ d) / sqrt_phi)


def segment_step(a: float, bb: float, cc: float, r: float) -> float:
    """argmin over s ∈ [0, 1] of √h(s) − r·s, h = a s² + bb s + cc > 0, in closed form, when it falls at s = 0
    (F(w + s d) = const + √φ·(√h(s) − r·s) with r = −(b·d)/√φ and h = |g_w + s·g_d|²).

    Its slope is zero where (2as + bb)/(2√h) = r, which with (2as + bb)² = 4a·h − (4a·cc − bb²) gives
    h = (4a·cc − bb²)/(4(a − r²)).
    """
    if (2 * a + bb) / (2 * math.sqrt(a + bb + cc)) <= r:  # still falling at s = 1
        return 1.0
    if a <= r * r:  # then the slope of √h, within (−√a, √a), never reaches r: F falls all the way when r > 0, else
        return 1.0 if r > 0 else 0.0  # rises from the start (only by round-off here, where F was seen to fall at 0)
    h = (4 * a * cc - bb * bb) / (4 * (a - r * r))
    return min(1.0, max(0.0, (2 * r * math.sqrt(max(h, 0.0)) - bb) / (2 * a)))


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
