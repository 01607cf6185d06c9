"""`model.ensemble: k`: k members in one model, as TabM builds them (Gorishniy, Kotelnikov & Babenko, ICLR 2025) from
BatchEnsemble (Wen, Tran & Ba 2020): shared Linear weights with per-member rank-1 adapters, and an output layer of
each member's own. The batch is repeated once per member; each member is trained on its own loss (HydraNet keeps
their outputs for it), and their predictions are averaged for everything else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def member_rows(x: Tensor, members: int) -> Tensor:
    """(k·B, …, in) member-major rows → (k, B·…, in): member i's rows are the i-th block of B."""
    return x.reshape(members, -1, x.shape[-1])


class EnsembleLinear(nn.Module):
    """A shared Linear, member i computing ((x ⊙ r_i) Wᵀ) ⊙ s_i + b_i (`scales_out`), or (x ⊙ r_i) Wᵀ + b (TabM-mini's
    input adapter: r only, the bias shared).

    Rows arrive member-major, (k·B, …, in): the first B rows are member 0's (HydraNet repeats the batch so). `r`
    starts as random ±1 signs on the first layer (members differ from the first step, as TabM starts them), else
    at 1; s at 1 and every b_i at the shared bias, so a member with r_i = 1 is the plain Linear.
    """

    def __init__(self, linear: nn.Linear, members: int, random_signs: bool, scales_out: bool = True):
        super().__init__()
        self.weight = linear.weight  # shared by all members
        r = torch.ones(members, linear.in_features)
        if random_signs:  # drawn from torch's global generator, seeded for model init (Purpose.INIT)
            r = torch.randint(0, 2, r.shape).float() * 2 - 1
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(members, linear.out_features)) if scales_out else None
        bias = None if linear.bias is None else linear.bias.detach()
        if bias is not None and scales_out:
            bias = bias.repeat(members, 1)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(member_rows(x, len(self.r)) * self.r[:, None], self.weight)  # (k, B·…, out)
        if self.s is not None:
            y = y * self.s[:, None]
        if self.bias is not None:
            y = y + (self.bias[:, None] if self.bias.dim() == 2 else self.bias)
        return y.reshape(*x.shape[:-1], y.shape[-1])


class MemberLinear(nn.Module):
    """k independent Linear layers, member i computing x W_iᵀ + b_i: TabM's output layer (`NLinear`), each member's
    own head. Each W_i and b_i is drawn as nn.Linear draws its own, U(±1/√in), so the heads start different."""

    def __init__(self, linear: nn.Linear, members: int):
        super().__init__()
        bound = 1 / math.sqrt(linear.in_features)
        shape = (members, linear.out_features, linear.in_features)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.bias = None if linear.bias is None else nn.Parameter(
            torch.empty(members, linear.out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        y = member_rows(x, len(self.weight)) @ self.weight.transpose(1, 2)  # (k, B·…, out)
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _linears(module: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """Every Linear under `module` as (parent, attribute, layer), in module order."""
    return [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear)]


def make_ensemble(model: nn.Module, members: int, style: str = "tabm") -> nn.Module:
    """Turn `model` into `members` members and set `model.members` (HydraNet repeats, keeps and averages by it).

    Each head's last Linear becomes every member's own (MemberLinear). `tabm`: every other Linear (trunk and head
    hidden layers) an EnsembleLinear, the first with random ±1 input adapters; `mini`: only the trunk's first Linear
    gets them (r alone), every other layer stays shared."""
    if members == 1:
        return model
    for head in model.heads.values():
        for parent, name, layer in _linears(head)[-1:]:  # a dense task's convolutional head has none
            setattr(parent, name, MemberLinear(layer, members))
    shared = _linears(model)  # the output layers are members' own by now
    for i, (parent, name, layer) in enumerate(shared if style == "tabm" else shared[:1]):
        setattr(parent, name, EnsembleLinear(layer, members, random_signs=i == 0, scales_out=style == "tabm"))
    model.members = members
    return model
