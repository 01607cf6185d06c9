"""Where a `seed-cnn` training step spends its time: torch.profiler over hydranet's own step, grouped by layer kind.

Builds `seed-cnn` as shipped (model, balancer, optimizer, batches from the data layer) on a few hundred CIFAR-10
images, runs `--warmup` steps on one batch of `--batch-size`, then profiles `--steps` more and sums each
operator's self CPU time into groups: convolutions (forward and backward), pooling, the dense layers, ReLU, the
loss, the optimizer, batch preparation (normalize, layout copies) and the rest. Prints one JSON line and a table
of shares; the shares are comparable under load, the milliseconds are not.

    python benchmarks/profile_seed_cnn.py [--batch-size 256] [--steps 20] [--precision auto] [--threads N]
                                          [--blocks K [--compile]]

`--blocks K` times instead of profiling: K blocks of `--steps` steps each, wall clock, no profiler, and prints each
block's ms per step and their median, with the time, the load average and the CPUs the process may run on (pin it
with taskset to time one core): the spread between the blocks of one process is the machine's own noise. With
`--compile` the blocks alternate between the model as trained and the same model under `torch.compile` (compiled
once before timing; its compile seconds are printed), and the line gives both medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import hydranet as hn
from hydranet import registry
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.train.lifecycle import apply_process_settings
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
# operator name fragments → group, first match wins (backward kernels carry their forward's name)
GROUPS = (
    ("convolution", "conv"), ("conv2d", "conv"),
    ("max_pool", "pool"),
    ("addmm", "dense"), ("aten::mm", "dense"), ("linear", "dense"),
    ("relu", "relu"), ("threshold_backward", "relu"), ("clamp_min", "relu"),
    ("log_softmax", "loss"), ("nll_loss", "loss"), ("cross_entropy", "loss"),
    ("adam", "optimizer"),
    ("fill_", "zero fills"), ("zero_", "zero fills"),  # gradient buffers, chiefly max-pool backward's
    ("copy_", "batch and layout"), ("contiguous", "batch and layout"), ("aten::to", "batch and layout"),
    ("index", "batch and layout"), ("div", "batch and layout"), ("sub", "batch and layout"),
)


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((group for fragment, group in GROUPS if fragment in lowered), "other")


def trainer_and_batch(args: argparse.Namespace) -> tuple[Trainer, dict]:
    """seed-cnn's trainer (as `hydranet train` builds it) and the first batch of `args.batch_size` images."""
    overrides = {"data.path": args.data, "data.limit": max(600, 2 * args.batch_size), "train.batch_size": args.batch_size,
                 "train.precision": args.precision, "train.progress": False, "train.threads": args.threads}
    cfg = hn.Experiment("seed-cnn", overrides).config
    apply_process_settings(cfg)
    data = build_dataset(cfg)
    model, tasks = build_model_for(cfg, data.info, torch.device("cpu"))
    balancer = registry.get("balancer", cfg.mtl.balancer.name, "mtl.balancer")(cfg.mtl.balancer.options, tasks, cfg.seed)
    trainer = Trainer(model, tasks, cfg, balancer, device=torch.device("cpu"))
    batches = Batches(data, trainer.device, cfg.train.batch_size, cfg.data.augment, cfg.seed, cfg.train.channels_last)
    trainer.total_steps = args.warmup + args.steps
    trainer.hook("on_fit_start")
    return trainer, next(iter(batches.epoch(0)))


def block_ms(trainer: Trainer, batch: dict, steps: int) -> float:
    """Wall-clock ms per step over `steps` training steps on one batch."""
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    return round((time.perf_counter() - start) * 1e3 / steps, 2)


def time_blocks(trainer: Trainer, batch: dict, args: argparse.Namespace) -> None:
    """Wall-clock ms per step of `args.blocks` blocks of `args.steps` steps (eager and compiled in turn with
    `--compile`); one JSON line."""
    models, extra = {"eager": trainer.model}, {}
    if args.compile:
        start = time.perf_counter()
        models["compiled"] = trainer.model = torch.compile(models["eager"])
        for _ in range(args.warmup):
            trainer.train_step(batch)
        extra["compile_seconds"] = round(time.perf_counter() - start, 1)
    blocks = {name: [] for name in models}
    for _ in range(args.blocks):
        for name, model in models.items():
            trainer.model = model
            blocks[name].append(block_ms(trainer, batch, args.steps))
    if args.compile:
        extra |= {"compiled_ms_per_step_median": statistics.median(blocks["compiled"]),
                  "compiled_blocks_ms_per_step": blocks["compiled"]}
    print(json.dumps({"benchmark": "profile_seed_cnn", "timing": "blocks", "batch_size": args.batch_size,
                      "steps": args.steps, "precision": trainer.precision, "threads": torch.get_num_threads(),
                      "ms_per_step_median": statistics.median(blocks["eager"]), "blocks_ms_per_step": blocks["eager"],
                      **extra,
                      "cpus": sorted(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
                      "utc": time.strftime("%H:%M:%S", time.gmtime()), "torch": torch.__version__}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    parser.add_argument("--blocks", type=int, default=0, help="time K blocks of --steps steps instead of profiling")
    parser.add_argument("--compile", action="store_true", help="with --blocks: alternate with the model compiled")
    args = parser.parse_args()
    trainer, batch = trainer_and_batch(args)
    if args.blocks:
        trainer.total_steps = args.warmup + args.blocks * args.steps  # the schedule spans every step taken
    for _ in range(args.warmup):
        trainer.train_step(batch)
    if args.blocks:
        time_blocks(trainer, batch, args)
        return
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            trainer.train_step(batch)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[group_of(event.key)] += event.self_cpu_time_total / 1000  # ms
    whole = sum(totals.values())
    row = {"benchmark": "profile_seed_cnn", "batch_size": args.batch_size, "steps": args.steps,
           "precision": trainer.precision, "threads": torch.get_num_threads(), "ms_per_step": round(whole / args.steps, 2),
           "share": {g: round(t / whole, 3) for g, t in sorted(totals.items(), key=lambda kv: -kv[1])},
           "load_average": os.getloadavg(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "torch": torch.__version__}
    print(json.dumps(row))
    print(f"\n| group | share of self CPU time ({row['precision']}, batch {args.batch_size}, {row['threads']} threads) |\n|---|---|")
    for group, share in row["share"].items():
        print(f"| {group} | {share:.1%} |")
    print(f"\n{row['ms_per_step']} ms per step (self CPU time summed over threads' ops); load average {row['load_average']}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
