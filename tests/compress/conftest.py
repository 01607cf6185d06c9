"""Fixtures of the compression tests: one narrowed quickstart run (three tasks of three kinds on 8×8 digits),
trained once per session; tests prune it into their own folders and never change its weights."""

from pathlib import Path

import pytest

import hydranet as hn


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    overrides = {"data.limit": 400, "train.epochs": 3, "train.progress": False, "train.threads": 1,
                 "model.trunk.channels": [8, 16], "model.trunk.dense": [32]}
    return hn.Experiment("quickstart", overrides).fit(tmp_path_factory.mktemp("digits") / "run").dir
