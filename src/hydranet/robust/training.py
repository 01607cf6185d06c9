"""Adversarial training as trainer perturbations: FGSM with random start and PGD, with an eps warm-up.

Each replaces a training batch's inputs by adversarial ones crafted with `robust.attacks.pgd` in eval mode.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet import registry
from hydranet.config import ADVERSARIAL_KINDS, AdversarialConfig, Options
from hydranet.errors import UserError
from hydranet.randomness import Purpose, stream
from hydranet.registry import register
from hydranet.robust.attacks import Objective, PixelSpace, pgd
from hydranet.tasks import Task


def warmup_eps(eps: float, epoch: int, warmup_epochs: int) -> float:
    """eps·(epoch+1)/warmup during the first `warmup_epochs` epochs (0-based), then eps.

    Starting small lets the model learn features before facing the full budget; FGSM training in
    particular overfits catastrophically less often with it (Wong et al. 2020, §5; Rice et al. 2020).
    """
    if warmup_epochs <= 0:
        return eps
    return eps * min(1.0, (epoch + 1) / warmup_epochs)


def attacked(tasks: dict[str, Task], names: list[str]) -> dict[str, Task]:
    """The tasks whose losses the attack maximizes (`adversarial.tasks`; empty: all)."""
    return {n: tasks[n] for n in names} if names else dict(tasks)


def epoch_generator(trainer, device: torch.device) -> torch.Generator:
    """Random starts that depend only on (seed, epoch), so a resumed run replays the same attacks."""
    return stream(trainer.cfg.seed, Purpose.ATTACK_START, trainer.epoch, device=device)


STEP_SIZE = "raw-pixel step of the attack (null: 2.5·eps/steps, Madry et al. 2018)"


class FGSMOptions(Options):
    """Options of `adversarial.method: {name: fgsm_rs, …}`."""

    step_size: float | None = Field(None, gt=0, description="raw-pixel step of the attack (null: 1.25·eps, Wong et al. 2020)")


class PGDOptions(Options):
    """Options of `adversarial.method: {name: pgd, …}`."""

    steps: int = Field(7, ge=1, description="attack steps per training batch")
    step_size: float | None = Field(None, gt=0, description=STEP_SIZE)


class AttackTraining:
    """Train on PGD-crafted inputs: Madry et al.'s min-max, `min_θ E[max_{‖δ‖≤eps} L(f(x+δ), y)]`.

    The ball is `adversarial.norm`'s: L∞, or L2 (random start uniform in the L2 ball, steps along g/‖g‖₂,
    projection onto the L2 ball); both keep x+δ in [0, 1], all by `robust.attacks`, shared with evaluation.

    The inner max runs in eval mode (`attacks.frozen`) with gradients taken with respect to δ only, so
    parameters, their `.grad` and BatchNorm statistics are left as they were. The trainer's `loss_fn` is
    not needed: `Objective` gives the same task losses per example and honours `adversarial.tasks`.
    """

    steps: int = 1
    default_ratio: float = 1.0  # step size as a multiple of eps when `step_size` is null

    def __init__(self, options: FGSMOptions | PGDOptions, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace):
        self.cfg, self.tasks, self.space = cfg, attacked(tasks, cfg.tasks), space
        self.ratio = options.step_size / cfg.eps if options.step_size and cfg.eps else self.default_ratio
        self.eps = warmup_eps(cfg.eps, 0, cfg.warmup_epochs)
        self.generator: torch.Generator | None = None

    def on_epoch_start(self, trainer) -> None:
        self.eps = warmup_eps(self.cfg.eps, trainer.epoch, self.cfg.warmup_epochs)
        self.generator = epoch_generator(trainer, trainer.device)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor], loss_fn=None) -> dict[str, Tensor]:
        objective = Objective(self.tasks, {n: batch[n] for n in self.tasks})
        x_adv = pgd(model, batch["x"], objective, self.space, self.eps, norm=self.cfg.norm, steps=self.steps,
                    step_size=self.ratio * self.eps, generator=self.generator)
        return {**batch, "x": x_adv}


@register("perturbation", "fgsm_rs", options=FGSMOptions)
class FGSMRandomStart(AttackTraining):
    """FGSM from a uniform random start, step 1.25·eps (Wong et al. 2020, "Fast is better than free").

    One gradient per batch makes it about as cheap as standard training; the random start is what keeps
    plain FGSM training (Goodfellow et al. 2015) from collapsing — mostly: watch the guard's record.
    """

    steps, default_ratio = 1, 1.25


@register("perturbation", "pgd", options=PGDOptions)
class PGDTraining(AttackTraining):
    """PGD with random start, `steps` steps of 2.5·eps/steps (Madry et al. 2018): the reference defence."""

    default_ratio = None  # set per instance from steps

    def __init__(self, options: PGDOptions, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace):
        self.steps, self.default_ratio = options.steps, 2.5 / options.steps
        super().__init__(options, cfg, tasks, space)


def check_data(cfg, info: dict, val_examples: int | None) -> None:
    """What `adversarial:` needs of the data: images, and val examples for the guard (None: not known yet).

    `fit` calls it once the data has loaded and before the run directory exists, so a refused config leaves
    nothing behind. It cannot be a config check: a source may bring its own val split even with data.split.val 0.
    """
    adv = cfg.adversarial
    if adv.method.name == "none":
        return
    if info.get("kind") != "image":
        raise UserError(f"adversarial.method: {adv.method.name} needs an image run (this run is a table)")
    if adv.guard_every and val_examples == 0:
        raise UserError("adversarial.guard_every: the guard needs val examples (set data.split.val > 0, or guard_every 0)")


def build_adversarial(cfg, tasks: dict[str, Task], info: dict, device: torch.device | str = "cpu") -> tuple[list, list]:
    """(perturbations, extra losses) of `cfg.adversarial`, looked up in the registry by method name."""
    method = cfg.adversarial.method
    if method.name == "none":
        return [], []
    check_data(cfg, info, val_examples=None)
    space = PixelSpace.from_info(info, device)
    kind, make = registry.find(method.name, ADVERSARIAL_KINDS)  # the config's validation checked the name
    component = make(method.options, cfg.adversarial, tasks, space)
    return ([component], []) if kind == "perturbation" else ([], [component])
