"""Attribution speed: Integrated Gradients on CIFAR-10 images, and KernelSHAP/LIME for `--global` on UCI Adult.

`--data cifar10` (default) trains a short cifar10-fast run (1 epoch on `--limit` examples: the time does not depend
on how well the model learned), then times `explain_batch` on 100 test images: all path points of all images go
through the model in batches of 1,024 rows (no Python loop over steps or examples); an image whose completeness
error misses 1% is done again with twice the steps. Each time is the median of `--repeats` calls after one that
is not counted.

`--data adult` trains the `adult` experiment one epoch and times kernel_shap and lime on `--examples` test rows
(what `hydranet explain --global` computes) twice on the same rows, baseline and seed: batched over examples
(hydranet's methods) and through Captum's KernelShap / Lime, one example at a time (the implementation before;
registered here as captum_kernel_shap / captum_lime). It reports both times and how far the two global importances
(mean |attribution| per source column) are apart: Spearman's ρ of the column order and the largest difference
relative to the largest importance (the two draw different coalitions, so they agree up to sampling noise).

Prints one JSON line per measurement and a table. Usage (from the repository root; reads ../shared/data):

    python benchmarks/explain.py [--images 100] [--steps 50] [--threads 2] [--repeats 3]
    python benchmarks/explain.py --data adult [--examples 200] [--samples 200] [--repeats 3]
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
from scipy.stats import spearmanr

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.explain import Settings, explain_batch, method
from hydranet.explain.methods import Attribution, Request, spread
from hydranet.explain.tables import per_column, source_columns
from hydranet.randomness import Purpose, seed_global

from export import cpu_name  # benchmarks/ is the script's folder, so its sibling imports


@method("captum_kernel_shap", grouped=True)
def captum_kernel_shap(r: Request) -> Attribution:
    """kernel_shap before it was batched: Captum's KernelShap, one example (and its coalitions) at a time."""
    from captum.attr import KernelShap

    return captum_reference(KernelShap, r)


@method("captum_lime", grouped=True)
def captum_lime(r: Request) -> Attribution:
    """lime before it was batched: Captum's Lime, one example at a time."""
    from captum.attr import Lime

    return captum_reference(Lime, r)


def captum_reference(attribution, r: Request) -> Attribution:
    """A Captum perturbation method (KernelShap, Lime) as hydranet called it before batching, seeded as it was."""
    seed_global(r.seed, Purpose.EXPLAIN)
    values = attribution(r.scores).attribute(r.x, baselines=r.baseline, target=r.target, feature_mask=r.mask,
                                             n_samples=r.samples, perturbations_per_eval=min(r.samples, r.rows))
    return Attribution(spread(values, r.mask))


def timed(call, repeats: int):
    """The median seconds of `repeats` calls after one not counted, and the last call's result."""
    call()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def images(args: argparse.Namespace, tmp: Path) -> None:
    overrides = {"train.epochs": 1, "train.progress": False, "data.limit": args.limit}
    run = hn.Experiment("cifar10-fast", overrides).fit(tmp / "cifar")
    model = hn.load(run.dir)
    x = build_dataset(run.config).split("test")["x"][:args.images]
    settings = Settings(method=args.method, steps=args.steps)
    seconds, explained = timed(lambda: explain_batch(model.run, x, "label", settings), args.repeats)
    relative = explained.delta.abs() / explained.gap.abs().clamp_min(1e-12) if explained.delta is not None else None
    row = {"machine": cpu_name(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": args.threads,
           "method": args.method, "images": len(x), "steps": args.steps, "seconds": round(seconds, 3),
           "images_per_second": round(len(x) / seconds, 2),
           "max_steps_used": None if explained.steps is None else int(explained.steps.max()),
           "max_relative_delta": None if relative is None else float(relative.max()),
           "median_relative_delta": None if relative is None else float(relative.median())}
    print(json.dumps(row), flush=True)
    print(f"\n{'method':<22} {'images':>6} {'steps':>5} {'seconds':>8} {'images/s':>9} {'max |δ|/|Δf|':>13}")
    delta = "-" if relative is None else f"{row['max_relative_delta']:.2%}"
    print(f"{args.method:<22} {len(x):>6} {args.steps:>5} {seconds:>8.2f} {row['images_per_second']:>9.1f} {delta:>13}")


def tables(args: argparse.Namespace, tmp: Path) -> None:
    experiment = hn.Experiment("adult").config.model_dump(mode="json")
    experiment["train"] |= {"epochs": 1, "progress": False}
    model = hn.load(hn.Experiment(experiment).fit(tmp / "adult").dir)
    data = build_dataset(model.config)
    x = data.split("test")["x"][:args.examples]
    mean = data.split("train")["x"].mean(0, keepdim=True)
    columns, mask = source_columns(model.run.info)

    def importance(name: str):
        explained = explain_batch(model.run, x, "income", Settings(method=name, samples=args.samples), lambda: mean)
        return per_column(explained.values, mask, columns).abs().mean()

    rows = []
    for name in ("kernel_shap", "lime"):
        batched_s, batched = timed(lambda: importance(name), args.repeats)
        captum_s, captum = timed(lambda: importance(f"captum_{name}"), args.repeats)
        row = {"machine": cpu_name(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": args.threads,
               "method": name, "examples": len(x), "samples": args.samples, "columns": len(columns),
               "captum_seconds": round(captum_s, 3), "batched_seconds": round(batched_s, 3),
               "speedup": round(captum_s / batched_s, 1),
               "importance_spearman": round(float(spearmanr(batched, captum).statistic), 3),
               "importance_max_difference": round(float((batched - captum).abs().max() / captum.abs().max()), 3)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{'method':<12} {'examples':>8} {'samples':>7} {'Captum s':>9} {'batched s':>9} {'speed-up':>8} "
          f"{'ρ':>6} {'max diff':>8}")
    for r in rows:
        print(f"{r['method']:<12} {r['examples']:>8} {r['samples']:>7} {r['captum_seconds']:>9.2f} "
              f"{r['batched_seconds']:>9.2f} {r['speedup']:>7.1f}x {r['importance_spearman']:>6.3f} "
              f"{r['importance_max_difference']:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("cifar10", "adult"), default="cifar10")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--method", default="integrated_gradients", help="cifar10: the method timed")
    parser.add_argument("--limit", type=int, default=3000, help="CIFAR-10 examples the short training run reads")
    parser.add_argument("--examples", type=int, default=200, help="adult: test rows explained (--global's default)")
    parser.add_argument("--samples", type=int, default=200, help="adult: coalitions per example")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        (tables if args.data == "adult" else images)(args, Path(tmp))


if __name__ == "__main__":
    main()
