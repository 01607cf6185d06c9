"""Attribution speed: Integrated Gradients (50 steps) for 100 CIFAR-10 test images, batched through Captum.

It trains a short cifar10-fast run (1 epoch on `--limit` examples: the time does not depend on how well the model
learned), then times `explain_batch` on 100 test images: all 50 path points of all images go through the model in
batches of 1,024 rows (no Python loop over steps or examples). Each time is the median of `--repeats` calls after
one that is not counted. Prints one JSON line and a table. Usage (from the repository root; reads ../shared/data):

    python benchmarks/explain.py [--images 100] [--steps 50] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.explain import Settings, explain_batch

from export import cpu_name  # benchmarks/ is the script's folder, so its sibling imports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--limit", type=int, default=3000, help="CIFAR-10 examples the short training run reads")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"train.epochs": 1, "train.progress": False, "data.limit": args.limit}
        run = hn.Experiment("cifar10-fast", overrides).fit(Path(tmp) / "cifar")
        model = hn.load(run.dir)
        x = build_dataset(run.config).split("test")["x"][:args.images]
        settings = Settings(method=args.method, steps=args.steps)
        explain_batch(model.run, x, "label", settings)  # not counted: first-call allocations
        times, explained = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            explained = explain_batch(model.run, x, "label", settings)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    relative = explained.delta.abs() / explained.gap.abs().clamp_min(1e-12) if explained.delta is not None else None
    row = {"machine": cpu_name(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": args.threads,
           "method": args.method, "images": len(x), "steps": args.steps, "seconds": round(seconds, 3),
           "images_per_second": round(len(x) / seconds, 2),
           "max_relative_delta": None if relative is None else float(relative.max()),
           "median_relative_delta": None if relative is None else float(relative.median())}
    print(json.dumps(row), flush=True)
    print(f"\n{'method':<22} {'images':>6} {'steps':>5} {'seconds':>8} {'images/s':>9} {'max |δ|/|Δf|':>13}")
    delta = "-" if relative is None else f"{row['max_relative_delta']:.2%}"
    print(f"{args.method:<22} {len(x):>6} {args.steps:>5} {seconds:>8.2f} {row['images_per_second']:>9.1f} {delta:>13}")


if __name__ == "__main__":
    main()
