"""Fixtures of the server tests: the export tests' tiny runs (a four-task table, one task of each kind, and an
image run on digits), trained once per session, and in-process apps on them (no sockets)."""


from pathlib import Path

import pytest

from tests.export.exportruns import table_frame, train_digits, train_table

__all__ = ["table_frame"]


@pytest.fixture(scope="session")
def table_run(tmp_path_factory) -> Path:
    return train_table(tmp_path_factory.mktemp("serve-table"))


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    return train_digits(tmp_path_factory.mktemp("serve-digits"))
