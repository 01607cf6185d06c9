"""Data-parallel throughput on one machine: 1 process × T threads against N processes × 1 thread (gloo on CPU,
NCCL on GPUs), and the share of each step spent in communication, for a one-backward balancer (`equal`) and a
per-task-gradient one (`pcgrad`), on an experiment's real batches (multidigits by default).

Every configuration trains `--steps` steps of the experiment's global batch with `Trainer.train_step`, after
`--warmup` steps; the ranks' collectives (all-reduce, all-gather) are timed by wrapping torch.distributed's. Prints
one JSON line per configuration and a table.

    python benchmarks/distributed.py [--experiment multidigits] [--steps 40] [--nproc 2] [--balancers equal,pcgrad]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hydranet import registry
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.distributed.context import join, leave, world_size
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer


class CollectiveClock:
    """Seconds spent inside torch.distributed's all_reduce and all_gather (hydranet's only collectives)."""

    def __init__(self):
        self.seconds = 0.0
        for name in ("all_reduce", "all_gather"):
            setattr(dist, name, self._timed(getattr(dist, name)))

    def _timed(self, collective):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return collective(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def run_steps(experiment: str, balancer: str, steps: int, warmup: int) -> dict:
    """Train warmup + steps steps; the timed steps' wall seconds and the part of it inside collectives."""
    clock = CollectiveClock()
    cfg = load_config(experiment, [f"mtl.balancer={balancer}", "mtl.diagnostics_every=0", "train.progress=false"])
    data = build_dataset(cfg)
    device = torch.device("cpu")
    model, tasks = build_model_for(cfg, data.info, device)
    trainer = Trainer(model, tasks, cfg, registry.get("balancer", balancer)(cfg.mtl.balancer.options, tasks, cfg.seed),
                      device=device)
    trainer.total_steps = 10**6
    trainer.hook("on_fit_start")
    feed = Batches(data, device, cfg.train.batch_size, cfg.data.augment, cfg.seed)
    batches = [b for epoch in range(-(-(steps + warmup) // len(feed))) for b in feed.epoch(epoch)][:steps + warmup]
    for batch in batches[:warmup]:
        trainer.train_step(batch)
    clock.seconds, start = 0.0, time.perf_counter()
    for batch in batches[warmup:]:
        trainer.train_step(batch)
    return {"seconds": time.perf_counter() - start, "comm_seconds": clock.seconds,
            "examples": sum(len(b["x"]) for b in batches[warmup:]) * world_size()}


def rank_main(rank: int, world: int, port: int, args: argparse.Namespace, balancer: str, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    join(torch.device("cpu"), timeout_s=600)
    result = run_steps(args.experiment, balancer, args.steps, args.warmup)
    if rank == 0:
        out.put(result)
    leave()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args: argparse.Namespace, balancer: str, processes: int) -> dict:
    if processes == 1:
        torch.set_num_threads(args.threads)
        result = run_steps(args.experiment, balancer, args.steps, args.warmup)
    else:
        queue = mp.get_context("spawn").SimpleQueue()
        mp.start_processes(rank_main, args=(processes, free_port(), args, balancer, queue), nprocs=processes,
                           start_method="spawn")
        result = queue.get()
    threads = args.threads if processes == 1 else 1
    return {"benchmark": "distributed", "experiment": args.experiment, "balancer": balancer, "processes": processes,
            "threads_per_process": threads, "steps": args.steps, "examples_per_s": round(result["examples"] / result["seconds"], 1),
            "ms_per_step": round(1e3 * result["seconds"] / args.steps, 1),
            "comm_share": round(result["comm_seconds"] / result["seconds"], 3),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "load_average_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="multidigits")
    parser.add_argument("--balancers", default="equal,pcgrad")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the single process")
    args = parser.parse_args()
    rows = []
    for balancer in args.balancers.split(","):
        for processes in (1, args.nproc):
            rows.append(measure(args, balancer, processes))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| balancer | processes × threads | examples/s | ms/step | communication |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['balancer']} | {r['processes']} × {r['threads_per_process']} | {r['examples_per_s']:,.0f} | "
              f"{r['ms_per_step']} | {100 * r['comm_share']:.0f} % |")


if __name__ == "__main__":
    main()
