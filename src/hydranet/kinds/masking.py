"""Missing labels in element-wise losses: zero the unlabeled terms, average over the labeled ones.

Shared by the kinds whose loss is a term per target element (binary, multilabel, regression).
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


def masked_mean(terms: Tensor, labeled: Tensor) -> Tensor:
    """Mean of the labeled terms; 0, still in the graph, when none is labeled.

    No `.item()` and no branch on values: it runs every step and must not sync with the device.
    """
    return masked_terms(terms, labeled).sum() / labeled.sum().clamp(min=1)
