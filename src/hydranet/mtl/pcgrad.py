"""PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, 2020, "Gradient Surgery for
Multi-Task Learning", NeurIPS): project away the part of a task gradient that conflicts with another.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientMethod, GradientOptions, combine, independent_backward
from hydranet.randomness import Purpose, stream
from hydranet.registry import register


def pcgrad_coefficients(gram: Tensor, orders: list[list[int]]) -> Tensor:
    """(T,) c with Σ_i g_i^PC = Σ_t c_t g_t, from the Gram matrix G·Gᵀ alone.

    g_i^PC starts as g_i and, for each j in orders[i], loses its component along g_j when the two conflict
    (g_i^PC·g_j < 0): g_i^PC −= (g_i^PC·g_j)/|g_j|²·g_j. Every projected vector stays a combination
    Σ_k C[i, k] g_k of the original gradients, so only (T, T) numbers move, never (P,) vectors. The T
    sequences are independent, so step k of all of them runs at once: T − 1 rounds of (T, T) ops, not T².
    """
    t = len(gram)
    rows = torch.eye(t, dtype=gram.dtype, device=gram.device)  # row i: g_i^PC in the g basis
    if t < 2:
        return rows.sum(0)
    order = torch.tensor(orders, device=gram.device)  # (T, T − 1): the task row i projects off at step k
    norms = gram.diagonal().clamp(min=torch.finfo(gram.dtype).tiny)  # (T,) |g_j|²
    index = torch.arange(t, device=gram.device)
    for k in range(order.shape[1]):
        j = order[:, k]  # (T,)
        conflict = (rows * gram[j]).sum(1).clamp(max=0)  # g_i^PC · g_j(i) when negative, else 0 (no branch, no sync)
        rows = rows.index_put((index, j), rows[index, j] - conflict / norms[j])
    return rows.sum(0)


@register("balancer", "pcgrad", options=GradientOptions)
class PCGrad(GradientMethod):
    """Shared parameters get Σ_i g_i^PC (the paper's sum); task-specific ones their own gradient (weight 1).

    Order: each task visits the other tasks in a fresh random order every step (as the paper's code
    shuffles), drawn from a CPU generator seeded from `seed` and checkpointed for exact resume. All
    arithmetic stays on the device, so a step never syncs. Returned weights: each term's coefficient in
    the shared gradient. Cost: one (batched) backward through the trunk per term; with `gradients:
    representation` the projections act on the gradients on the shared features and the trunk is traversed once.
    """

    def __init__(self, options: GradientOptions, tasks: dict, seed: int):
        self.generator = stream(seed, Purpose.PCGRAD)
        self.level = options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, Tensor]:
        if not shared_params:
            return independent_backward(losses)
        names = list(losses)
        grads = self.task_gradients(losses, shared_params)  # (T, P), or (T, B·D) on the features
        orders = [[j for j in torch.randperm(len(names), generator=self.generator).tolist() if j != i]
                  for i in range(len(names))]
        coeffs = pcgrad_coefficients(grads.matrix @ grads.matrix.T, orders)  # (T,)
        combine(losses, shared_params, grads, coeffs, {name: 1.0 for name in names})
        return {name: coeffs[i].detach() for i, name in enumerate(names)}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].clone())
