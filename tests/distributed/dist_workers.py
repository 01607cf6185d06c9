"""What the spawned ranks of tests/distributed run (a module of its own, so torch.multiprocessing's spawned children
can import it): a few training steps on tiny data, the same function for one process and for each rank."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.multiprocessing as mp

import hydranet.tasks
from hydranet import registry
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.distributed import reduce
from hydranet.distributed.context import PeerLost, join
from hydranet.files import write_text
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer
from tests.ports import free_port

BALANCERS = ["equal", "uncertainty", "famo", "pcgrad", "mgda", "nash_mtl"]
STEPS = 4
GLOBAL_BATCH = 32


def spawn(fn, *args, world: int = 2) -> None:
    """`fn(rank, world, port, *args)` on `world` spawned processes (a free loopback port for their rendezvous)."""
    mp.start_processes(fn, args=(world, free_port(), *args), nprocs=world, join=True, start_method="spawn")


def write_table(path: Path) -> Path:
    """Three tasks of three kinds; `size` is labelled in about a fifth of the rows and `shape` in two thirds, so
    the two halves of a batch hold different numbers of labels."""
    rng = np.random.default_rng(0)
    n = 160
    x1, x2, x3 = rng.normal(size=(3, n))
    frame = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "kind": np.where(x1 > 0, "up", "down"),
                          "shape": np.where(x2 > 0.5, "a", np.where(x2 < -0.5, "b", "c")), "size": 3 * x3 + x1})
    frame.loc[rng.random(n) > 0.2, "size"] = np.nan
    frame.loc[rng.random(n) > 0.66, "shape"] = None
    frame.to_csv(path, index=False)
    return path


def experiment(path: Path, balancer: str = "equal", **train) -> dict:
    """fp32, no dropout, no BatchNorm, SGD: one process and two ranks must take the same steps."""
    return {"name": "dist", "seed": 3, "data": {"source": "csv", "path": str(path), "split": {"val": 0.25, "test": 0.0}},
            "tasks": {"kind": {"kind": "binary"}, "shape": {"kind": "classification"}, "size": {"kind": "regression"}},
            "model": {"trunk": {"name": "mlp", "hidden": [16, 16]}},
            "mtl": {"balancer": balancer, "diagnostics_every": 0},
            "train": {"epochs": 1, "batch_size": GLOBAL_BATCH, "progress": False, "precision": "fp32",
                      "optimizer": {"name": "sgd", "lr": 0.1}, **train}}


def train_steps(path: Path, balancer: str) -> dict[str, torch.Tensor]:
    """The model's and the balancer's tensors after STEPS steps, and the val metrics (as tensors)."""
    cfg = load_config(experiment(path, balancer))
    data = build_dataset(cfg)
    model, tasks = build_model_for(cfg, data.info, torch.device("cpu"))
    options = cfg.mtl.balancer.options
    balancer_ = registry.get("balancer", cfg.mtl.balancer.name, "mtl.balancer")(options, tasks, cfg.seed)
    trainer = Trainer(model, tasks, cfg, balancer_, device=torch.device("cpu"))
    batches = Batches(data, trainer.device, cfg.train.batch_size, cfg.data.augment, cfg.seed)
    trainer.total_steps = STEPS
    trainer.hook("on_fit_start")
    for _, batch in zip(range(STEPS), batches.epoch(0)):
        trainer.train_step(batch)
    out = {f"model/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out.update({f"balancer/{k}": v.detach().float().clone() for k, v in _tensors(balancer_).items()})
    metrics, _ = trainer.evaluate(trainer.to_device(data.split("val")))
    out.update({f"metric/{t}/{m}": torch.tensor(v) for t, ms in metrics.items() for m, v in ms.items()})
    return out


def _tensors(balancer) -> dict[str, torch.Tensor]:
    """Learnable or running state: uncertainty's log-variances, FAMO's logits."""
    found = dict(balancer.named_parameters()) if hasattr(balancer, "named_parameters") else {}
    if hasattr(balancer, "logits"):
        found["logits"] = balancer.logits
    return found


def per_rank_mean(mean, count):
    """The wrong reduction: each rank's own mean, averaged over the ranks by the gradient all-reduce."""
    return mean


def as_rank(rank: int, world: int, port: int) -> None:
    """torchrun's environment for rank `rank` of `world` (a rendezvous on `port`), one thread."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def balancer_results(path: Path) -> dict[str, torch.Tensor]:
    """Every balancer of BALANCERS, then `equal` with per-rank means (run by each rank of a process group)."""
    results = {}
    for name in BALANCERS:
        results.update({f"{name}/{k}": v for k, v in train_steps(path, name).items()})
    hydranet.tasks.global_mean = per_rank_mean  # Task.loss's reduction, replaced in this process only
    results.update({f"per-rank/{k}": v for k, v in train_steps(path, "equal").items()})
    hydranet.tasks.global_mean = reduce.global_mean
    return results


def silent_peer(rank: int, world: int, port: int, timeout_s: float, out: str) -> None:
    """Rank 1 joins, then never takes part in a collective; rank 0 records what its all-reduce raised, and when."""
    as_rank(rank, world, port)
    join(torch.device("cpu"), timeout_s=timeout_s)
    if rank == 1:
        while not Path(out).exists():  # alive but silent until rank 0 has given up on it
            time.sleep(0.2)
        os._exit(0)  # gone without leaving the group, as a killed process
    start = time.monotonic()
    try:
        reduce.averaged(torch.ones(3))
        message = "no error"
    except PeerLost as err:
        message = str(err)
    write_text(out, f"{time.monotonic() - start:.1f}\n{message}")
    os._exit(0)


class DieAt:
    """Kills its process (as SIGKILL would: no cleanup) when 0-based epoch `epoch` starts."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_start(self, trainer) -> None:
        if trainer.epoch == self.epoch:
            os._exit(9)


def fit_ranks(rank: int, world: int, port: int, path: str, run_dir: str, die_at: int | None) -> None:
    """Rank r's share of `hydranet train` (3 epochs) into run_dir; rank 1 dies when epoch `die_at` starts; with
    `die_at` None on an existing run, `--resume` it."""
    from hydranet.train import fit, resume

    as_rank(rank, world, port)
    if Path(run_dir, "run.json").exists():
        resume(run_dir, progress=False)
        return
    cfg = load_config(experiment(Path(path), epochs=3, distributed_timeout=30))
    fit(cfg, run_dir, progress=False, callbacks=[DieAt(die_at)] if rank == 1 and die_at is not None else [])
