"""The `search:` section: checked against the real config fields, sampled through Optuna, turned into trial configs."""

import optuna
import pytest

from hydranet.config import load_config
from hydranet.errors import UserError
from hydranet.tune.space import grid, plain_experiment, suggest, trial_config

SPACE = {
    "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "train.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
    "model.trunk.channels": {"type": "categorical", "choices": [[8, 16], [32, 64]]},
    "mtl.balancer": {"type": "categorical", "choices": ["equal", "dwa"]},
    "tasks.digit.weight": {"type": "float", "low": 0.5, "high": 2.0},
}


def with_search(space):
    return {"name": "quickstart", "tasks": {"digit": {}, "parity": {"kind": "binary"}}, "search": space}


def test_a_valid_space_loads_and_keeps_every_kind():
    cfg = load_config(with_search(SPACE))
    assert cfg.search["model.trunk.channels"].choices == [[8, 16], [32, 64]]
    assert cfg.search["train.optimizer.lr"].log and cfg.search["train.batch_size"].step == 16


def test_set_takes_a_dotted_search_key_as_one_key():
    cfg = load_config("quickstart", ["search.train.optimizer.lr={type: float, low: 0.001, high: 0.01}"])
    assert list(cfg.search) == ["train.optimizer.lr"] and cfg.search["train.optimizer.lr"].high == 0.01


@pytest.mark.parametrize("key, param, expected", [
    ("train.optimizer.lrr", {"type": "float", "low": 0.1, "high": 1},
     "search.train.optimizer.lrr: 'train.optimizer.lrr' is not a config field (known here: name, lr,"),
    ("tasks.ink.weight", {"type": "float", "low": 0.1, "high": 1}, "'tasks.ink' is not a config field (known here: digit, parity)"),
    ("train.optimizer", {"type": "categorical", "choices": ["adam"]}, "train.optimizer is a section; search one of its fields"),
    ("search.x", {"type": "categorical", "choices": [1]}, "cannot search itself"),
    ("mtl.balancer", {"type": "categorical", "choices": ["equal", "magic"]},
     "search.mtl.balancer: choice 'magic' is refused (mtl.balancer: unknown balancer 'magic'"),
    ("train.optimizer.lr", {"type": "float", "low": 0, "high": 1},
     "search.train.optimizer.lr: low 0.0 is refused (train.optimizer.lr: Input should be greater than 0"),
    ("model.trunk.dropout", {"type": "float", "low": 0, "high": 1}, "search.model.trunk.dropout: high 1.0 is refused"),
    ("train.epochs", {"type": "float", "low": 1, "high": 5}, "type float does not fit train.epochs, which holds int values (use type: int)"),
    ("train.optimizer.name", {"type": "int", "low": 1, "high": 2}, "(use type: categorical)"),
    ("train.epochs", {"type": "int", "low": 3}, "search.train.epochs: int needs both low and high"),
    ("train.epochs", {"type": "int", "low": 1.5, "high": 3}, "int needs whole numbers"),
    ("train.optimizer.lr", {"type": "float", "low": 0.1, "high": 0.01}, "low 0.1 is above high 0.01"),
    ("model.trunk.dropout", {"type": "float", "low": 0, "high": 0.5, "log": True}, "log scale needs low > 0"),
    ("mtl.balancer", {"type": "categorical", "choices": []}, "categorical needs a non-empty `choices` list"),
    ("mtl.balancer", {"type": "categorical", "choices": ["dwa"], "low": 1}, "categorical takes only `choices`"),
    ("train.epochs", {"type": "int", "low": 1, "high": 3, "choices": [1]}, "int takes low and high, not choices"),
    ("train.epochs", {"type": "integer", "low": 1, "high": 3}, "search.train.epochs.type: Input should be 'float', 'int' or 'categorical'"),
])
def test_bad_spaces_name_the_key(key, param, expected):
    with pytest.raises(UserError) as err:
        load_config(with_search({key: param}))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_choices_of_any_yaml_value_round_trip_through_optuna():
    """Lists are no Optuna categorical values: they travel as JSON text and come back as lists."""
    cfg = load_config(with_search(SPACE))
    trial = optuna.trial.FixedTrial({"train.optimizer.lr": 0.01, "train.batch_size": 48, "model.trunk.channels": "[32, 64]",
                                     "mtl.balancer": "dwa", "tasks.digit.weight": 1.5})
    values = suggest(trial, cfg.search)
    assert values["model.trunk.channels"] == [32, 64] and values["mtl.balancer"] == "dwa"
    trial_cfg = trial_config(plain_experiment(cfg), values)
    assert trial_cfg.model.trunk.channels == [32, 64] and trial_cfg.train.batch_size == 48
    assert trial_cfg.tasks["digit"].weight == 1.5 and trial_cfg.train.optimizer.lr == 0.01
    assert trial_cfg.search == {}  # a trial is a plain experiment


def test_grid_lists_every_value_and_refuses_a_continuous_float():
    cfg = load_config(with_search({
        "train.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
        "model.trunk.dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
        "model.trunk.channels": {"type": "categorical", "choices": [[8], [16]]},
    }))
    assert grid(cfg.search) == {"train.batch_size": [16, 32, 48, 64], "model.trunk.dropout": [0.0, 0.1, 0.2, 0.3],
                                "model.trunk.channels": ["[8]", "[16]"]}
    continuous = load_config(with_search({"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1}}))
    with pytest.raises(UserError, match="--sampler grid: search.train.optimizer.lr is a continuous float range"):
        grid(continuous.search)
