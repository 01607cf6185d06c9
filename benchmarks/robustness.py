"""CIFAR-10 robustness: standard training vs fgsm_rs vs pgd vs trades with the same small ResNet.

Each method trains the same ResNet on CIFAR-10 (image_folder source on the JPEG archive) and is scored on
clean test accuracy and PGD-20 L∞ robust accuracy at eps 8/255 on `--eval` test images drawn at random
(seeded; not the first ones: the test folder is sorted by class). With `--sweep N` (default: 300 at full
size, 100 for --quick; 0 turns it off) each model also gets `hydranet attack --sweep` on N test images
drawn the same way (eps 0–16/255, the steps, restarts and reach checks), and the table shows its
gradient-masking warnings, so the robust numbers are checked, not only reported. `--keep DIR` keeps the
run directories (checkpoints, metrics, attack JSON) for later attacks; `--rescore DIR` scores kept runs
again without training.
Prints one JSON line per method and a Markdown table. Sized for 2 CPU cores (docs/robustness.md has the
measured table):

    python benchmarks/robustness.py --quick   # 2,400 of the 60,000 images (~1,960 train), 3 epochs, 200 attacked: 2.5 min before the sweep was added
    python benchmarks/robustness.py --keep runs   # all 49,000 train images, 3 epochs, 1,000 attacked: 52 min measured
    python benchmarks/robustness.py --rescore runs   # score the kept runs again (PGD-20 and sweep): ~7 min
    python benchmarks/robustness.py --limit 300 --epochs 1 --eval 16 --sweep 16   # smoke test: under a minute
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

import hydranet as hn
from hydranet.robust import attack_run, sweep_run
from hydranet.train.run import load_run

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("none", "fgsm_rs", "pgd", "trades")
# epochs, images drawn from the 60,000 (None: all; the test split's 10,000 stay test, 2% of train is val),
# test images attacked. Cost is about proportional to train images × epochs (docs/robustness.md).
EPS = 8 / 255
SIZES = {"quick": {"epochs": 3, "limit": 2400, "eval": 200, "sweep": 100},
         "full": {"epochs": 3, "limit": None, "eval": 1000, "sweep": 300}}


def experiment(data: str, epochs: int, limit: int | None, method: str, eps: float, seed: int) -> dict:
    """The shared recipe; only `adversarial.method` changes between rows."""
    return {
        "name": f"robust-{method}", "seed": seed,
        "data": {"source": "image_folder", "path": data, "limit": limit, "split": {"val": 0.02},
                 "augment": {"crop_padding": 4, "flip": True}},
        "tasks": {"label": {"kind": "classification"}},
        "model": {"trunk": {"name": "resnet", "channels": [32, 64, 128], "blocks": [1, 1, 1]}},
        "train": {"epochs": epochs, "batch_size": 128, "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0005},
                  "schedule": {"name": "onecycle", "warmup": 0.2}, "precision": "bf16", "channels_last": True, "progress": False},
        # pgd/trades: 3 attack steps per batch keep training affordable on a CPU (Wong et al. show few steps
        # suffice); no eps warm-up (the first table ran with warmup_epochs 1, which reaches full eps at once)
        "adversarial": {"method": {"name": method, **({} if method in ("none", "fgsm_rs") else {"steps": 3})}, "eps": eps, "warmup_epochs": 0,
                        "guard_examples": 200, "guard_steps": 5, "guard_every": 1 if method != "none" else 0},
    }


def run(method: str, args: argparse.Namespace) -> dict:
    """Train `method`'s model (or, with --rescore, load the kept one) and score it."""
    if args.rescore:
        return score(load_run(Path(args.rescore) / method), method, args, write=True)
    cfg = experiment(args.data, args.epochs, args.limit, method, EPS, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        result = hn.Experiment(cfg).fit(Path(args.keep) / method if args.keep else Path(tmp) / "run")
        return score(result, method, args, write=bool(args.keep))


def score(result, method: str, args: argparse.Namespace, write: bool) -> dict:
    """Clean and PGD-20 accuracy on `--eval` test images drawn at random, and the sweep on `--sweep` of them."""
    attack = attack_run(result, "pgd", EPS, steps=20, limit=args.eval, write=write)
    sweep = sweep_run(result, "pgd", limit=args.sweep) if args.sweep else None
    row = {
        "benchmark": "robustness", "method": method, "epochs": result.config.train.epochs,
        "train_limit": result.config.data.limit, "eval_examples": attack["examples"], "eps": round(EPS, 5),
        "clean_accuracy": round(attack["clean"]["label"]["accuracy"], 4),
        "pgd20_accuracy": round(attack["robust"]["label"]["accuracy"], 4),
        "train_seconds": result.summary["train_seconds"],
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    if sweep:
        row["sweep"] = {"examples": sweep["examples"], "seconds": sweep["seconds"], "warnings": sweep["warnings"],
                        "robust_accuracy": {f"{p['eps'] * 255:.3g}/255": round(p["robust_accuracy"], 4) for p in sweep["points"]},
                        "checks": {name: round(c["robust_accuracy"], 4) for name, c in sweep["checks"].items()}}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,400 of the 60,000 images (~1,960 train), 3 epochs, 200 attacked test images")
    parser.add_argument("--epochs", type=int, help="override the size's epochs (full and quick: 3)")
    parser.add_argument("--limit", type=int, help="override the images drawn from the 60,000 (full: all, quick: 2,400)")
    parser.add_argument("--eval", type=int, help="override the test images attacked (full: 1,000, quick: 200)")
    parser.add_argument("--sweep", type=int, help="test images for the gradient-masking sweep per model (full: 300, quick: 100; 0: off)")
    parser.add_argument("--keep", help="keep each method's run directory under this folder")
    parser.add_argument("--rescore", help="do not train: score the runs kept by an earlier --keep in this folder")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for key, value in SIZES["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    rows = []
    for method in args.methods.split(","):
        rows.append(run(method, args))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{rows[0]['machine']}; {args.epochs} epochs; PGD-20 L∞ eps 8/255 on {rows[0]['eval_examples']} test images")
    print("| method | clean accuracy | PGD-20 accuracy | train seconds | sweep: robust accuracy at eps 0, 1, 2, 4, 8, 16 /255 | sweep warnings |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sweep = r.get("sweep")
        curve = " · ".join(f"{v:.2f}" for v in sweep["robust_accuracy"].values()) if sweep else "—"
        warnings = ("; ".join(sweep["warnings"]) or "none") if sweep else "—"
        print(f"| {r['method']} | {r['clean_accuracy']} | {r['pgd20_accuracy']} | {r['train_seconds']} | {curve} | {warnings} |")


if __name__ == "__main__":
    main()
