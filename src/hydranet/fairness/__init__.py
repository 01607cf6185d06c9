"""Fairness: group labels from sensitive columns (groups.py), the audit of a run per task and group (audit.py,
`hydranet audit`) and bias mitigations registered as kind `mitigation` (reweigh.py)."""

from hydranet.fairness.reweigh import Reweigh, reweigh

__all__ = ["Reweigh", "reweigh"]
