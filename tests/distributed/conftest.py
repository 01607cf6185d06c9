"""The two-rank tests' table and ONE spawn of two gloo ranks for every two-rank check of the default suite (a spawn
costs seconds: each process imports torch and hydranet); each test file compares what the ranks wrote with its
one-process references."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.multiprocessing as mp

from hydranet.files import write_text

from tests.distributed import dist_workers, draw_workers


@pytest.fixture(scope="session")
def table(tmp_path_factory) -> Path:
    return dist_workers.write_table(tmp_path_factory.mktemp("dist") / "table.csv")


@pytest.fixture(scope="session")
def two_rank_runs(table, tmp_path_factory) -> Path:
    """The folder the ranks wrote. A rank that aborts (gloo ends the process on a collective mismatch: ranks that
    disagree on when a time budget ends, the last run) fails the test that reads its output, with the error, while
    the others read what came before."""
    folder = tmp_path_factory.mktemp("ranks")
    try:
        dist_workers.spawn(draw_workers.two_rank_checks, str(table), str(folder))
    except mp.ProcessExitedException as err:
        write_text(folder / "spawn-error.txt", str(err))
    return folder
