"""The min-norm point of the convex hull of T vectors from their Gram matrix (MGDA's subproblem): Frank-Wolfe
as in Sener & Koltun's released code, plus away steps; numpy on the CPU in float64, since T is small.
"""

from __future__ import annotations

import numpy as np

MAX_ITER = 250  # as in the released code
TOL = 1e-10  # stop when the Frank-Wolfe duality gap is below this fraction of the squared norm


def min_norm_pair(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """argmin over γ ∈ [0, 1] of |γ·v1 + (1−γ)·v2|² from the three inner products; returns (γ, squared norm).

    γ = clip((v2−v1)·v2 / |v1−v2|², 0, 1); equal vectors (zero denominator) give γ = 1.
    """
    denom = v11 + v22 - 2 * v12
    gamma = 1.0 if denom <= 1e-12 * max(v11, v22, 1e-30) else min(1.0, max(0.0, (v22 - v12) / denom))
    cost = gamma * gamma * v11 + 2 * gamma * (1 - gamma) * v12 + (1 - gamma) ** 2 * v22
    return gamma, cost


def best_pair(gram: np.ndarray) -> np.ndarray:
    """Weights (T,) of the min-norm point over every pair of vectors (the Frank-Wolfe start)."""
    t = len(gram)
    best, weights = np.inf, np.zeros(t)
    for i in range(t):
        for j in range(i + 1, t):
            gamma, cost = min_norm_pair(gram[i, i], gram[i, j], gram[j, j])
            if cost < best:
                best, weights = cost, np.zeros(t)
                weights[i], weights[j] = gamma, 1 - gamma
    return weights


def frank_wolfe_direction(alpha: np.ndarray, g_alpha: np.ndarray, norm2: float) -> tuple[np.ndarray, float, float]:
    """(direction, largest step, duality gap): toward the best vertex, or away from the worst used one.

    Plain Frank-Wolfe (the released code) only moves toward vertices and zig-zags when three or more
    gradients share the optimum: 2.7% above the minimum after 250 iterations on random 8-task problems.
    Away steps (Lacoste-Julien & Jaggi, 2015) make the convergence linear.
    """
    toward = int(np.argmin(g_alpha))
    used = np.flatnonzero(alpha > 0)
    away = int(used[np.argmax(g_alpha[used])])
    gap = norm2 - g_alpha[toward]
    if gap >= g_alpha[away] - norm2 or alpha[away] >= 1:
        direction = -alpha.copy()
        direction[toward] += 1
        return direction, 1.0, gap
    direction = alpha.copy()
    direction[away] -= 1
    return direction, alpha[away] / (1 - alpha[away]), gap


def min_norm_weights(gram: np.ndarray, max_iter: int = MAX_ITER, tol: float = TOL) -> np.ndarray:
    """α (T,) on the simplex minimizing |Σ α_t v_t|², with gram[i, j] = v_i·v_j.

    Starts from the best pair (closed form, exact for T = 2), then Frank-Wolfe steps with exact line
    search until the duality gap is below `tol` of the squared norm.
    """
    gram = np.asarray(gram, dtype=np.float64)
    if len(gram) == 1:
        return np.ones(1)
    alpha = best_pair(gram)
    if len(gram) == 2:
        return alpha
    for _ in range(max_iter):
        g_alpha = gram @ alpha  # (T,) inner products of each vector with the current point
        norm2 = float(alpha @ g_alpha)
        direction, largest, gap = frank_wolfe_direction(alpha, g_alpha, norm2)
        if gap <= tol * max(norm2, 1e-300):
            break
        curvature = float(direction @ gram @ direction)
        step = largest if curvature <= 0 else min(largest, -float(g_alpha @ direction) / curvature)  # exact line search
        alpha = np.clip(alpha + step * direction, 0.0, None)
        alpha /= alpha.sum()
    return alpha
