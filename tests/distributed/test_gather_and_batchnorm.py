"""Differentiable gathering, SimCLR's global negatives and synchronized BatchNorm on 2 CPU ranks (gloo, loopback)
against one process on the concatenated batch. One spawn of two processes runs every two-rank check (a spawn
costs seconds); the tests compare what the ranks sent back with the one-process reference computed here.
"""

from __future__ import annotations

import io
import math
import queue
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hydranet as hn
from hydranet.config import Config
from hydranet.distributed import batchnorm, gather
from hydranet.distributed.batchnorm import CPUSyncBatchNorm, sync_batch_norm
from hydranet.distributed.gather import Gathered, all_gather_with_grad, mean_over_ranks
from hydranet.ssl.methods.simclr import mlp_head, nt_xent
from hydranet.train.trainer import Trainer
from tests.ports import free_port

SHARES = (5, 3)  # examples of each rank: uneven, as a global batch that does not divide evenly
WORLD, BATCH = len(SHARES), sum(SHARES)
BN_LAYERS = {"bn2d": lambda: nn.BatchNorm2d(3), "bn1d_cumulative": lambda: nn.BatchNorm1d(5, momentum=None)}
BN_INPUTS = {"bn2d": (3, 4, 4), "bn1d_cumulative": (5,)}
BN_STEPS = 2


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rows(rank: int) -> slice:
    """Rank `rank`'s share of the global batch."""
    return slice(sum(SHARES[:rank]), sum(SHARES[:rank + 1]))


# --- the same computations, on one rank's share or on the whole batch --------------------------------------------

def _gather_inputs(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank r's rows (distinct values) and the weights of its loss Σ rows·c_r over the gathered rows."""
    x = torch.arange(BATCH * 3, dtype=torch.float32).view(BATCH, 3)[_rows(rank)]
    return x, _randn(100 + rank, BATCH, 3)


def _encoder() -> nn.Module:
    """Linear trunk → SimCLR's projection head (with its BatchNorm), the same initial weights every time."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), mlp_head(16, 32, 8))


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    return _randn(1, BATCH, 6), _randn(2, BATCH, 6)


def _simclr_step(encoder: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """SimCLR's forward as the method does it (both views through one pass) and its gradients."""
    z1, z2 = encoder(torch.cat([v1, v2])).chunk(2)
    loss = nt_xent(z1, z2, 0.5)
    loss.backward()
    return loss.detach(), [p.grad for p in encoder.parameters()]


def _bn_steps(layer: nn.Module, name: str, rows: slice) -> dict:
    """BN_STEPS training steps on `rows` of each step's global batch, then evaluation: outputs, input gradients of
    Σ y·g, the affine gradients and the running statistics."""
    out = {"y": [], "grad_x": [], "grad_affine": []}
    for step in range(BN_STEPS):
        x = _randn(10 + step, BATCH, *BN_INPUTS[name])[rows].requires_grad_()
        y = layer(x)
        (y * _randn(20 + step, BATCH, *BN_INPUTS[name])[rows]).sum().backward()
        out["y"].append(y.detach())
        out["grad_x"].append(x.grad)
    out["grad_affine"] = [layer.weight.grad, layer.bias.grad]
    out["running"] = [layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone()]
    out["eval"] = layer.eval()(_randn(30, BATCH, *BN_INPUTS[name])[rows])
    return out


# --- the two ranks ---------------------------------------------------------------------------------------------

def _summed(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    for t in tensors:
        dist.all_reduce(t)
    return tensors


def _averaged(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """What DDP does to gradients: the mean over ranks."""
    return [t / WORLD for t in _summed(tensors)]


def _rank_checks(rank: int) -> dict:
    """Every two-rank check of the default suite, on this rank's share: the gather, SimCLR (as it should be, with each
    rank's own BatchNorm, without gathering) and synchronized BatchNorm layers."""
    torch.set_num_threads(1)
    results = {}
    x, weights = _gather_inputs(rank)
    rows, start = all_gather_with_grad(x.requires_grad_())
    (rows * weights).sum().backward()
    share = mean_over_ranks(x.detach().sum(0), len(x))
    results["gather"] = {"rows": rows.detach(), "start": start, "grad": x.grad, "mean": _averaged([share])[0]}

    v1, v2 = _views()[0][_rows(rank)], _views()[1][_rows(rank)]
    for variant in ("synced", "bn_per_rank", "not_gathered"):
        encoder = _encoder() if variant == "bn_per_rank" else sync_batch_norm(_encoder(), torch.device("cpu"))
        local_only = mock.patch("hydranet.ssl.methods.simclr.all_gather_with_grad", lambda z: Gathered(z, 0))
        with local_only if variant == "not_gathered" else nullcontext():
            loss, grads = _simclr_step(encoder, v1, v2)
        results[f"simclr_{variant}"] = {"loss": _averaged([loss])[0], "grads": _averaged(grads)}

    for name, make in BN_LAYERS.items():
        layer = sync_batch_norm(make(), torch.device("cpu"))
        results[name] = {"type": type(layer).__name__, **_bn_steps(layer, name, _rows(rank))}
        _summed(results[name]["grad_affine"])  # the affine parameters' gradient is the sum of every rank's loss's
    return results


def _worker(rank: int, port: int, checks, results: mp.Queue, *args) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))
    try:
        found = checks(rank, *args)
    finally:
        dist.destroy_process_group()
    serialized = io.BytesIO()  # bytes, not tensors: a queued tensor lives in this process's shared memory
    torch.save(found, serialized)
    results.put((rank, serialized.getvalue()))


def _on_two_ranks(checks, *args) -> list[dict]:
    """What `checks(rank, *args)` returns on each of WORLD spawned ranks of one gloo process group; a rank's error
    fails the caller with its traceback."""
    results = mp.get_context("spawn").Queue()
    processes = mp.start_processes(_worker, args=(free_port(), checks, results, *args), nprocs=WORLD, join=False,
                                   start_method="spawn")
    received = {}
    while len(received) < WORLD:
        try:
            rank, serialized = results.get(timeout=1)
            received[rank] = torch.load(io.BytesIO(serialized))
        except queue.Empty:
            if processes.join(timeout=0):  # all ended (a rank that failed raises here, with its traceback)
                break
    while not processes.join(timeout=10):
        pass
    assert sorted(received) == list(range(WORLD)), f"ranks {sorted(received)} of {WORLD} sent results"
    return [received[r] for r in range(WORLD)]


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    """Every rank's results of `_rank_checks`, from one spawn."""
    return _on_two_ranks(_rank_checks)


def _close(a, b) -> bool:
    return all(torch.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b, strict=True))


# --- the tests ----------------------------------------------------------------------------------------------------

def test_all_gather_concatenates_uneven_shares_and_sends_back_every_ranks_gradient(ranks):
    inputs = [_gather_inputs(r) for r in range(WORLD)]
    everyone = torch.cat([x for x, _ in inputs])
    total_weights = sum(w for _, w in inputs)  # ∂(Σ_r L_r)/∂rows: every rank's loss reads every row
    for rank, result in enumerate(ranks):
        got = result["gather"]
        assert torch.equal(got["rows"], everyone) and got["start"] == _rows(rank).start
        assert torch.allclose(got["grad"], total_weights[_rows(rank)])
        # the ranks' shares of a mean average to the mean of all rows, not to the mean of the ranks' means
        assert torch.allclose(got["mean"], everyone.mean(0))


def test_simclr_on_two_ranks_equals_one_process_on_the_whole_batch(ranks):
    loss, grads = _simclr_step(_encoder(), *_views())
    for result in ranks:
        assert _close([result["simclr_synced"]["loss"]], [loss])
        assert _close(result["simclr_synced"]["grads"], grads)
    # without the gathered negatives, or with each rank's own BatchNorm statistics, the same check fails
    for variant in ("not_gathered", "bn_per_rank"):
        assert not _close([ranks[0][f"simclr_{variant}"]["loss"]], [loss])
        assert not _close(ranks[0][f"simclr_{variant}"]["grads"], grads)


@pytest.mark.parametrize("name", BN_LAYERS)
def test_sync_batch_norm_on_two_ranks_equals_one_batch_norm_on_the_whole_batch(ranks, name):
    whole = _bn_steps(BN_LAYERS[name](), name, slice(None))
    for rank, result in enumerate(ranks):
        got, mine = result[name], _rows(rank)
        assert got["type"] == "CPUSyncBatchNorm"
        assert _close(got["y"], [y[mine] for y in whole["y"]])
        assert _close(got["grad_x"], [g[mine] for g in whole["grad_x"]])
        assert _close(got["grad_affine"], whole["grad_affine"])
        assert _close(got["running"][:2], whole["running"][:2]) and torch.equal(got["running"][2], whole["running"][2])
        assert _close([got["eval"]], [whole["eval"][mine]])


def test_batch_norm_per_rank_differs_from_the_whole_batch():
    """The check above has teeth: plain BatchNorm on each rank's share gives other outputs and statistics."""
    whole = _bn_steps(nn.BatchNorm2d(3), "bn2d", slice(None))
    share = _bn_steps(nn.BatchNorm2d(3), "bn2d", _rows(0))
    assert not _close(share["y"], [y[_rows(0)] for y in whole["y"]])
    assert not _close(share["running"][:2], whole["running"][:2])


# --- one process: nothing changes ----------------------------------------------------------------------------------

def test_one_process_gathers_itself_and_keeps_plain_batch_norm():
    x = torch.ones(3, 2)
    assert all_gather_with_grad(x) == (x, 0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    assert sync_batch_norm(model, torch.device("cpu")) is model and type(model[1]) is nn.BatchNorm1d


@pytest.mark.parametrize("enabled", [True, False])
def test_trainer_syncs_every_batch_norm_of_model_and_components_when_asked(monkeypatch, enabled):
    """With several ranks, `train.sync_batch_norm` converts the model's and the components' BatchNorm (a method's
    projection head) in place, keeping the very parameters and state-dict keys; false leaves them plain."""
    monkeypatch.setattr(batchnorm, "world_size", lambda: WORLD)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    head = mlp_head(4, 8, 2)
    weight, keys = model[1].weight, list(model.state_dict())
    cfg = Config.model_validate({"train": {"sync_batch_norm": enabled}})
    Trainer(model, {}, cfg, balancer=object(), device=torch.device("cpu"), extra_losses=[head])
    expected = CPUSyncBatchNorm if enabled else nn.BatchNorm2d
    assert isinstance(model[1], expected) and model[1].weight is weight and list(model.state_dict()) == keys
    assert isinstance(head[1], CPUSyncBatchNorm if enabled else nn.BatchNorm1d)
    assert gather.world_size() == 1  # the patch reached only batchnorm.py's view


# --- `hydranet pretrain` in a process group ---------------------------------------------------------------------------

def _pretrain_checks(rank: int, folder: str) -> dict:
    """Pretrain a small CNN with BatchNorm on every rank (each into its own folder: writing once is the launcher's)."""
    torch.set_num_threads(1)
    found = {}
    for method in ("simclr", "byol"):
        settings = {"model.trunk.channels": [8], "model.trunk.dense": [16], "model.trunk.batch_norm": True,
                    "data.limit": 200, "train.epochs": 1, "train.progress": False, "ssl.method": method,
                    "train.precision": "fp32"}  # the ranks' trunks are compared to float32 rounding
        run = hn.Experiment("quickstart", settings).pretrain(Path(folder) / f"{method}-{rank}")
        norms = {type(m).__name__ for m in run.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        found[method] = {"norms": sorted(norms), "loss": run.summary["loss"], "trunk": run.model.trunk.state_dict()}
    return found


@pytest.mark.slow
def test_pretraining_in_a_process_group_gathers_and_syncs_on_its_own(tmp_path):
    """Both ranks train on the same examples here (splitting the batch is the launcher's): with gathered negatives and
    synchronized BatchNorm every collective matches up, and the ranks' trunks stay equal (to rounding: each rank
    takes another slice of SimCLR's summed gradient, equal in exact arithmetic)."""
    first, second = _on_two_ranks(_pretrain_checks, str(tmp_path))
    for method, got in first.items():
        assert got["norms"] == ["CPUSyncBatchNorm"] and math.isfinite(got["loss"])
        assert got["loss"] == pytest.approx(second[method]["loss"])
        assert _close(got["trunk"].values(), second[method]["trunk"].values())
