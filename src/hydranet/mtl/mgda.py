"""MGDA-UB (Sener & Koltun, 2018, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS): the
task weights are the min-norm point of the convex hull of the task gradients (a common descent direction).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.mtl.gradients import combine_and_backward, independent_backward, term_gradients
from hydranet.mtl.min_norm import min_norm_weights
from hydranet.registry import register


def feature_gradients(losses: list[Tensor], features) -> Tensor | None:
    """(T, B·D) gradients of each loss on the shared representation z, or None when the upper bound does
    not apply: soft sharing (a dict of features), no forward seen, or a term that does not reach z (a term
    computed by a later forward, e.g. an extra loss on other views, overwrites `model.features`)."""
    if not isinstance(features, Tensor) or not features.requires_grad:
        return None
    rows = []
    for loss in losses:
        if not loss.requires_grad:
            return None
        (grad,) = torch.autograd.grad(loss, features, retain_graph=True, allow_unused=True)
        if grad is None:
            return None
        rows.append(grad.reshape(-1).float())
    return torch.stack(rows)


@register("balancer", "mgda")
class MGDA:
    """α = argmin over the simplex of |Σ_t α_t ∇_z L_t|², then the backward of Σ_t α_t L_t (Σ α = 1, as in
    the paper).

    The upper bound (UB) takes gradients on the shared representation z = `trainer.model.features`
    (B, D) rather than the shared parameters: T backward passes through the heads only, then one normal
    backward. When z is not usable (see `feature_gradients`) it falls back to the gradients on the shared
    parameters (plain MGDA; T passes through the trunk, then a backward of the heads only). Every loss
    term counts as a task. The solver runs on the CPU, so each step syncs with the device once.
    """

    def __init__(self, options: Options, tasks: dict, seed: int):
        self.model = None  # set by on_fit_start; without it (a bare backward call) the shared parameters are used

    def on_fit_start(self, trainer) -> None:
        self.model = trainer.model

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        if not shared_params:
            return independent_backward(losses)
        names, terms = list(losses), list(losses.values())
        grads = feature_gradients(terms, getattr(self.model, "features", None))  # (T, B·D) or None
        on_features = grads is not None
        if not on_features:
            grads = term_gradients(terms, shared_params)  # (T, P)
        gram = (grads @ grads.T).double().cpu().numpy()  # (T, T); the one sync of the step
        alpha = min_norm_weights(gram)
        weights = {name: float(a) for name, a in zip(names, alpha)}
        if on_features:
            sum(weights[name] * loss for name, loss in losses.items()).backward()
        else:
            combine_and_backward(losses, shared_params, grads, torch.from_numpy(alpha), weights)
        return weights
