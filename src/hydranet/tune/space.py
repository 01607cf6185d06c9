"""The search space of `hydranet tune`: sampling a trial's values from Optuna and turning them into the trial's
complete config (the `search:` section itself is checked by config/search.py when the config loads).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from hydranet.config import SearchParam, apply_override, plain_experiment, validate
from hydranet.errors import UserError

# Optuna stores only these as categorical choices; other choices (lists, mappings) travel as JSON text.
PRIMITIVE = (type(None), bool, int, float, str)


# --- sampling -------------------------------------------------------------------------------


def encoded_choices(param: SearchParam) -> list[Any]:
    """Choices as Optuna stores them: as they are when all are plain values, else each as JSON text."""
    if all(isinstance(c, PRIMITIVE) for c in param.choices):
        return list(param.choices)
    return [json.dumps(c) for c in param.choices]


def decode_choice(param: SearchParam, value: Any) -> Any:
    plain = all(isinstance(c, PRIMITIVE) for c in param.choices)
    return value if plain else json.loads(value)


def suggest(trial: Any, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per searched key; returns {dotted key: config value}."""
    values = {}
    for key, p in space.items():
        if p.type == "float":
            values[key] = trial.suggest_float(key, float(p.low), float(p.high), log=p.log, step=p.step)
        elif p.type == "int":
            values[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            values[key] = decode_choice(p, trial.suggest_categorical(key, encoded_choices(p)))
    return values


def trial_config(base: dict[str, Any], values: dict[str, Any]) -> Config:
    """The complete experiment of one trial: the plain experiment with the sampled values set."""
    data = copy.deepcopy(base)
    for key, value in values.items():
        apply_override(data, key.split("."), value)
    return validate(data)


def grid(space: dict[str, SearchParam]) -> dict[str, list[Any]]:
    """The grid sampler's values per key; a continuous float has no grid, so it needs a step."""
    out: dict[str, list[Any]] = {}
    for key, p in space.items():
        if p.type == "categorical":
            out[key] = encoded_choices(p)
        elif p.type == "int":
            out[key] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        elif p.step is None:
            raise UserError(f"--sampler grid: search.{key} is a continuous float range; give it a step or make it categorical")
        else:
            count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
            out[key] = [round(p.low + i * p.step, 12) for i in range(count)]
    return out
