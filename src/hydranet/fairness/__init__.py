"""Fairness: group labels from sensitive columns (groups.py), the audit of a run per task and group (audit.py,
`hydranet audit`) and bias mitigations registered as kind `mitigation`: reweigh.py (example weights) and
adversarial.py (an adversary per task during training, added to the run by training.py)."""

from hydranet.fairness import training  # noqa: F401  (registers the run part of in-training mitigations)
from hydranet.fairness.adversarial import Adversarial, AdversarialDebiasing, adversarial_update
from hydranet.fairness.reweigh import Reweigh, reweigh

__all__ = ["Adversarial", "AdversarialDebiasing", "Reweigh", "adversarial_update", "reweigh"]
