"""The component API: the hooks a trainer calls, what a component may use of the trainer (`TrainerView`),
and what a feature adds to a training run (`RunParts`). tests/test_surface.py holds every built-in to it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence

import torch
from torch import nn

# Optional hooks, called on balancer, perturbations, extra losses and callbacks alike, in that order, each as
# `hook(trainer, *args)`: on_fit_start(), on_epoch_start(), on_losses(losses) before the backward pass,
# on_step_end(losses) after the optimizer step, on_epoch_end(record), on_fit_end(). A component with
# `state_dict`/`load_state_dict` is checkpointed, one with `parameters()` is optimized, and the first one
# with an `eval_model` (the weight average) is what the trainer evaluates and saves.
HOOKS = ("on_fit_start", "on_epoch_start", "on_losses", "on_step_end", "on_epoch_end", "on_fit_end")


class TrainerView(Protocol):
    """The trainer as its components see it; anything else on the trainer may change without notice.

    Counters: `epoch` is the number of completed epochs, so during an epoch's hooks it is that epoch's
    0-based index (and in `on_epoch_end`, its record's "epoch" is `epoch`); `step` counts completed
    optimizer steps, `total_steps` the steps of the whole run (known from `on_fit_start`).
    Two attributes may be set: `should_stop` (stop after this epoch: early stopping, pruning) and `shared`
    (a component that freezes shared parameters narrows the list the balancer's gradients are taken on).
    """

    epoch: int
    step: int
    total_steps: int
    epochs: int  # planned epochs (`train.epochs`)
    seed: int  # the run's seed, for the component's own named random streams
    device: torch.device  # where the model, the batches and every tensor of the loop live
    precision: str  # the forward pass's precision as it runs: fp32 or bf16
    model: nn.Module  # the model being trained
    shared: list[nn.Parameter]  # the shared (trunk) parameters that still learn
    history: list[dict]  # the records of the completed epochs
    should_stop: bool

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation, early stopping and saving use (the average with `train.ema`)."""

    def state_dict(self) -> dict[str, Any]:
        """The whole training state, as the checkpoint keeps it."""


SURFACE = frozenset({"epoch", "step", "total_steps", "epochs", "seed", "device", "precision", "model", "shared",
                     "history", "should_stop", "eval_model", "state_dict"})
WRITABLE = frozenset({"should_stop", "shared"})


class RunParts(NamedTuple):
    """What a feature adds to a training run (adversarial training: its perturbation or extra loss, and its
    guard), made by the builder it registers as kind `run_parts`: `check(cfg, data)` before the run directory
    exists, `build(cfg, tasks, data, run_dir, device) -> RunParts` when the trainer is assembled.
    `balancer_wrappers`: each `wrap(balancer) -> balancer` returns a balancer that runs the chosen one and then
    changes the combined gradient (adversarial debiasing's projection), so any `mtl.balancer` composes with it."""

    perturbations: Sequence = ()
    extra_losses: Sequence = ()
    callbacks: Sequence = ()
    balancer_wrappers: Sequence = ()
