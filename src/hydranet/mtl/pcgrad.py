"""PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, 2020, "Gradient Surgery for
Multi-Task Learning", NeurIPS): project away the part of a task gradient that conflicts with another.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions, independent_backward
from hydranet.mtl.gram import GramMethod
from hydranet.randomness import Purpose, stream
from hydranet.registry import register


def pcgrad_coefficients(gram: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """(T,) c with Σ_i g_i^PC = Σ_t c_t g_t, from the Gram matrix G·Gᵀ alone (float64).

    g_i^PC starts as g_i and, for each j in orders[i], loses its component along g_j when the two conflict
    (g_i^PC·g_j < 0): g_i^PC −= (g_i^PC·g_j)/|g_j|²·g_j. Every projected vector stays a combination
    Σ_k C[i, k] g_k of the original gradients, so only (T, T) numbers move, never (P,) vectors. The T
    sequences are independent, so step k of all of them runs at once: T − 1 rounds of (T, T) ops, not T².
    """
    gram = np.asarray(gram, dtype=np.float64)
    t = len(gram)
    rows = np.eye(t)  # row i: g_i^PC in the g basis
    if t < 2:
        return rows.sum(0)
    order = np.asarray(orders)  # (T, T − 1): the task row i projects off at step k
    partners = gram[order]  # (T, T − 1, T): row i's partner g_j at step k, in the g basis
    norms = gram.diagonal()[order]  # |g_j|²
    # 1 / |g_j|², and 0 (no projection) for a gradient whose |g_j|² is 0 or below float32's normal range, where the
    # Gram matrix (multiplied in float32) has lost it while g_i·g_j may not be 0: the coefficient would be huge
    live = norms > np.finfo(np.float32).tiny
    inverse_norms = np.where(live, 1.0 / np.where(live, norms, 1.0), 0.0)
    index = np.arange(t)
    for k in range(t - 1):
        conflict = np.minimum(np.einsum("ij,ij->i", rows, partners[:, k]), 0.0)  # g_i^PC · g_j(i) when negative, else 0
        rows[index, order[:, k]] -= conflict * inverse_norms[:, k]
    return rows.sum(0)


@register("balancer", "pcgrad", options=GradientOptions)
class PCGrad(GramMethod):
    """Shared parameters get Σ_i g_i^PC (the paper's sum); task-specific ones their own gradient (weight 1).

    Order: each task visits the other tasks in a fresh random order every step (as the paper's code
    shuffles), drawn from a CPU generator seeded from `seed` and checkpointed for exact resume. The (T, T)
    projection rounds run on the CPU in float64 numpy, like every Gram method's solve: a torch op on (T, T)
    numbers pays its dispatch (on a device, a kernel launch) for almost no arithmetic, and the rounds cost
    2–3 times less this way on the CPU. So each step syncs with the device once. Returned weights: each term's
    coefficient in the shared gradient. Cost: one (batched) backward through the trunk per term; with `gradients:
    representation` the projections act on the gradients on the shared features and the trunk is traversed once.
    """

    def __init__(self, options: GradientOptions, tasks: dict, seed: int):
        self.generator = stream(seed, Purpose.PCGRAD)
        self.level = options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        if not shared_params:  # nothing to project; and no draw, so the order sequence stays as before
            return independent_backward(losses)
        t = len(losses)
        orders = [[j for j in torch.randperm(t, generator=self.generator).tolist() if j != i] for i in range(t)]
        return self.gram_backward(losses, shared_params, lambda gram: pcgrad_coefficients(gram, orders))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].clone())
