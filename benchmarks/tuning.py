"""Search on `quickstart`: TPE against random search with the same trial budget over several seeds (the best
validation value after each trial), and the compute that the median pruner saves TPE.

Three arms per seed, each a `hydranet tune` study with its own folder: tpe without pruning, random without
pruning, tpe with the median pruner. Early stopping (quickstart's, patience 8) stays on in all of them, so the
pruner's saving is on top of it. Writes tuning.json, tuning.md and tuning.png into --out and prints the table.

    python benchmarks/tuning.py --quick   # 4 trials, 1 seed, 2 epochs, 300 digits: proves it runs
    python benchmarks/tuning.py           # 30 trials, 3 seeds, quickstart's 20 epochs
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import hydranet as hn
from hydranet.files import write_figure, write_json, write_text

ARMS = (("tpe", "none"), ("random", "none"), ("tpe", "median"))
SPACE = {
    "train.optimizer.lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
    "train.optimizer.weight_decay": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "model.trunk.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "model.trunk.channels": {"type": "categorical", "choices": [[16, 32], [32, 64], [64, 128]]},
    "model.trunk.dense": {"type": "categorical", "choices": [[64], [128], [256]]},
    "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
}


def study(sampler: str, pruner: str, seed: int, args: argparse.Namespace) -> dict:
    """One arm at one seed: the best value after each trial, epochs trained and seconds."""
    # the per-step gradient diagnostics are no part of what is compared, and cost time: off, as in `bench mtl`
    overrides = {"seed": seed, "train.progress": False, "mtl.diagnostics_every": 0, "search": SPACE}
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.limit:
        overrides["data.limit"] = args.limit
    start = time.perf_counter()
    result = hn.Experiment("quickstart", overrides).tune(
        args.trials, sampler=sampler, pruner=pruner, objectives=args.objective,
        dir=Path(args.out) / "studies" / f"{sampler}-{pruner}-s{seed}", echo=lambda line: None)
    seconds = time.perf_counter() - start
    trials = sorted(result.study.trials, key=lambda t: t.number)
    sign = -1 if result.study.direction.name == "MINIMIZE" else 1
    best, curve = None, []
    for t in trials:  # pruned and failed trials spend budget without a value
        if t.state.name == "COMPLETE" and (best is None or sign * t.value > sign * best):
            best = t.value
        curve.append(best)
    return {"sampler": sampler, "pruner": pruner, "seed": seed, "best_after_trial": curve,
            "epochs": sum(t.user_attrs.get("epochs", 0) for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials), "seconds": round(seconds, 1)}


def summarize(rows: list[dict], trials: int) -> list[dict]:
    """Per arm: mean ± std over seeds of the best value at a quarter, half and all of the budget; epochs and time."""
    marks = sorted({max(1, trials // 4), max(1, trials // 2), trials})
    full = np.mean([r["epochs"] for r in rows if (r["sampler"], r["pruner"]) == ARMS[0]])
    table = []
    for sampler, pruner in ARMS:
        arm = [r for r in rows if (r["sampler"], r["pruner"]) == (sampler, pruner)]
        entry = {"arm": f"{sampler}, pruner {pruner}", "seeds": len(arm)}
        for mark in marks:
            values = [r["best_after_trial"][mark - 1] for r in arm if r["best_after_trial"][mark - 1] is not None]
            entry[f"best@{mark}"] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0) if values else None
        epochs = float(np.mean([r["epochs"] for r in arm]))
        entry.update(epochs=epochs, epochs_vs_tpe=epochs / full if full else None,
                     pruned=float(np.mean([r["pruned"] for r in arm])), seconds=float(np.mean([r["seconds"] for r in arm])))
        table.append(entry)
    return table


def markdown(table: list[dict], objective: str) -> str:
    marks = [k for k in table[0] if k.startswith("best@")]
    head = ["arm", *(f"best {objective} after {k[5:]} trials" for k in marks), "epochs trained", "vs tpe unpruned",
            "trials pruned", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in table:
        cells = [e["arm"], *("" if e[k] is None else f"{e[k][0]:.4f} ± {e[k][1]:.4f}" for k in marks),
                 f"{e['epochs']:.0f}", f"{100 * e['epochs_vs_tpe']:.0f}%", f"{e['pruned']:.1f}", f"{e['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], objective: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for sampler, pruner in ARMS:
        curves = [r["best_after_trial"] for r in rows if (r["sampler"], r["pruner"]) == (sampler, pruner)]
        mean = [np.mean([c[i] for c in curves if c[i] is not None]) if any(c[i] is not None for c in curves) else np.nan
                for i in range(len(curves[0]))]
        ax.plot(range(1, len(mean) + 1), mean, marker=".", label=f"{sampler}, pruner {pruner}")
    ax.set_xlabel("trials")
    ax.set_ylabel(f"best {objective} (mean over seeds)")
    ax.legend()
    fig.tight_layout()
    write_figure(path, fig, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 trials, 1 seed, 2 epochs, 300 digits")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override quickstart's 20 epochs")
    parser.add_argument("--limit", type=int, default=None, help="use only this many of the 1,797 digits")
    parser.add_argument("--objective", default="val/digit/loss", help="what the studies optimize (val/digit/accuracy saturates near 1 on quickstart)")
    parser.add_argument("--out", default="runs/bench-tuning")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.seeds, args.epochs, args.limit = 4, 1, 2, 300
    out = Path(args.out)
    if (out / "studies").exists():
        raise SystemExit(f"{out}/studies exists: choose another --out (a rerun would resume those studies)")
    rows = []
    for seed in range(args.seeds):
        for sampler, pruner in ARMS:
            rows.append(study(sampler, pruner, seed, args))
            print(json.dumps(rows[-1]), flush=True)
    table = summarize(rows, args.trials)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    command = "python benchmarks/tuning.py" + (" --quick" if args.quick else f" --trials {args.trials} --seeds {args.seeds}")
    write_json(out / "tuning.json", {"command": command, "machine": machine, "objective": args.objective,
                                     "rows": rows, "table": table})
    text = markdown(table, args.objective)
    write_text(out / "tuning.md", f"{text}\n\n`{command}` — {machine}\n")
    plot(rows, args.objective, out / "tuning.png")
    print(text)
    print(f"wrote {out / 'tuning.md'}, tuning.json, tuning.png")


if __name__ == "__main__":
    main()
