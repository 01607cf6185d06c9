"""Knowledge distillation: is a small student taught by a bigger teacher better than the same student trained alone?

For each seed, the experiment's own model is trained as the teacher, then a much smaller student twice with the same
recipe and seed: alone, and with `distill.teacher` set to that teacher (T and α as given, by default distill's
defaults 4 and 0.5). Test metrics of every task; prints one JSON line per run, then a table of
mean ± standard deviation over the seeds.

    python benchmarks/distill.py                           # adult-mtl: MLP [128, 64] teaches MLP [8], seeds 0,1,2
    python benchmarks/distill.py --experiment quickstart   # digits: CNN [32, 64] + dense 128 teaches CNN [4, 8]
    python benchmarks/distill.py --experiment seed-cnn     # CIFAR-10: the Keras tutorial CNN teaches CNN [8, 16] + dense 32
    python benchmarks/distill.py --experiment cifar10-fast # CIFAR-10: ResNet [32, 64, 128] teaches ResNet [8, 16, 32]
    python benchmarks/distill.py --seeds 0,1,2,3,4 --temperature 1 --alpha 0.9
    python benchmarks/distill.py --experiment seed-cnn --seeds 0 --set train.epochs=1   # overrides for every run
    python benchmarks/distill.py --experiment seed-cnn --set data.labels_fraction=0.1 --teacher-set data.labels_fraction=1.0
                                                           # students on a tenth of the labels, the teacher on all
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
DATA = ROOT.parent / "shared" / "data"
# experiment → (its overrides, the student's trunk)
SETUPS = {
    "adult-mtl": ({"data.path": str(DATA / "adult" / "adult.csv.gz")},
                  {"name": "mlp", "hidden": [8], "dropout": 0.0}),
    "quickstart": ({}, {"name": "cnn", "channels": [4, 8], "padding": "same"}),
    # CIFAR-10: seed-cnn's Keras CNN (Conv32-Conv64-Dense64, 168k parameters, 8.1 MFLOPs per image) teaches a CNN of
    # the same shape at a quarter of the channels and half the dense width (20k parameters, 0.8 MFLOPs), with
    # seed-cnn's own recipe on all 50,000 train images (about 2.5 minutes a teacher on one core of a bf16 CPU;
    # `--set data.labels_fraction=0.1` for the earlier budget of a tenth of them, where the teacher overfits)
    "seed-cnn": ({"data.path": str(DATA / "cifar10-jpg.tar.gz")},
                 {"name": "cnn", "channels": [8, 16], "kernel_size": 3, "padding": "valid", "dense": [32]}),
    # CIFAR-10: cifar10-fast's BatchNorm ResNet (channels [32, 64, 128]) teaches the same ResNet at a quarter of the
    # channels; the recipe is the experiment's own (15 epochs on all 50,000 images, `--set train.epochs=N` for less)
    "cifar10-fast": ({"data.path": str(DATA / "cifar10-jpg.tar.gz")},
                     {"name": "resnet", "channels": [8, 16, 32], "blocks": [1, 1, 1]}),
}
METRICS = ("roc_auc", "accuracy", "r2")  # those a task reports, in this order


def train(experiment: str, overrides: dict, run_dir: Path, echo=print, **row) -> dict:
    """One run of `experiment` with `overrides`; its test metrics as one row (echoed as a JSON line)."""
    run = hn.Experiment(experiment, {"train.progress": False, **SETUPS[experiment][0], **overrides}).fit(run_dir)
    for task, metrics in run.summary["test"].items():
        row.update({f"{task}/{metric}": round(metrics[metric], 4) for metric in METRICS if metric in metrics})
    row.update(params=run.summary["params"], seconds=run.summary["train_seconds"])
    echo(json.dumps(row))
    return row


def distill_benchmark(experiment: str, seeds: list[int], distill: dict, workdir: Path, echo=print,
                      overrides: dict | None = None, teacher_overrides: dict | None = None) -> list[dict]:
    """Per seed: the teacher, the student alone and the student distilled (with `distill`'s temperature and alpha);
    `overrides` apply to all three (after the setup's own), `teacher_overrides` to the teacher after them (a
    teacher trained on all the labels, students on a fraction: `data.labels_fraction`).

    The teacher has the student's seed, hence its split: a teacher of another seed would have trained on some of
    the student's test examples."""
    rows = []
    common = dict(overrides or {})
    student = {**common, "model.trunk": SETUPS[experiment][1]}
    for seed in seeds:
        teacher = workdir / f"teacher-{seed}"
        rows.append(train(experiment, {**common, **(teacher_overrides or {}), "seed": seed}, teacher, echo,
                          model="teacher", seed=seed))
        rows.append(train(experiment, {**student, "seed": seed}, workdir / f"alone-{seed}", echo, model="alone", seed=seed))
        rows.append(train(experiment, {**student, "seed": seed, "distill": {"teacher": str(teacher), **distill}},
                          workdir / f"distilled-{seed}", echo, model="distilled", seed=seed))
    return rows


def table(rows: list[dict]) -> str:
    """Mean ± standard deviation over seeds of every metric, one line per model."""
    columns = [key for key in rows[0] if "/" in key]
    lines = ["| model | params | seeds | " + " | ".join(columns) + " | seconds |", "|---" * (len(columns) + 4) + "|"]
    for model in ("teacher", "alone", "distilled"):
        mine = [r for r in rows if r["model"] == model]
        cells = []
        for column in columns:
            values = [r[column] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
        seconds = statistics.mean(r["seconds"] for r in mine)
        lines.append(f"| {model} | {mine[0]['params']:,} | {len(mine)} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", choices=sorted(SETUPS), default="adult-mtl")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temperature", type=float, default=4.0, help="distill.temperature")
    parser.add_argument("--alpha", type=float, default=0.5, help="distill.alpha")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (after the setup's), e.g. train.epochs=2 data.limit=5000")
    parser.add_argument("--teacher-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for the teacher only (after --set), e.g. data.labels_fraction=1.0")
    args = parser.parse_args()
    for flag, items in (("--set", args.set), ("--teacher-set", args.teacher_set)):
        if any("=" not in item for item in items):
            parser.error(f"{flag}: expected KEY=VALUE items, got {' '.join(items)}")
    overrides = dict(item.split("=", 1) for item in args.set)
    teacher_overrides = dict(item.split("=", 1) for item in args.teacher_set)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"temperature": args.temperature, "alpha": args.alpha}
    with tempfile.TemporaryDirectory() as tmp:
        rows = distill_benchmark(args.experiment, [int(s) for s in args.seeds.split(",")], options, Path(tmp),
                                 overrides=overrides, teacher_overrides=teacher_overrides)
    settings = {**SETUPS[args.experiment][0], **overrides}
    print(f"\n{args.experiment} ({settings}; teacher: {teacher_overrides or 'the same'}), "
          f"student {SETUPS[args.experiment][1]}, T = {args.temperature:g}, "
          f"α = {args.alpha:g}: "
          f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; test metrics, "
          f"mean ± std over seeds {args.seeds}")
    print(table(rows))


if __name__ == "__main__":
    main()
