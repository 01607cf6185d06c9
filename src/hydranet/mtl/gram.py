"""The step every Gram-matrix aggregator shares (upgrad, aligned_mtl, imtl, gradvac, fairgrad): task gradients J
(T, P), coefficients c solved on the CPU from G = J Jᵀ (T, T), the shared gradient cᵀ J.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import combine_and_backward, independent_backward, term_gradients


def gram_backward(losses: dict[str, Tensor], shared_params: list[nn.Parameter],
                  solve: Callable[[np.ndarray], np.ndarray], heads_weighted: bool = False) -> dict[str, float]:
    """Shared `.grad` = Σ_t c_t g_t with c = solve(G) (G in float64); returns c by term name.

    Task-specific parameters get their own gradient (weight 1), or the gradient of Σ c_t L_t when
    `heads_weighted` (methods whose code backpropagates the weighted losses). Copying G to the CPU is the one
    sync with the device per step. With nothing shared, the plain sum (every method's answer).
    """
    if not shared_params:
        return independent_backward(losses)
    names = list(losses)
    grads = term_gradients(list(losses.values()), shared_params)  # (T, P)
    coeffs = np.asarray(solve((grads @ grads.T).double().cpu().numpy()), dtype=np.float64)  # (T,)
    weights = {name: float(c) for name, c in zip(names, coeffs)}
    combine_and_backward(losses, shared_params, grads, torch.from_numpy(coeffs),
                         weights if heads_weighted else dict.fromkeys(names, 1.0))
    return weights
