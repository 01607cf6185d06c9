"""Random draws of the global batch (issue 20): two gloo ranks meta-train on their shares of each meta-batch, and
pretrain (SimCLR on images and tables, denoising) on their shares of each batch's views and corruptions, as one
process on the whole batch.

The two-rank runs come from the one spawn of the default suite (conftest.py); the one-process references run
here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hydranet
from hydranet.errors import UserError
from hydranet.files import read_tensors
from hydranet.meta import loop
from hydranet.meta.setup import build
from hydranet.rundir import RunInterrupted

from tests.distributed import draw_workers as workers


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The references: each method meta-trained by one process on the whole meta-batch."""
    folder = tmp_path_factory.mktemp("one")
    before = torch.get_num_threads()
    try:
        for method in ("protonet", "maml"):
            workers.meta_weights(folder, method)
    finally:
        torch.set_num_threads(before)
    return folder


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_tensors(run / "model.safetensors")[0]


def metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (run / "metrics.jsonl").open()]


@pytest.mark.parametrize("method", ["protonet", "maml"])
def test_two_ranks_meta_train_as_one_process_on_the_whole_meta_batch(two_rank_runs, one_process, method):
    assert largest_difference(weights(two_rank_runs / method), weights(one_process / method)) < 1e-5
    ranks, one = metrics(two_rank_runs / method), metrics(one_process / method)
    assert [r["iteration"] for r in ranks] == [r["iteration"] for r in one] == [3]
    assert all(r[k] == pytest.approx(o[k], rel=1e-5, abs=1e-6) for r, o in zip(ranks, one) for k in o)


@pytest.mark.parametrize("variant", ["not-averaged", "same-tasks"])
def test_ranks_that_step_alone_or_share_their_tasks_would_fail_the_check(two_rank_runs, one_process, variant):
    """Rank 0 stepping on its own share's mean gradient, or every rank adapting to the same tasks (as when each
    draws its own), ends far from one process: the check above tells them apart."""
    assert largest_difference(weights(two_rank_runs / variant), weights(one_process / "protonet")) > 1e-3


def test_a_time_budget_stops_every_rank_at_the_iteration_rank_0_decides(two_rank_runs):
    """The ranks' clocks differ (10 s and 20 s per reading); rank 0's decides for both, so both stop after 3
    meta-iterations instead of one waiting forever in a collective the other never joins."""
    error = two_rank_runs / "spawn-error.txt"
    assert not error.exists(), error.read_text()
    assert [(two_rank_runs / f"budget-{r}.txt").read_text() for r in (0, 1)] == ["3", "3"]


@pytest.fixture(scope="module")
def pretrained(two_rank_runs) -> dict[str, torch.Tensor]:
    return read_tensors(two_rank_runs / "pretrained.safetensors")[0]


@pytest.mark.parametrize("name", list(workers.PRETRAININGS))
def test_pretraining_on_two_ranks_draws_the_views_of_one_process_on_the_global_batch(pretrained, name):
    """Views and corruptions drawn for the global batch (each rank its rows; SCARF's donor rows from every rank's)
    give one process's steps; drawn per rank (rank r's i-th example cropped as rank 0's i-th) they do not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = workers.pretrain_steps(name, workers.PRETRAIN_BATCH)
    finally:
        torch.set_num_threads(before)
    assert largest_difference({k: pretrained[f"global/{k}"] for k in reference}, reference) < 1e-5
    assert largest_difference({k: pretrained[f"per-rank/{k}"] for k in reference}, reference) > 1e-3


def test_each_rank_adapts_to_its_contiguous_share_of_the_meta_batch(monkeypatch):
    """Rank 1 of 2 takes tasks 2 and 3 of 4: the equality above holds too for ranks that each adapt to all tasks,
    which would only be slower."""
    setup = build(workers.meta_config("maml"))
    episodes = setup.sample(None, 4, 0, 2, 2, torch.Generator().manual_seed(0))
    monkeypatch.setattr(loop, "world_size", lambda: 2)
    monkeypatch.setattr(loop, "rank", lambda: 1)
    share = loop.own_tasks(episodes)
    assert share.tasks == 2 and torch.equal(share.support_x, episodes.support_x[2:])


def test_a_meta_batch_the_ranks_cannot_share_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "world_size", lambda: 3)
    with pytest.raises(UserError, match=r"^meta.meta_batch: 4 tasks are the global meta-batch and must divide evenly "
                                        r"among the 3 processes \(a multiple of 3\)$"):
        loop.train(workers.meta_config("protonet"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # torchrun's agent and two workers, twice: 80 s at load average 16 on 2 cores
def test_meta_train_nproc_relaunches_through_torchrun_and_resumes_an_interrupted_run(tmp_path, monkeypatch, one_thread):
    """`meta train --nproc 2` ends with rank 0's run directory, one report and the weights of one process;
    `--resume --nproc 2` continues a run one process started and ends as the uninterrupted run."""
    whole = tmp_path / "whole"
    loop.train(workers.meta_config("maml", iterations=4, eval_every=2), whole, progress=False)
    saved = loop.save_state

    def save_then_stop(*args, **kwargs):  # the process stops right after its first checkpoint
        saved(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_state", save_then_stop)
    with pytest.raises(RunInterrupted):
        loop.train(workers.meta_config("maml", iterations=4, eval_every=2), tmp_path / "cut", progress=False)
    monkeypatch.setattr(loop, "save_state", saved)
    settings = [a for s in workers.maml_overrides(iterations=4, eval_every=2) for a in ("--set", s)]
    for args, run in ((["sinusoid", *settings, "--run-dir", "fresh"], tmp_path / "fresh"),
                      (["--resume", "cut"], tmp_path / "cut")):
        done = subprocess.run([sys.executable, "-m", "hydranet", "meta", "train", "--quiet", "--nproc", "2", *args],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(Path(hydranet.__file__).parents[1])})
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("run directory") == 1
        assert largest_difference(weights(run), weights(whole)) < 1e-5
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
