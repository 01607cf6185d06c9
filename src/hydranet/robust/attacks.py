"""Temporary: the old module path of the attack code, kept only so that robust/training.py, trades.py and guard.py
(restructured on the `loop` branch) still import; delete once they import from space, attack_loss and pgd.
"""

from hydranet.robust.attack_loss import AttackLoss as Objective
from hydranet.robust.pgd import pgd
from hydranet.robust.space import PixelSpace, frozen

__all__ = ["Objective", "PixelSpace", "frozen", "pgd"]
