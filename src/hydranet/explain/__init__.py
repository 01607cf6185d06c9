"""Attributions (Captum) of one task's head: which input features or pixels a prediction rests on.

`explain_batch` explains model inputs in Python (`Model.explain`); `explain_run` is `hydranet explain`.
"""

from hydranet.explain.core import Settings, default_task, explain_batch, explained_array
from hydranet.explain.methods import METHODS, method
from hydranet.explain.run import explain_run

__all__ = ["METHODS", "Settings", "default_task", "explain_batch", "explain_run", "explained_array", "method"]
