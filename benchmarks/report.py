"""`hydranet report`: how long one report takes, by section group, on a quickstart run and a seed-cnn run.

For each experiment it trains a short run (a report's time depends on the data and the test split, not on how
well the model learned), then times `write_report` twice (the second is what a user waiting on the command sees
again; the first includes matplotlib's font cache on a fresh machine) and reports the page's size. Prints one JSON
line per experiment and a table. Usage (from the repository root; seed-cnn reads ../shared/data):

    python benchmarks/report.py [--experiments quickstart seed-cnn] [--limit 5000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.report.run import write_report
from export import cpu_name  # the sibling script's helper: run as a script, this folder is on sys.path


def measure(experiment: str, folder: Path, limit: int | None, threads: int) -> dict:
    overrides = {"train.epochs": 1, "train.progress": False, "train.threads": threads}
    if limit:
        overrides["data.limit"] = limit
    run = hn.Experiment(experiment, overrides).fit(folder / experiment)
    seconds = []
    for _ in range(2):
        result = write_report(run.dir)
        seconds.append(round(result["seconds"], 2))
    return {"experiment": experiment, "limit": limit, "test_examples": len(build_dataset(run.config).index["test"]),
            "sections": len(result["sections"]), "seconds_first": seconds[0], "seconds": seconds[1],
            "html_kib": round(result["path"].stat().st_size / 1024), "threads": threads, "torch": torch.__version__,
            "cpu": cpu_name()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["quickstart", "seed-cnn"])
    parser.add_argument("--limit", type=int, default=5000, help="data.limit of the seed-cnn run (0: all 60,000)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            row = measure(experiment, Path(tmp), args.limit if experiment != "quickstart" else None, args.threads)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\n{'experiment':<12} {'test ex.':>8} {'sections':>8} {'first s':>8} {'again s':>8} {'HTML KiB':>9}")
    for r in rows:
        print(f"{r['experiment']:<12} {r['test_examples']:>8} {r['sections']:>8} {r['seconds_first']:>8} "
              f"{r['seconds']:>8} {r['html_kib']:>9}")


if __name__ == "__main__":
    main()
