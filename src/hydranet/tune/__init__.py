"""Hyperparameter search on Optuna (`hydranet tune`): the search space, objectives, settings, storage, workers,
one trial, the report.

Attributes load on first use, so that importing `tune.space` (sampling, trial configs) does not pull in Optuna.
"""

from importlib import import_module

_LAZY = {"tune": "hydranet.tune.study", "TuneResult": "hydranet.tune.report"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hydranet.tune' has no attribute {name!r}")
