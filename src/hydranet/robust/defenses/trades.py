"""`adversarial.method: trades`, an extra loss β·KL(f(x) ‖ f(x_adv)) per task, x_adv from PGD on that KL
(Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy").

The KL compares the clean and adversarial predictive distributions, so it is defined for the kinds whose head
predicts one: a softmax (classification), a Bernoulli (binary), independent Bernoullis (multilabel). A
regression head predicts a point, not a distribution, so TRADES refuses it.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import AdversarialConfig, Options
from hydranet.errors import UserError
from hydranet.kinds import KINDS
from hydranet.registry import register
from hydranet.robust.defenses.base import STEP_SIZE, epoch_generator, warmup_eps
from hydranet.robust.pgd import pgd
from hydranet.robust.space import PixelSpace, frozen
from hydranet.tasks import Task


def trades_tasks(kinds: dict[str, str], chosen: list[str]) -> list[str]:
    """The tasks TRADES regularizes: `adversarial.tasks` (all of them must have a KL), or every task that has one.

    A one-line UserError when a chosen task is a regression or when no task has a predictive distribution.
    """
    defined = [name for name, kind in KINDS.items() if kind.divergence is not None]  # kinds with a predictive distribution
    undefined = [n for n in chosen if kinds[n] not in defined]
    if undefined:
        raise UserError(f"adversarial.tasks: trades needs a predictive distribution, and {undefined[0]!r} is a "
                        f"{kinds[undefined[0]]} task (trades supports {', '.join(defined)})")
    names = [n for n in (chosen or kinds) if kinds[n] in defined]
    if not names:
        raise UserError(f"adversarial.method: trades needs a {', '.join(defined)} task (all tasks are regressions)")
    return names


class TRADESOptions(Options):
    """Options of `adversarial.method: {name: trades, …}`."""

    steps: int = Field(7, ge=1, description="attack steps per training batch")
    step_size: float | None = Field(None, gt=0, description=STEP_SIZE)
    beta: float = Field(6.0, ge=0, description="weight β of the KL(f(x) ‖ f(x_adv)) term (Zhang et al. 2019)")


@register("loss", "trades", options=TRADESOptions)
class TRADES:
    """The robust term of TRADES; the trainer's task losses are its natural (clean) term.

    The split keeps accuracy and robustness as two named terms the balancer can weigh. x_adv maximizes the
    summed KL over the tasks with `robust.pgd` (eval mode, gradients in δ only, so parameters,
    `.grad` and BatchNorm statistics stay as they were), from a uniform random start in the ball of
    `adversarial.norm` (the paper starts at x + 0.001·N(0, I); at δ = 0 the KL's gradient vanishes, so some
    start is needed).
    """

    @staticmethod
    def check_config(config) -> None:
        """Called when a config is validated, so an undefined KL is refused before anything runs."""
        trades_tasks({n: t.kind for n, t in config.tasks.items()}, config.adversarial.tasks)

    def __init__(self, options: TRADESOptions, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace):
        names = trades_tasks({n: t.kind for n, t in tasks.items()}, cfg.tasks)
        self.kl = {n: tasks[n].spec.divergence for n in names}  # per-example KL of each kind's distribution
        self.cfg, self.options, self.space = cfg, options, space
        self.ratio = options.step_size / cfg.eps if options.step_size and cfg.eps else 2.5 / options.steps
        self.eps = warmup_eps(cfg.eps, 0, cfg.warmup_epochs)
        self.generator: torch.Generator | None = None

    def on_epoch_start(self, trainer) -> None:
        self.eps = warmup_eps(self.cfg.eps, trainer.epoch, self.cfg.warmup_epochs)
        self.generator = epoch_generator(trainer, trainer.device)

    def divergence(self, clean: dict[str, Tensor], adv: dict[str, Tensor]) -> dict[str, Tensor]:
        """KL per example (B,) of each regularized task."""
        return {n: kl(clean[n], adv[n]) for n, kl in self.kl.items()}

    def adversarial(self, model: nn.Module, x: Tensor) -> Tensor:
        """PGD inputs maximizing Σ_tasks KL(f(x) ‖ f(x+δ)), the clean side fixed (eval mode, no grad)."""
        with frozen(model), torch.no_grad():
            clean = model(x)

        def objective(outputs: dict[str, Tensor]) -> Tensor:
            return sum(self.divergence(clean, outputs).values())

        return pgd(model, x, objective, self.space, self.eps, norm=self.cfg.norm, steps=self.options.steps,
                   step_size=self.ratio * self.eps, generator=self.generator)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x_adv = self.adversarial(model, batch["x"])
        clean, adv = model(batch["x"]), model(x_adv)  # train mode: gradients flow through both sides
        return {f"{n}@trades": self.options.beta * kl.mean() for n, kl in self.divergence(clean, adv).items()}
