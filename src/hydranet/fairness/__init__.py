"""Fairness: group labels from sensitive columns (groups.py), the audit of a run per task and group (audit.py,
`hydranet audit`) and bias mitigations registered as kind `mitigation`: reweigh.py (example weights),
adversarial.py (an adversary per task during training, added to the run by training.py) and threshold.py
(post-processing, `hydranet threshold`)."""

from typing import Any

from hydranet import registry
from hydranet.fairness import training  # noqa: F401  (registers the run part of in-training mitigations)
from hydranet.fairness.adversarial import Adversarial, AdversarialDebiasing, adversarial_update
from hydranet.fairness.reweigh import Reweigh, reweigh
from hydranet.fairness.threshold import Threshold, fit_thresholds
from hydranet.train.run import Run

__all__ = ["Adversarial", "AdversarialDebiasing", "Reweigh", "Threshold", "adversarial_update", "after_training",
           "fit_thresholds", "reweigh"]


def after_training(run: Run) -> Any:
    """The configured mitigation's optional post-training step (`after_training(run)`; threshold: fit the thresholds
    on val), run by `hydranet train` and `Experiment.fit` once the model is trained; None when it has none."""
    mitigation = run.config.fairness.mitigation
    if mitigation.name == "none":
        return None
    step = getattr(registry.get("mitigation", mitigation.name, "fairness.mitigation")(mitigation.options),
                   "after_training", None)
    return step(run) if step is not None else None
