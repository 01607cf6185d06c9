"""What every adversarial-training method shares: the eps warm-up, the attacked tasks, per-epoch random starts,
and `AttackTraining`, a perturbation that trains on PGD inputs (fgsm_rs.py and pgd.py are two settings of it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hydranet.config import AdversarialConfig, Options
from hydranet.randomness import Purpose, stream
from hydranet.robust.attack_loss import AttackLoss
from hydranet.robust.pgd import pgd
from hydranet.robust.space import PixelSpace
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
    return stream(trainer.seed, Purpose.ATTACK_START, trainer.epoch, device=device)


STEP_SIZE = "raw-pixel step of the attack (null: 2.5·eps/steps, Madry et al. 2018)"


class AttackTraining:
    """Train on PGD-crafted inputs: Madry et al.'s min-max, `min_θ E[max_{‖δ‖≤eps} L(f(x+δ), y)]`.

    The ball is `adversarial.norm`'s: L∞, or L2 (random start uniform in the L2 ball, steps along g/‖g‖₂,
    projection onto the L2 ball); both keep x+δ in [0, 1], all by `robust.pgd` and `robust.space`, shared with evaluation.

    The inner max runs in eval mode (`attacks.frozen`) with gradients taken with respect to δ only, so
    parameters, their `.grad` and BatchNorm statistics are left as they were. The trainer's `loss_fn` is
    not needed: `AttackLoss` gives the same task losses per example and honours `adversarial.tasks`.
    """

    steps: int = 1
    default_ratio: float = 1.0  # step size as a multiple of eps when `step_size` is null

    def __init__(self, options: Options, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace):
        """`options`: the method's own (fgsm_rs.py, pgd.py), each with a `step_size`."""
        self.cfg, self.tasks, self.space = cfg, attacked(tasks, cfg.tasks), space
        self.ratio = options.step_size / cfg.eps if options.step_size and cfg.eps else self.default_ratio
        self.eps = warmup_eps(cfg.eps, 0, cfg.warmup_epochs)
        self.generator: torch.Generator | None = None

    def on_epoch_start(self, trainer) -> None:
        self.eps = warmup_eps(self.cfg.eps, trainer.epoch, self.cfg.warmup_epochs)
        self.generator = epoch_generator(trainer, trainer.device)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor], loss_fn=None) -> dict[str, Tensor]:
        attack_loss = AttackLoss(self.tasks, {n: batch[n] for n in self.tasks})
        x_adv = pgd(model, batch["x"], attack_loss, self.space, self.eps, norm=self.cfg.norm, steps=self.steps,
                    step_size=self.ratio * self.eps, generator=self.generator)
        return {**batch, "x": x_adv}
