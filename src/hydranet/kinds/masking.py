"""Missing labels and example weights in losses: zero the unlabeled terms, average over the labeled ones,
weighted by each example's weight when the batch carries weights.

Shared by every kind: all of them reduce a term per target element (or per example) with `masked_mean`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_terms(terms: Tensor, labeled: Tensor) -> Tensor:
    """`terms` with the unlabeled ones set to 0 (same shape).

    The terms must already be finite everywhere (missing targets filled before the loss), because a NaN in
    a masked-out term still poisons the gradient through torch.where.
    """
    return torch.where(labeled, terms, torch.zeros_like(terms))


def label_mass(labeled: Tensor, weight: Tensor | None = None) -> Tensor:
    """The denominator of every kind's mean loss: the number of labeled elements, each counting its example's
    weight (B,) when the batch carries weights (a multilabel example's or a map's weight counts once per labeled
    cell or pixel)."""
    if weight is None:
        return labeled.sum()
    weight = weight.reshape(-1, *[1] * (labeled.ndim - 1))
    weight = weight if weight.is_floating_point() else weight.float()
    return torch.where(labeled, weight, torch.zeros_like(weight)).sum()


def masked_mean(terms: Tensor, labeled: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of the labeled terms, Σ w·ℓ / Σ w over them with example weights `weight` (B,) (a multilabel example's
    weight counts for each of its labeled cells); 0, still in the graph, when none is labeled or all their weights
    are 0. With every weight 1 it is bit for bit the unweighted mean (w·ℓ = ℓ and Σ w = the count, exactly), and
    its gradient that of the unweighted loss.

    No `.item()` and no branch on values: it runs every step and must not sync with the device.
    """
    if weight is None:
        return masked_terms(terms, labeled).sum() / labeled.sum().clamp(min=1)
    weight = weight.reshape(-1, *[1] * (terms.ndim - 1)).to(terms.dtype)
    total = label_mass(labeled, weight)
    return (masked_terms(terms, labeled) * weight).sum() / torch.where(total > 0, total, torch.ones_like(total))
