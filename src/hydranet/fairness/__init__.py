"""Fairness: group labels from sensitive columns (groups.py), the audit of a run per task and group (audit.py,
`hydranet audit`) and bias mitigations registered as kind `mitigation`: reweigh.py (training) and threshold.py
(post-processing, `hydranet threshold`)."""

from hydranet.fairness.reweigh import Reweigh, reweigh
from hydranet.fairness.threshold import Threshold, fit_thresholds

__all__ = ["Reweigh", "Threshold", "fit_thresholds", "reweigh"]
