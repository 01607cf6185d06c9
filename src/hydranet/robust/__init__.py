"""Adversarial robustness: attacks in raw pixel space (FGSM, PGD, APGD-CE), their evaluation on a run
directory (`attack_run`, `sweep_run` with gradient-masking checks), and adversarial training (`adversarial:`).
"""

from hydranet.robust.apgd import apgd
from hydranet.robust.attacks import Objective, PixelSpace, fgsm, pgd
from hydranet.robust.evaluate import ATTACKS, attack_run, parse_eps
from hydranet.robust.sweep import sweep_run

__all__ = ["ATTACKS", "Objective", "PixelSpace", "apgd", "attack_run", "fgsm", "parse_eps", "pgd", "sweep_run"]
