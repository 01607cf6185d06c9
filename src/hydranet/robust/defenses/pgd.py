"""`adversarial.method: pgd`: PGD training with random start (Madry et al. 2018), the reference defence.

`steps` steps of 2.5·eps/steps per training batch (or `step_size`), so each costs `steps` extra gradients.
"""

from __future__ import annotations

from pydantic import Field

from hydranet.config import AdversarialConfig, Options
from hydranet.registry import register
from hydranet.robust.defenses.base import STEP_SIZE, AttackTraining
from hydranet.robust.space import PixelSpace
from hydranet.tasks import Task


class PGDOptions(Options):
    """Options of `adversarial.method: {name: pgd, …}`."""

    steps: int = Field(7, ge=1, description="attack steps per training batch")
    step_size: float | None = Field(None, gt=0, description=STEP_SIZE)


@register("perturbation", "pgd", options=PGDOptions)
class PGDTraining(AttackTraining):
    """PGD with random start, `steps` steps of 2.5·eps/steps: enough steps to reach the ball's boundary from
    anywhere inside it, with room to move along it (Madry et al. 2018)."""

    default_ratio = None  # set per instance from steps

    def __init__(self, options: PGDOptions, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace):
        self.steps, self.default_ratio = options.steps, 2.5 / options.steps
        super().__init__(options, cfg, tasks, space)
