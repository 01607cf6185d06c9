"""Objectives of a study: parsing `--objectives`, reading val metrics from a summary, measuring latency."""

import time

import pytest

from hydranet.config import load_config
from hydranet.errors import UserError
from hydranet.tune.objectives import (
    Objective,
    latency_ms,
    parse_objectives,
    summary_value,
)

QUICKSTART = load_config("quickstart")


def test_default_objective_is_the_early_stopping_monitor_else_val_loss():
    assert parse_objectives(None, QUICKSTART) == [Objective("val/digit/accuracy", True)]
    plain = load_config("quickstart", ["train.early_stopping.monitor=null"])
    assert parse_objectives("", plain) == [Objective("val/loss", False)]


def test_directions_follow_the_metric_unless_given():
    goals = parse_objectives("val/digit/accuracy,val/ink/mae,params,latency,val/parity/loss:max", QUICKSTART)
    assert [(g.name, g.direction) for g in goals] == [
        ("val/digit/accuracy", "maximize"), ("val/ink/mae", "minimize"), ("params", "minimize"),
        ("latency", "minimize"), ("val/parity/loss", "maximize")]
    assert [g.per_epoch for g in goals] == [True, True, False, False, True]


@pytest.mark.parametrize("text, expected", [
    ("val/nope/accuracy", "--objectives: 'val/nope/accuracy' must be val/loss or val/<task>/<metric>"),
    ("val/ink/accuracy", "--objectives: a regression task has no metric 'accuracy' (metrics: loss, mae, rmse, r2)"),
    ("params:smallest", "must end in :min or :max"),
    ("params:min,params:max", "names one objective twice"),
])
def test_bad_objectives_are_refused(text, expected):
    with pytest.raises(UserError) as err:
        parse_objectives(text, QUICKSTART)
    assert expected in str(err.value)


def test_summary_value_sums_task_losses_for_val_loss():
    summary = {"val": {"a": {"loss": 0.25, "accuracy": 0.9}, "b": {"loss": 0.5, "mae": 1.0}}}
    assert summary_value(summary, "val/loss") == 0.75
    assert summary_value(summary, "val/a/accuracy") == 0.9
    assert summary_value({"val": {}}, "val/a/accuracy") is None


def test_latency_is_the_median_of_one_call_after_warm_up():
    calls = []

    def predict():
        calls.append(1)
        time.sleep(0.3 if len(calls) == 1 else 0.004)  # a slow first call (warm-up) must not count

    ms = latency_ms(predict, repeats=9, warmup=2)
    assert len(calls) == 11
    assert 4.0 <= ms < 40.0
