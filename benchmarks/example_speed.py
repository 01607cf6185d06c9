"""examples/seed_cnn.py (the Keras tutorial as a user writes it in hydranet) against the built-in `seed-cnn`.

Both run as a user runs them, each in its own process with the defaults a user gets: `python
examples/seed_cnn.py` and `hydranet train seed-cnn`, on the same images (`--limit`, `--epochs`), alternately
(example, built-in, example, built-in, …) so both see the machine in the same state in turn. Speed is training
images per second of each run's median epoch (`seconds` in metrics.jsonl: the epoch's steps and its
validation, none here; not data loading, not the final test), the first epoch left out as warm-up when there
are two or more; the ratio is example / built-in, 1.0 when the example is as fast. Prints one JSON line and a table; state the machine's load average with it.

    python benchmarks/example_speed.py [--epochs 3] [--limit 10000] [--repeats 3] [--threads N]

`--threads N` sets OMP_NUM_THREADS for both (torch's intra-op threads): on a busy machine two threads wait for
each other at every operation, and one each keeps the comparison about the two programs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_side(side: str, args: argparse.Namespace, folder: Path) -> dict:
    """One training in a fresh process from `folder`; its epoch seconds, test accuracy and precision."""
    common = ["--epochs", str(args.epochs), "--data", args.data] + (["--limit", str(args.limit)] if args.limit else [])
    if side == "example":
        cmd = [sys.executable, str(ROOT / "examples" / "seed_cnn.py"), *common]
    else:
        sets = [f"data.path={args.data}", f"train.epochs={args.epochs}"] + ([f"data.limit={args.limit}"] if args.limit else [])
        cmd = [sys.executable, "-m", "hydranet.cli", "train", "seed-cnn", "--run-dir", "run", "-q"]
        cmd += [arg for s in sets for arg in ("--set", s)]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
    run_dir = folder / (re.search(r"run in (\S+)\)", done.stdout).group(1) if side == "example" else "run")
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"epoch_seconds": [r["seconds"] for r in history], "test_accuracy": summary["test"]["label"]["accuracy"], "precision": summary["precision"]}


def train_images(args: argparse.Namespace) -> int:
    """Size of the train split both sides draw (the same config, seed and limit)."""
    import hydranet as hn
    from hydranet.data import build_dataset

    config = hn.Experiment("seed-cnn", {"data.path": args.data, "data.limit": args.limit or None}).config
    return len(build_dataset(config).index["train"])


def img_per_s(runs: list[dict], images: int) -> float:
    seconds = [s for r in runs for s in (r["epoch_seconds"][1:] or r["epoch_seconds"])]
    return round(images / statistics.median(seconds), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10000, help="images (train + test) drawn with the seed; 0: all")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of both sides (default: torch's)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"example": [], "built-in": []}
    with tempfile.TemporaryDirectory(prefix="example-speed-") as tmp:
        for repeat in range(args.repeats):
            for side in runs:
                folder = Path(tmp) / f"{side}-{repeat}"
                folder.mkdir()
                runs[side].append(run_side(side, args, folder))
    images = train_images(args)
    speed = {side: img_per_s(r, images) for side, r in runs.items()}
    row = {"benchmark": "example_speed", "epochs": args.epochs, "threads": args.threads, "limit": args.limit, "repeats": args.repeats,
           "train_images": images, "example_img_s": speed["example"],
           "builtin_img_s": speed["built-in"], "ratio": round(speed["example"] / speed["built-in"], 3),
           "precision": {side: r[0]["precision"] for side, r in runs.items()},
           "test_accuracy": {side: round(statistics.mean(x["test_accuracy"] for x in r), 4) for side, r in runs.items()},
           "epoch_seconds": {side: [[round(s, 2) for s in x["epoch_seconds"]] for x in r] for side, r in runs.items()},
           "load_average": os.getloadavg()}
    print(json.dumps(row))
    print(f"\n| side | precision | img/s (median epoch) | test accuracy |\n|---|---|---|---|")
    for side in runs:
        print(f"| {side} | {row['precision'][side]} | {speed[side]} | {row['test_accuracy'][side]} |")
    print(f"example / built-in: {row['ratio']}; load average at the end {row['load_average']}")


if __name__ == "__main__":
    main()
