"""Adversarial robustness: attacks in raw pixel space (FGSM, PGD, APGD-CE), their evaluation on a run
directory (`attack_run`, `sweep_run` with gradient-masking checks), and adversarial training (`adversarial:`).
"""

from hydranet.robust.apgd import apgd
from hydranet.robust.attack_loss import AttackLoss
from hydranet.robust.attack_run import ATTACKS, attack_run, parse_eps
from hydranet.robust.fgsm import fgsm
from hydranet.robust.pgd import pgd
from hydranet.robust.space import PixelSpace
from hydranet.robust.sweep import sweep_run

__all__ = ["ATTACKS", "AttackLoss", "PixelSpace", "apgd", "attack_run", "fgsm", "parse_eps", "pgd", "sweep_run"]
