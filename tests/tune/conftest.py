"""A tiny searchable experiment on the tiny_csv table: a trial trains in a fraction of a second."""

import pytest
import yaml

from tests.conftest import tiny_table_config

SEARCH = {
    "train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
    "model.trunk.hidden": {"type": "categorical", "choices": [[4], [16, 8]]},
}


@pytest.fixture
def tiny_search(tiny_csv):
    """The tiny two-task table experiment (binary `kind`, regression `size`) with a two-key search space."""
    return {**tiny_table_config(tiny_csv, epochs=2, threads=1), "search": SEARCH}


@pytest.fixture
def tiny_search_yaml(tiny_search, tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(tiny_search))
    return path
