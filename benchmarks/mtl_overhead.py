"""Per-step cost of each balancer relative to `equal` on the quickstart model (3 tasks, digits, small CNN).

Each balancer gets the same freshly seeded model and a Trainer (no callbacks: diagnostics off) and times
`Trainer.train_step` (forward, losses, balancer backward, optimizer step) on the same batches. Balancers
take turns, one block of steps each per round, so machine noise spreads over all of them; the figure is
the median over rounds of the mean ms/step within a block. Prints one JSON line per balancer and a table.

    python benchmarks/mtl_overhead.py [--batch-size 64] [--steps 20] [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from hydranet import registry
from hydranet.config import load_config
from hydranet.data import DataInfo, build_dataset
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer

BALANCERS = ["equal", "uncertainty", "dwa", "rlw", "famo", "gradnorm", "pcgrad", "mgda", "cagrad", "nash_mtl",
             "upgrad", "aligned_mtl", "imtl", "db_mtl", "gradvac", "graddrop", "fairgrad"]


def make_trainer(name: str, batch_size: int, device: torch.device, info: DataInfo) -> Trainer:
    cfg = load_config("quickstart", [f"mtl.balancer={name}", f"train.batch_size={batch_size}"])
    model, tasks = build_model_for(cfg, info, device)
    trainer = Trainer(model, tasks, cfg, registry.get("balancer", name)(cfg.mtl.balancer.options, tasks, cfg.seed), device=device)
    trainer.total_steps = 10**6  # the schedule's lr is irrelevant to the cost
    trainer.hook("on_fit_start")
    return trainer


def batches(data, batch_size: int, count: int, device: torch.device) -> list[dict]:
    train = {k: v.to(device) for k, v in data.split("train").items()}
    gen = torch.Generator().manual_seed(0)
    picks = [torch.randperm(len(train["x"]), generator=gen)[:batch_size].to(device) for _ in range(count)]
    return [{k: v.index_select(0, idx) for k, v in train.items()} for idx in picks]


def block_ms(trainer: Trainer, block: list[dict], device: torch.device) -> float:
    """Mean ms per step over one block (the device is drained before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for batch in block:
        trainer.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3 / len(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per block")
    parser.add_argument("--rounds", type=int, default=7, help="blocks per balancer (the median is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--balancers", nargs="*", default=BALANCERS)
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = load_config("quickstart")
    data = build_dataset(cfg)
    block = batches(data, args.batch_size, args.steps, device)
    trainers = {name: make_trainer(name, args.batch_size, device, data.info) for name in args.balancers}
    for trainer in trainers.values():  # warm-up: allocator, kernels, lazy balancer state
        block_ms(trainer, block[:3], device)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            times[name].append(block_ms(trainer, block, device))
    report(times, args, device)


def report(times: dict[str, list[float]], args, device: torch.device) -> None:
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians.get("equal", next(iter(medians.values())))
    cpu = platform.processor() or platform.machine()
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    for name, ms in medians.items():
        print(json.dumps({"balancer": name, "ms_per_step": round(ms, 3), "ratio_to_equal": round(ms / base, 2),
                          "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
                          "device": str(device), "machine": machine, "threads": torch.get_num_threads(),
                          "torch": torch.__version__}))
    print(f"\n{'balancer':<12} {'ms/step':>8} {'x equal':>8}")
    for name, ms in medians.items():
        print(f"{name:<12} {ms:>8.2f} {ms / base:>8.2f}")


if __name__ == "__main__":
    main()
