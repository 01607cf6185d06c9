"""Does bf16 hold accuracy? Every built-in experiment the trainer runs, fp32 against bf16 autocast, same seeds.

The evidence behind the default `train.precision` (docs/training.md, *Speed*): each experiment trains on a short
budget (`BUDGETS`: the shipped config, cut where a full run takes long) once per seed and precision, in its own
process with one thread (`--jobs` at a time), and the test value of every task's main metric (the kind's
`main_metric`; R² as well for regression) is compared. A task holds when the bf16 mean is within the larger of
the seed-to-seed spread of fp32 (max − min over the seeds) and a tolerance: 1 point for metrics in [0, 1]
(accuracy, F-score, mIoU), 5% relative for errors in the target's units (MAE, mean angle). The meta-learning
experiments (omniglot, sinusoid, cifar-fewshot) are not here: their loop does not read `train.precision`.

Accuracy does not depend on machine load, so a busy machine measures it as well as an idle one; the seconds it
prints do depend on load (and on whether the CPU computes bf16 natively: on AVX2 alone it is emulated, slower).
Prints one JSON line per experiment and a Markdown table.

    python benchmarks/precision.py [--seeds 0 1] [--jobs 2] [--experiments quickstart adult ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Overrides that keep each run to a few minutes even under emulated bf16; {} is the experiment as shipped.
BUDGETS: dict[str, dict] = {
    "quickstart": {},
    "multidigits": {},
    "breast-cancer": {},
    "adult": {"train.epochs": 5},
    "adult-mtl": {"train.epochs": 5},
    "waves": {},
    "scenes-mtl": {"data.limit": 1000},
    "ag-news": {"train.epochs": 2},
    "seed-cnn": {"data.limit": 8000, "train.epochs": 2},
    "cifar10-fast": {"data.limit": 4000, "train.epochs": 3},
}
UNIT_INTERVAL_TOLERANCE = 0.01  # one point of accuracy, F-score or mIoU
RELATIVE_TOLERANCE = 0.05  # of an error in the target's own units


def train_once(experiment: str, precision: str, seed: int) -> dict:
    """One run in this (worker) process: {task: {metric: test value}} and its training seconds."""
    import hydranet as hn

    overrides = {**BUDGETS[experiment], "seed": seed, "train.precision": precision, "train.threads": 1,
                 "train.progress": False}
    with tempfile.TemporaryDirectory() as tmp:
        run = hn.Experiment(experiment, overrides).fit(Path(tmp) / "run")
    metrics = {}
    for name, task in run.tasks.items():
        keep = [task.spec.main_metric] + (["r2"] if task.kind == "regression" else [])
        metrics[name] = {m: run.summary["test"][name][m] for m in keep}
    return {"metrics": metrics, "seconds": run.summary["train_seconds"], "ran": run.summary["precision"]}


def judge(metric: str, fp32: list[float], bf16: list[float], lower_is_better: bool) -> dict:
    """Mean of each side, their difference (positive: bf16 better), fp32's seed spread and whether bf16 holds."""
    a, b = statistics.mean(fp32), statistics.mean(bf16)
    better = (a - b) if lower_is_better else (b - a)
    spread = max(fp32) - min(fp32)
    tolerance = RELATIVE_TOLERANCE * abs(a) if lower_is_better else UNIT_INTERVAL_TOLERANCE
    return {"metric": metric, "fp32": round(a, 4), "bf16": round(b, 4), "bf16_better_by": round(better, 4),
            "fp32_seed_spread": round(spread, 4), "holds": better >= -max(spread, tolerance)}


def summarize(experiment: str, seeds: list[int], runs: dict[tuple[str, int], dict]) -> dict:
    from hydranet.kinds import LOWER_IS_BETTER

    first = runs["fp32", seeds[0]]["metrics"]
    tasks = {}
    for task, values in first.items():
        tasks[task] = [judge(metric, [runs["fp32", s]["metrics"][task][metric] for s in seeds],
                             [runs["bf16", s]["metrics"][task][metric] for s in seeds], metric in LOWER_IS_BETTER)
                       for metric in values]
    seconds = {p: round(statistics.mean(runs[p, s]["seconds"] for s in seeds), 1) for p in ("fp32", "bf16")}
    return {"benchmark": "precision", "experiment": experiment, "budget": BUDGETS[experiment], "seeds": seeds,
            "tasks": tasks, "train_seconds": seconds, "bf16_ran": runs["bf16", seeds[0]]["ran"],
            "holds": all(j["holds"] for judged in tasks.values() for j in judged)}


def table(rows: list[dict]) -> str:
    lines = ["| experiment (budget) | task: test metric | fp32 | bf16 | fp32 seed spread | holds |", "|---|---|---|---|---|---|"]
    for row in rows:
        budget = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in row["budget"].items()) or "as shipped"
        for task, judged in row["tasks"].items():
            for j in judged:
                lines.append(f"| {row['experiment']} ({budget}) | {task}: {j['metric']} | {j['fp32']} | {j['bf16']} "
                             f"| {j['fp32_seed_spread']} | {'yes' if j['holds'] else '**no**'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args()
    jobs = [(e, p, s) for e in args.experiments for s in args.seeds for p in ("fp32", "bf16")]
    # spawn: each worker starts its own torch, so one thread per run and no state shared between runs
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {job: pool.submit(train_once, *job) for job in jobs}
        rows = []
        for experiment in args.experiments:
            runs = {(p, s): futures[experiment, p, s].result() for s in args.seeds for p in ("fp32", "bf16")}
            rows.append(summarize(experiment, args.seeds, runs))
            print(json.dumps(rows[-1]), flush=True)
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
