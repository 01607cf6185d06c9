"""Knowledge distillation: is a small student taught by a bigger teacher better than the same student trained alone?

One teacher (adult-mtl's own MLP, [128, 64] with dropout) is trained once; then for each seed the same narrow student
MLP is trained twice with the same recipe and seed: alone, and with `distill.teacher` set to the teacher (defaults
T = 4, α = 0.5). Test ROC-AUC and accuracy of both tasks (income, never_married); prints one JSON line per run, then
a table of mean ± standard deviation over the seeds.

    python benchmarks/distill.py                 # adult-mtl, student MLP [8], seeds 0,1,2
    python benchmarks/distill.py --hidden 4 --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

import hydranet as hn

ROOT = Path(__file__).resolve().parents[1]
ADULT = str(ROOT.parent / "shared" / "data" / "adult" / "adult.csv.gz")
TASKS = ("income", "never_married")
METRICS = ("roc_auc", "accuracy")


def train(overrides: dict, run_dir: Path, echo=print, **row) -> dict:
    """One adult-mtl run with `overrides`; its test metrics as one row (echoed as a JSON line)."""
    run = hn.Experiment("adult-mtl", {"data.path": ADULT, "train.progress": False, **overrides}).fit(run_dir)
    test = run.summary["test"]
    row.update({f"{task}/{metric}": round(test[task][metric], 4) for task in TASKS for metric in METRICS})
    row.update(params=run.summary["params"], seconds=run.summary["train_seconds"])
    echo(json.dumps(row))
    return row


def distill_benchmark(hidden: list[int], seeds: list[int], workdir: Path, echo=print) -> list[dict]:
    """The teacher's row, then the student alone and distilled for every seed."""
    teacher = workdir / "teacher"
    rows = [train({"seed": 0}, teacher, echo, model="teacher", seed=0)]
    student = {"model.trunk": {"name": "mlp", "hidden": hidden, "dropout": 0.0}}
    for seed in seeds:
        rows.append(train({**student, "seed": seed}, workdir / f"alone-{seed}", echo, model="alone", seed=seed))
        rows.append(train({**student, "seed": seed, "distill.teacher": str(teacher)}, workdir / f"distilled-{seed}",
                          echo, model="distilled", seed=seed))
    return rows


def table(rows: list[dict]) -> str:
    """Mean ± standard deviation over seeds of every metric, one line per model."""
    columns = [f"{task}/{metric}" for task in TASKS for metric in METRICS]
    lines = ["| model | params | seeds | " + " | ".join(columns) + " | seconds |", "|---" * (len(columns) + 4) + "|"]
    for model in ("teacher", "alone", "distilled"):
        mine = [r for r in rows if r["model"] == model]
        cells = []
        for column in [*columns, "seconds"]:
            values = [r[column] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}" if column != "seconds" else f"{statistics.mean(values):.0f}")
        lines.append(f"| {model} | {mine[0]['params']:,} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", default="8", help="the student MLP's hidden widths, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hidden, seeds = [int(h) for h in args.hidden.split(",")], [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = distill_benchmark(hidden, seeds, Path(tmp))
    print(f"\nadult-mtl, student mlp {hidden}: {platform.machine()} {platform.processor()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; test metrics, mean ± std over seeds {args.seeds}")
    print(table(rows))


if __name__ == "__main__":
    main()
