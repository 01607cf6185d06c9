"""The step every Gram-matrix method shares (pcgrad, mgda, cagrad, upgrad, aligned_mtl, imtl, gradvac, fairgrad): task
gradients J (T, N), coefficients c solved on the CPU from G = J Jᵀ (T, T), the shared gradient cᵀ J.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientMethod, combine, independent_backward


def cpu_gram(matrix: Tensor) -> np.ndarray:
    """(T, T) G = J Jᵀ in float64 on the CPU, where the small solvers run: copying it is the step's one sync."""
    return (matrix @ matrix.T).double().cpu().numpy()


class GramMethod(GradientMethod):
    """A gradient method whose coefficients depend on the task gradients only through their Gram matrix.

    That is what lets every such method take `gradients: representation` here, in one place: the rows are the
    gradients on the shared features z instead of the shared parameters, G their inner products, and the trunk
    gets one backward of z with the combined cotangent (`gradients.combine`).
    """

    def gram_backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter],
                      solve: Callable[[np.ndarray], np.ndarray], heads_weighted: bool = False) -> dict[str, float]:
        """Shared `.grad` = Σ_t c_t g_t with c = solve(G) (G in float64); returns c by term name.

        Task-specific parameters get their own gradient (weight 1), or the gradient of Σ c_t L_t when
        `heads_weighted` (methods whose code backpropagates the weighted losses). With nothing shared, the plain
        sum (every method's answer).
        """
        if not shared_params:
            return independent_backward(losses)
        names = list(losses)
        grads = self.task_gradients(losses, shared_params)  # (T, P), or (T, B·D) on the features
        coeffs = np.asarray(solve(cpu_gram(grads.matrix)), dtype=np.float64)  # (T,)
        weights = {name: float(c) for name, c in zip(names, coeffs)}
        combine(losses, shared_params, grads, torch.from_numpy(coeffs),
                weights if heads_weighted else dict.fromkeys(names, 1.0))
        return weights
