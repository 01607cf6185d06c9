"""Data-parallel training (issue 20): two gloo ranks on loopback take the steps of one process on the global batch.

The balancer matrix, the per-rank-mean counter-example and the metrics come from the one spawn of two ranks of the
default suite (conftest.py); the single-process references run here, in the test process."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hydranet

from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.errors import UserError
from hydranet.files import read_tensors
from hydranet.train import fit

from tests.distributed import dist_workers as workers
from tests.distributed.dist_workers import spawn


@pytest.fixture(scope="module")
def two_ranks(two_rank_runs) -> dict[str, torch.Tensor]:
    return read_tensors(two_rank_runs / "balancers.safetensors")[0]


def single_process(table: Path, balancer: str) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return workers.train_steps(table, balancer)
    finally:
        torch.set_num_threads(before)


def differences(ranks: dict, prefix: str, reference: dict, kind: str) -> dict[str, float]:
    return {k: float((ranks[f"{prefix}/{k}"] - v).abs().max()) for k, v in reference.items() if k.startswith(kind)}


@pytest.mark.parametrize("balancer", workers.BALANCERS)
def test_two_ranks_take_the_steps_of_one_process_on_the_global_batch(two_ranks, table, balancer):
    reference = single_process(table, balancer)
    weights = differences(two_ranks, balancer, reference, "model/")
    state = differences(two_ranks, balancer, reference, "balancer/")
    assert max(weights.values()) < 1e-5, weights
    assert not state or max(state.values()) < 1e-5, state


def test_per_rank_means_would_give_other_weights(two_ranks, table):
    """Ranks holding different numbers of labels: averaging their own means is not the global mean (the check
    above would fail without the all-reduced label count)."""
    weights = differences(two_ranks, "per-rank", single_process(table, "equal"), "model/")
    assert max(weights.values()) > 1e-3, weights


def test_metrics_equal_the_single_process_evaluation(two_ranks, table):
    metrics = differences(two_ranks, "equal", single_process(table, "equal"), "metric/")
    assert len(metrics) >= 6 and max(metrics.values()) < 1e-5, metrics


@pytest.mark.slow  # a spawn of its own: about 10 s
def test_a_silent_rank_stops_the_other_with_one_line_within_the_timeout(tmp_path):
    out = tmp_path / "rank0.txt"
    spawn(workers.silent_peer, 3.0, str(out))
    seconds, message = out.read_text().split("\n", 1)
    assert "rank 0 of 2 lost the other processes" in message and "--resume" in message, message
    assert "\n" not in message and float(seconds) < 60  # the 3 s timeout, not a hang


@pytest.mark.slow  # three runs, two of them spawned: about 30 s
def test_resume_after_a_killed_rank_ends_as_an_uninterrupted_run(table, tmp_path, one_thread):
    run = tmp_path / "run"
    with pytest.raises(Exception):  # rank 1 dies as epoch 2 starts; rank 0 stops with PeerLost
        spawn(workers.fit_ranks, str(table), str(run), 1)
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the first epoch was saved
    spawn(workers.fit_ranks, str(table), str(run), None)  # --resume, on both ranks
    fit(load_config(workers.experiment(table, epochs=3)), tmp_path / "one", progress=False)
    resumed, uninterrupted = read_tensors(run / "model.safetensors")[0], read_tensors(tmp_path / "one" / "model.safetensors")[0]
    assert max(float((resumed[k] - v).abs().max()) for k, v in uninterrupted.items()) < 1e-5
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_each_rank_takes_its_contiguous_share_of_the_global_batch(table):
    data = build_dataset(load_config(workers.experiment(table, batch_size=10)))
    cpu = torch.device("cpu")
    whole = [b["x"] for b in Batches(data, cpu, 10, data_augment(table), 3).epoch(1)]
    shards = [[b["x"] for b in Batches(data, cpu, 10, data_augment(table), 3, shard=(r, 2)).epoch(1)] for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(whole)
    for batch, first, second in zip(whole, *shards):
        n = len(first) + len(second)
        assert len(first) == len(second) and torch.equal(torch.cat([first, second]), batch[:n])


def data_augment(table):
    return load_config(workers.experiment(table)).data.augment


def test_a_global_batch_the_ranks_cannot_share_is_refused(table):
    data = build_dataset(load_config(workers.experiment(table)))
    with pytest.raises(UserError, match=r"^train.batch_size: 33 is the global batch and must divide evenly among the 2"):
        Batches(data, torch.device("cpu"), 33, data_augment(table), 3, shard=(0, 2))


def test_the_global_batch_is_refused_before_the_run_directory_is_claimed(table, tmp_path, monkeypatch):
    """The same --run-dir works once the batch size is fixed: nothing was written."""
    from hydranet.train import lifecycle

    monkeypatch.setattr(lifecycle, "world_size", lambda: 2)
    with pytest.raises(UserError, match=r"^train.batch_size: 33 is the global batch"):
        fit(load_config(workers.experiment(table, batch_size=33)), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_small_split_keeps_its_only_batch_on_every_rank(table):
    """Three examples, batch 8, two ranks: one example per rank is a lone share, but leaving it out would leave
    an epoch without a step."""
    data = build_dataset(load_config(workers.experiment(table, batch_size=8)))
    data.index["train"] = data.index["train"][:3]
    shards = [Batches(data, torch.device("cpu"), 8, data_augment(table), 3, shard=(r, 2)) for r in (0, 1)]
    assert [len(list(b.epoch(0))) for b in shards] == [1, 1]


def test_other_ranks_write_into_a_private_scratch_folder(table, monkeypatch, tmp_path):
    """Rank 0 alone writes the user's run; a feature that writes on another rank cannot touch it."""
    from hydranet.train import lifecycle

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lifecycle, "is_main", lambda: False)
    session = lifecycle.start(load_config(workers.experiment(table)), tmp_path / "run", "train", False)
    assert not session.dir.path.is_relative_to(tmp_path) and not (tmp_path / "run").exists()


def test_a_lost_peer_in_any_collective_is_one_line():
    from hydranet.distributed.context import PeerLost, exchanging

    with pytest.raises(PeerLost, match=r"^distributed: rank 0 of 1 lost the other processes while exchanging the rows \(Connection closed by peer\); .* restart with --resume RUN_DIR$"):
        with exchanging("the rows"):
            raise RuntimeError("Connection closed by peer\n[c10d stack]")


def test_tune_started_by_torchrun_is_refused_in_one_line(cli, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = cli("tune", "quickstart", "--trials", "1")
    assert code == 2 and err.startswith("error: hydranet tune: runs its trials in its own worker processes")
    assert len(err.strip().splitlines()) == 1


def test_python_m_hydranet_is_the_command_torchrun_starts(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["hydranet", "train", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("hydranet", run_name="__main__")
    assert exit_.value.code == 0 and "--nproc" in capsys.readouterr().out


@pytest.mark.slow  # torchrun's agent and two workers: about 20 s
def test_train_nproc_relaunches_through_torchrun(table, tmp_path):
    """`--nproc 2` ends with rank 0's run directory and table; a user error of the workers keeps its exit code 2."""
    yaml_path = tmp_path / "exp.yaml"
    yaml_path.write_text(json.dumps(workers.experiment(table)))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(Path(hydranet.__file__).parents[1])}
    hydranet_cmd = [sys.executable, "-m", "hydranet", "train", str(yaml_path), "--quiet"]
    done = subprocess.run([*hydranet_cmd, "--nproc", "2", "--run-dir", str(tmp_path / "run")], capture_output=True,
                          text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run directory") == 1 and (tmp_path / "run" / "model.safetensors").exists()
    refused = subprocess.run([*hydranet_cmd, "--nproc", "2", "--set", "train.batch_size=33"], capture_output=True,
                             text=True, env=env, timeout=600, cwd=tmp_path)
    assert refused.returncode == 2 and "train.batch_size: 33 is the global batch" in refused.stderr


@pytest.mark.slow  # torchrun's agent and two workers: about 20 s
def test_pretrain_nproc_relaunches_through_torchrun(table, tmp_path):
    """`pretrain --nproc 2` (denoising on the table) ends with rank 0's run directory, its trunk and one report."""
    yaml_path = tmp_path / "exp.yaml"
    yaml_path.write_text(json.dumps({**workers.experiment(table), "ssl": {"method": "denoising"}}))
    env = {**os.environ, "PYTHONPATH": str(Path(hydranet.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "hydranet", "pretrain", str(yaml_path), "--quiet", "--nproc", "2",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run directory") == 1 and (tmp_path / "run" / "trunk.safetensors").exists()


def test_leave_destroys_only_the_group_join_created(monkeypatch, tmp_path):
    """A group the caller made (a script or test around hydranet) outlives a run; the one `join` made does not."""
    from hydranet.distributed import context

    store = f"file://{tmp_path / 'store'}"
    torch.distributed.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        context.leave()
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()
    monkeypatch.setattr(context, "launched", lambda: True)  # as under torchrun, with a one-rank rendezvous
    init = torch.distributed.init_process_group
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, timeout: init(
        backend, init_method=f"file://{tmp_path / 'store2'}", rank=0, world_size=1, timeout=timeout))
    context.join(torch.device("cpu"), 30)
    with context.membership():
        assert torch.distributed.is_initialized()
    assert not torch.distributed.is_initialized()


def test_under_nccl_a_cpu_tensor_is_reduced_through_the_rank_gpu(monkeypatch):
    """NCCL moves only GPU tensors, and the trainer's epoch means of plain numbers (the balancer weights) are CPU
    tensors: every all-reduce sends them through this rank's GPU. Checked on the choice alone: NCCL itself cannot
    run on a CPU-only machine."""
    from hydranet.distributed import reduce

    monkeypatch.setattr(reduce.dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert reduce.transport_device(torch.zeros(2)) == torch.device("cuda", 1)
    monkeypatch.setattr(reduce.dist, "get_backend", lambda: "gloo")
    assert reduce.transport_device(torch.zeros(2)) == torch.device("cpu")


def test_nccl_is_chosen_for_gpus_and_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    """The choice only (these machines have no GPU): gloo between CPU processes, NCCL for CUDA devices; `cuda`
    becomes this node's GPU number LOCAL_RANK under torchrun, an explicit `cuda:N` stays."""
    from hydranet.distributed import context

    assert context.backend(torch.device("cpu")) == "gloo" and context.backend(torch.device("cuda", 1)) == "nccl"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert context.rank_device(torch.device("cuda")) == torch.device("cuda", 3)
    assert context.rank_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert context.rank_device(torch.device("cpu")) == torch.device("cpu")
