"""`model.ensemble: k`: k members in one model, BatchEnsemble-style (Wen, Tran & Ba 2020) as TabM uses it
(Gorishniy, Kotelnikov & Babenko, ICLR 2025): every Linear layer's weights are shared, each member adds rank-1
adapters and its own bias. The batch is repeated once per member; the members' predictions are averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EnsembleLinear(nn.Module):
    """A shared Linear, member i computing ((x ⊙ r_i) Wᵀ) ⊙ s_i + b_i.

    Rows arrive member-major, (k·B, …, in): the first B rows are member 0's (HydraNet repeats the batch so). With
    every r_i and s_i 1 and every b_i the shared bias, each member is the plain Linear.
    """

    def __init__(self, linear: nn.Linear, members: int, random_signs: bool):
        super().__init__()
        self.weight = linear.weight  # shared by all members
        r = torch.ones(members, linear.in_features)
        if random_signs:  # TabM-mini: members differ from the start by ±1 on the first layer's inputs
            r = torch.randint(0, 2, r.shape).float() * 2 - 1
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(members, linear.out_features))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().repeat(members, 1))

    def forward(self, x: Tensor) -> Tensor:
        members = len(self.r)
        rows = x.reshape(members, -1, x.shape[-1]) * self.r[:, None]  # (k, B·…, in)
        y = F.linear(rows, self.weight) * self.s[:, None]  # (k, B·…, out)
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.reshape(*x.shape[:-1], y.shape[-1])


def make_ensemble(model: nn.Module, members: int) -> nn.Module:
    """Turn every Linear layer of `model` (trunk and heads, in order) into an EnsembleLinear of `members` members,
    the first with random ±1 input adapters, and set `model.members` (HydraNet repeats and averages by it)."""
    if members == 1:
        return model
    linears = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    for i, (parent, name, child) in enumerate(linears):
        setattr(parent, name, EnsembleLinear(child, members, random_signs=i == 0))
    model.members = members
    return model
