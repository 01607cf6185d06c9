"""Fixtures of the export tests: the four-task table run, trained and exported (to RUN/export) once per session."""

from pathlib import Path

import pytest
from tests.export.exportruns import train_table

import hydranet as hn


@pytest.fixture(scope="session")
def table_run(tmp_path_factory) -> Path:
    """Read by every export test that needs an exported run; a test may export it again (the same run)."""
    run_dir = train_table(tmp_path_factory.mktemp("table"))
    hn.load(run_dir).export()
    return run_dir
