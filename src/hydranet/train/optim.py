"""Optimizers and learning-rate schedules.

The schedule is a pure function of the global step (no scheduler object with hidden state), so a run
resumed from a checkpoint sets exactly the learning rates the uninterrupted run would have.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hydranet.config import OptimizerConfig, ScheduleConfig


def param_groups(model: nn.Module, weight_decay: float, trunk_lr_mult: float = 1.0) -> list[dict]:
    """Decay weights of linear/conv layers only (decaying biases and norm scales only hurts, standard
    practice); with `trunk_lr_mult` ≠ 1 the trunk's parameters get their own groups whose `lr_mult`
    scales the learning rate (discriminative learning rates, Howard & Ruder 2018).

    Frozen parameters are included: they get no gradient, so the optimizer skips them until unfrozen.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        decay = p.ndim >= 2 and weight_decay > 0  # weight_decay 0: one group, one fused update instead of two
        trunk = trunk_lr_mult != 1.0 and name.startswith("trunk.")
        groups.setdefault((decay, trunk), []).append(p)
    out = []
    for (decay, trunk), params in sorted(groups.items(), key=lambda item: (not item[0][0], item[0][1])):  # decayed first
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if trunk:
            group["lr_mult"] = trunk_lr_mult
        out.append(group)
    return out


def build_optimizer(cfg: OptimizerConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """AdamW (default), Adam, or SGD with Nesterov momentum over the given parameter groups.

    The fused implementations update every parameter in one kernel per group instead of about ten small
    ops per parameter tensor (PyTorch's CPU default), which pays most on small models.
    """
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, fused=True)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state, each moment tensor back in its parameter's memory layout.

    Checkpoints store contiguous tensors, but a channels_last model's Adam moments are channels_last. The
    fused optimizers walk the parameter and its moments as flat memory, so moments in another layout
    would silently pair the wrong elements (torch 2.13; a checkpoint resumed that way trains on wrong
    updates). Restoring the layout keeps the update, and a resumed run, exact.
    """
    optimizer.load_state_dict(state)
    for param, moments in optimizer.state.items():
        for key, value in moments.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                moments[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def lr_factor(cfg: ScheduleConfig, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at a global step (0-based) out of `total` steps."""
    warmup = int(cfg.warmup * total)
    if cfg.name == "onecycle" and warmup == 0:
        warmup = max(1, int(0.3 * total))  # one-cycle's usual 30% ramp when none is given
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.name == "cosine":
        return cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.min_lr + (1 - cfg.min_lr) * (1 - progress)  # onecycle: linear decay after the ramp


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr, honouring a per-group `lr_mult` (discriminative learning rates)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
