"""Exponential moving average (EMA) of a model's weights, the model that evaluation and saving use.

Averaging the weights of the last few hundred steps smooths out the noise of the final SGD iterates, a
free accuracy gain in short runs (Polyak & Juditsky, 1992; used by the CIFAR-10 speed runs). The average
is a separate copy of the model, so training never sees it; as a trainer component it offers `eval_model`,
so the trainer evaluates, early-stops on and finally saves the averaged weights. Every floating-point tensor
of the state dict is averaged (weights and BatchNorm running statistics); integer buffers (BatchNorm's step
counter) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from hydranet.config import EMAConfig


def ema_decay(cfg: EMAConfig, updates: int) -> float:
    """Decay of update number `updates` (0-based): `decay ** every`, since one update covers `every` steps.

    With `warmup`, it is at most (1 + n) / (10 + n), as TensorFlow's ExponentialMovingAverage does with
    `num_updates`: the first updates weigh the fresh weights heavily, so early evaluations are not
    dominated by the random initialization.
    """
    decay = cfg.decay ** cfg.every
    if cfg.warmup:
        decay = min(decay, (1 + updates) / (10 + updates))
    return decay


class WeightEMA:
    """Trainer component: `module` holds avg ← d·avg + (1 − d)·w after every `cfg.every`-th optimizer step.

    Put it before the callbacks that restore a best checkpoint at the end (early stopping, the robustness
    guard): its `on_fit_end` loads the average into the model first, so theirs win when they restore.
    """

    def __init__(self, model: nn.Module, cfg: EMAConfig):
        self.cfg = cfg
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Called after optimizer step number `step` (1-based); averages on every `every`-th step."""
        if step % self.cfg.every:
            return
        mine, theirs = self.module.state_dict(), model.state_dict()  # same architecture: same keys
        floats = [k for k, v in mine.items() if v.is_floating_point()]
        weight = 1.0 - ema_decay(self.cfg, self.updates)
        torch._foreach_lerp_([mine[k] for k in floats], [theirs[k] for k in floats], weight)  # avg += (1 − d)(w − avg)
        for key in mine.keys() - set(floats):
            mine[key].copy_(theirs[key])
        self.updates += 1

    @property
    def eval_model(self) -> nn.Module:
        """What the trainer evaluates, early-stops on and saves: the average."""
        return self.module

    def on_step_end(self, trainer, losses: dict) -> None:
        self.update(trainer.model, trainer.step)

    def on_fit_end(self, trainer) -> None:
        trainer.model.load_state_dict(self.module.state_dict())  # the run ends with (and saves) the average

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


def make_ema(model: nn.Module, cfg: EMAConfig) -> list[WeightEMA]:
    """The run's weight average as a one-element list, or none when `train.ema.decay` is null."""
    return [WeightEMA(model, cfg)] if cfg.decay else []


def upgrade_state(state: dict) -> dict:
    """A trainer state as this version keeps it: checkpoints written before the weight average became a trainer
    component hold its state at the top level ("ema"); it now sits with the components' states, under its name."""
    if "ema" not in state:
        return state
    state = dict(state)
    state["components"] = {**state["components"], WeightEMA.__name__: state.pop("ema")}
    return state
