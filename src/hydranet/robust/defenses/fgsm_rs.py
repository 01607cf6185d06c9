"""`adversarial.method: fgsm_rs`: FGSM from a uniform random start (Wong et al. 2020, "Fast is better than free").

One gradient per batch makes it about as cheap as standard training; watch the guard's record for a collapse.
"""

from __future__ import annotations

from pydantic import Field

from hydranet.config import Options
from hydranet.registry import register
from hydranet.robust.defenses.base import AttackTraining


class FGSMOptions(Options):
    """Options of `adversarial.method: {name: fgsm_rs, …}`."""

    step_size: float | None = Field(None, gt=0, description="raw-pixel step of the attack (null: 1.25·eps, Wong et al. 2020)")


@register("perturbation", "fgsm_rs", options=FGSMOptions)
class FGSMRandomStart(AttackTraining):
    """FGSM from a uniform random start, step 1.25·eps: one PGD step.

    The random start is what keeps plain FGSM training (Goodfellow et al. 2015) from collapsing — mostly:
    it can still overfit catastrophically within an epoch, which is what the guard watches for.
    """

    steps, default_ratio = 1, 1.25
