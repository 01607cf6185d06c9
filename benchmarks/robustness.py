"""CIFAR-10 robustness: standard training vs fgsm_rs vs pgd vs trades with the same small ResNet.

Each method trains the same ResNet on CIFAR-10 (image_folder source on the JPEG archive) and is scored on
`--eval` test images drawn at random (seeded by the run's seed; not the first ones: the test folder is sorted
by class): clean accuracy, PGD-20 and APGD-100 (cross-entropy), both L∞ eps 8/255 on *the same* examples, so
the two columns compare image by image. APGD is the stronger attack; the table counts the images PGD-20
fooled and APGD did not, and flags a model whose APGD robust accuracy exceeds PGD-20's beyond noise (the
sweep's tolerance: 1 point or 2 images), a sign of a broken attack or of gradient masking. With `--sweep N`
(default: 300 at full size, 100 for --quick; 0 turns it off) each model also gets `hydranet attack --sweep`
on N test images drawn the same way (the first N of the same permutation: a subset of the `--eval` images;
eps 0–16/255, the steps, restarts and reach checks), and the table shows its gradient-masking warnings.
`--seeds N` trains and scores every method with seeds `--seed`, `--seed`+1, …: one JSON line per method and
seed, then one summary line per method (mean, std and the per-seed values), and a Markdown table of
mean ± std. `--keep DIR` keeps the run directories (DIR/METHOD, or DIR/METHOD-seedS with several seeds) for
later attacks; `--rescore DIR` scores kept runs again without training. `--precision` is the training
precision: `auto` (default) trains in bf16 only where the CPU computes it natively (AVX-512 BF16, AMX), else
fp32; attacks and scoring always run in fp32. `--threads N` sets torch's threads (1 is faster on cores other
processes share). Sized for 2 CPU cores (docs/robustness.md has the measured
tables):

    python benchmarks/robustness.py --quick   # 2,400 of the 60,000 images (~1,960 train), 3 epochs, 200 attacked
    python benchmarks/robustness.py --quick --seeds 3   # the same for seeds 0, 1, 2: mean ± std
    python benchmarks/robustness.py --keep runs   # all 49,000 train images, 3 epochs, 1,000 attacked (52 min with bf16 before APGD was added)
    python benchmarks/robustness.py --rescore runs   # score the kept runs again (PGD-20, APGD-100 and sweep)
    python benchmarks/robustness.py --limit 300 --epochs 1 --eval 16 --sweep 16   # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from torch import Tensor

import hydranet as hn
from hydranet.robust import sweep_run
from hydranet.robust.attack_run import adversarial_inputs, correct, load_split
from hydranet.robust.sweep import tolerance
from hydranet.train.evaluation import predict_batches
from hydranet.train.lifecycle import apply_process_settings
from hydranet.train.run import Run, load_run

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("none", "fgsm_rs", "pgd", "trades")
TASK = "label"  # the benchmark's one task: the CIFAR-10 class
EPS = 8 / 255
# column → (attack, steps): both attacks run on the same examples, so the columns compare image by image
MATCHED = {"pgd20": ("pgd", 20), "apgd100": ("apgd", 100)}
# epochs, images drawn from the 60,000 (None: all; the test split's 10,000 stay test, 2% of train is val),
# test images attacked. Cost is about proportional to train images × epochs (docs/robustness.md).
SIZES = {"quick": {"epochs": 3, "limit": 2400, "eval": 200, "sweep": 100},
         "full": {"epochs": 3, "limit": None, "eval": 1000, "sweep": 300}}
SUMMARIZED = ("clean_accuracy", "pgd20_accuracy", "apgd100_accuracy", "pgd20_fooled_apgd100_not", "train_seconds")


def experiment(data: str, epochs: int, limit: int | None, method: str, eps: float, seed: int,
               precision: str = "auto", threads: int | None = None) -> dict:
    """The shared recipe; only `adversarial.method` changes between rows (and `seed` between repeats)."""
    return {
        "name": f"robust-{method}", "seed": seed,
        "data": {"source": "image_folder", "path": data, "limit": limit, "split": {"val": 0.02},
                 "augment": {"crop_padding": 4, "flip": True}},
        "tasks": {TASK: {"kind": "classification"}},
        "model": {"trunk": {"name": "resnet", "channels": [32, 64, 128], "blocks": [1, 1, 1]}},
        "train": {"epochs": epochs, "batch_size": 128, "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0005},
                  "schedule": {"name": "onecycle", "warmup": 0.2}, "precision": precision, "channels_last": True, "progress": False, "threads": threads},
        # pgd/trades: 3 attack steps per batch keep training affordable on a CPU (Wong et al. show few steps
        # suffice); no eps warm-up (the first table ran with warmup_epochs 1, which reaches full eps at once)
        "adversarial": {"method": {"name": method, **({} if method in ("none", "fgsm_rs") else {"steps": 3})}, "eps": eps, "warmup_epochs": 0,
                        "guard_examples": 200, "guard_steps": 5, "guard_every": 1 if method != "none" else 0},
    }


def run_dir(base: str, method: str, seed: int, seeds: int) -> Path:
    """Where --keep puts and --rescore finds a run: BASE/METHOD with one seed (as before --seeds), else BASE/METHOD-seedS."""
    return Path(base) / (method if seeds == 1 else f"{method}-seed{seed}")


def run(method: str, seed: int, args: argparse.Namespace) -> dict:
    """Train `method`'s model with `seed` (or, with --rescore, load the kept one) and score it."""
    if args.rescore:
        return score(load_run(run_dir(args.rescore, method, seed, args.seeds)), method, args)
    cfg = experiment(args.data, args.epochs, args.limit, method, EPS, seed, args.precision, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = run_dir(args.keep, method, seed, args.seeds) if args.keep else Path(tmp) / "run"
        return score(hn.Experiment(cfg).fit(path), method, args)


def matched_outcomes(result: Run, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per example of `batch`, (N,) bool: right on the clean image, after PGD-20, after APGD-100.

    Every attack gets the one `batch`, so a difference between the columns is the attacks', not the draw's.
    Random starts are seeded by the run's seed."""
    size = result.config.train.eval_batch_size

    def right(x: Tensor) -> Tensor:
        return correct(result, TASK, predict_batches(result.model, x, size)[TASK], batch[TASK])[0].cpu()

    outcomes = {"clean": right(batch["x"])}
    for column, (attack, steps) in MATCHED.items():
        x_adv = adversarial_inputs(result, batch, attack, EPS, "linf", steps, 1, None, None, result.config.seed)
        outcomes[column] = right(x_adv)
    return outcomes


def compare(outcomes: dict[str, Tensor]) -> dict:
    """Accuracies and the paired counts of `matched_outcomes`; `apgd_weaker` when APGD leaves robust accuracy
    above PGD-20's by more than the sweep's noise tolerance (APGD is the stronger attack on the same images)."""
    n = len(outcomes["clean"])
    counts = {column: int(right.sum()) for column, right in outcomes.items()}  # images right
    accuracy = {column: round(count / n, 4) for column, count in counts.items()}
    fooled = {column: outcomes["clean"] & ~outcomes[column] for column in MATCHED}
    return {
        "eval_examples": n, "clean_accuracy": accuracy["clean"],
        "pgd20_accuracy": accuracy["pgd20"], "apgd100_accuracy": accuracy["apgd100"],
        "pgd20_fooled_apgd100_not": int((fooled["pgd20"] & ~fooled["apgd100"]).sum()),
        "apgd100_fooled_pgd20_not": int((fooled["apgd100"] & ~fooled["pgd20"]).sum()),
        "apgd_weaker": counts["apgd100"] - counts["pgd20"] > tolerance(n) * n,  # in images: no rounding at the edge
    }


def score(result: Run, method: str, args: argparse.Namespace) -> dict:
    """Clean, PGD-20 and APGD-100 accuracy on the same `--eval` test images, and the sweep on `--sweep` of them."""
    apply_process_settings(result.config)  # the run's threads, as `hydranet attack` sets them
    if args.threads:
        torch.set_num_threads(args.threads)  # also for runs kept without it (--rescore)
    batch = load_split(result, "test", args.eval)
    row = {
        "benchmark": "robustness", "method": method, "seed": result.config.seed, "epochs": result.config.train.epochs,
        "train_limit": result.config.data.limit, "precision": result.summary.get("precision"), "eps": round(EPS, 5),
        **compare(matched_outcomes(result, batch)),
        "train_seconds": result.summary["train_seconds"],
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    sweep = sweep_run(result, "pgd", limit=args.sweep, seed=result.config.seed) if args.sweep else None
    if sweep:
        row["sweep"] = {"examples": sweep["examples"], "seconds": sweep["seconds"], "warnings": sweep["warnings"],
                        "robust_accuracy": {f"{p['eps'] * 255:.3g}/255": round(p["robust_accuracy"], 4) for p in sweep["points"]},
                        "checks": {name: round(c["robust_accuracy"], 4) for name, c in sweep["checks"].items()}}
    return row


def summarize(method: str, rows: list[dict]) -> dict:
    """One method across seeds: mean, sample std (None for one seed) and the per-seed values of each number."""
    summary = {"benchmark": "robustness-summary", "method": method, "seeds": [r["seed"] for r in rows],
               "apgd_weaker_seeds": [r["seed"] for r in rows if r["apgd_weaker"]]}
    for key in SUMMARIZED:
        values = [r[key] for r in rows]
        summary[key] = {"mean": round(statistics.fmean(values), 4),
                        "std": round(statistics.stdev(values), 4) if len(values) > 1 else None, "values": values}
    return summary


def spread(stat: dict, digits: int = 3) -> str:
    """'mean ± std', or the one value of a single seed."""
    mean = f"{stat['mean']:.{digits}f}"
    return mean if stat["std"] is None else f"{mean} ± {stat['std']:.{digits}f}"


def table(rows: list[dict], summaries: list[dict], args: argparse.Namespace) -> None:
    """The Markdown table: mean ± std across seeds, the paired counts per seed, the sweep's mean curve."""
    seeds = ", ".join(str(s) for s in summaries[0]["seeds"])
    print(f"\n{rows[0]['machine']}; {args.epochs} epochs; precision {rows[0]['precision']}; seeds {seeds}; "
          f"PGD-20 and APGD-100 (CE) L∞ eps 8/255 on the same {rows[0]['eval_examples']} test images per model"
          + ("; mean ± std across seeds" if len(summaries[0]["seeds"]) > 1 else "; one run"))
    print("| method | clean accuracy | PGD-20 accuracy | APGD-100 accuracy | PGD-20 fooled, APGD not (per seed) "
          "| APGD weaker beyond noise | train seconds | sweep: robust accuracy at eps 0, 1, 2, 4, 8, 16 /255 | sweep warnings |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        runs = [r for r in rows if r["method"] == s["method"]]
        sweeps = [r["sweep"] for r in runs if "sweep" in r]
        curve = " · ".join(f"{statistics.fmean(v):.2f}" for v in zip(*(w["robust_accuracy"].values() for w in sweeps))) or "—"
        warnings = "; ".join(f"seed {r['seed']}: {w}" for r in runs for w in r.get("sweep", {}).get("warnings", []))
        weaker = ", ".join(f"**seed {seed}**" for seed in s["apgd_weaker_seeds"]) or "no"
        print(f"| {s['method']} | {spread(s['clean_accuracy'])} | {spread(s['pgd20_accuracy'])} | {spread(s['apgd100_accuracy'])} "
              f"| {' / '.join(map(str, s['pgd20_fooled_apgd100_not']['values']))} | {weaker} | {spread(s['train_seconds'], 0)} "
              f"| {curve} | {(warnings or 'none') if sweeps else '—'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,400 of the 60,000 images (~1,960 train), 3 epochs, 200 attacked test images")
    parser.add_argument("--epochs", type=int, help="override the size's epochs (full and quick: 3)")
    parser.add_argument("--limit", type=int, help="override the images drawn from the 60,000 (full: all, quick: 2,400)")
    parser.add_argument("--eval", type=int, help="override the test images attacked by PGD-20 and APGD-100 (full: 1,000, quick: 200)")
    parser.add_argument("--sweep", type=int, help="test images for the gradient-masking sweep per model (full: 300, quick: 100; 0: off)")
    parser.add_argument("--keep", help="keep each method's run directory under this folder")
    parser.add_argument("--rescore", help="do not train: score the runs kept by an earlier --keep in this folder")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=1, help="train and score each method with this many seeds: --seed, --seed+1, …")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="training precision (auto: bf16 where the CPU computes it natively, else fp32)")
    parser.add_argument("--threads", type=int, help="torch threads for training and attacks (default: torch's; "
                        "1 is faster when other processes share the cores)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds: expected 1 or more")
    for key, value in SIZES["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    methods, rows = args.methods.split(","), []
    for seed in range(args.seed, args.seed + args.seeds):  # seed by seed: an interrupted run keeps whole seeds
        for method in methods:
            rows.append(run(method, seed, args))
            print(json.dumps(rows[-1]), flush=True)
    summaries = [summarize(m, [r for r in rows if r["method"] == m]) for m in methods]
    for summary in summaries:
        print(json.dumps(summary), flush=True)
    table(rows, summaries, args)


if __name__ == "__main__":
    main()
