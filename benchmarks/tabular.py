"""Tables: hydranet's default (a config naming only the source and the task) against `hydranet baseline`'s boosted
trees (LightGBM, else HistGradientBoosting) and linear model, on the same rows.

Tables: scikit-learn's breast cancer (binary `diagnosis`) and diabetes (regression `progression`, written to a
CSV in the work folder), and UCI Adult (binary `income`, ../shared/data). Per table and seed: train with the
defaults (only `train.progress` off), then `baselines` on the run. Prints one JSON line per table, seed and model
(appended to `--jsonl` when given) and a table of mean ± std over the seeds of the test metric and the fit time.

    python benchmarks/tabular.py --seeds 0 1 2 --tables breast_cancer diabetes adult
    python benchmarks/tabular.py --tables breast_cancer diabetes --set model.trunk.embedding=plr
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.datasets import load_diabetes

from hydranet.baseline import baselines, by_model
from hydranet.config import load_config
from hydranet.files import write_csv, write_text
from hydranet.train import fit

ADULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "adult" / "adult.csv.gz"
METRIC = {"binary": "roc_auc", "regression": "rmse"}


def experiments(work: Path) -> dict[str, dict]:
    """Each table as the smallest config a new user would write: its source and its task."""
    diabetes = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    write_csv(work / "diabetes.csv", diabetes)
    return {
        "breast_cancer": {"data": {"source": "breast_cancer"}, "tasks": {"diagnosis": {"kind": "binary"}}},
        "diabetes": {"data": {"source": "csv", "path": str(work / "diabetes.csv")},
                     "tasks": {"progression": {"kind": "regression"}}},
        "adult": {"data": {"source": "csv", "path": str(ADULT.resolve())},
                  "tasks": {"income": {"kind": "binary", "positive": ">50K"}}},
    }


def measure(table: str, experiment: dict, seed: int, work: Path, overrides: list[str]) -> list[dict]:
    """One JSON row per model (hydranet's run first, with the `--set` overrides) for one table and seed."""
    cfg = load_config(experiment | {"seed": seed, "name": table, "train": {"progress": False}}, overrides)
    start = time.perf_counter()
    run = fit(cfg, work / f"{table}-{seed}", progress=False)
    seconds = time.perf_counter() - start
    report = baselines(run.dir)
    (task, kind), = ((name, t.kind) for name, t in cfg.tasks.items())
    rows = []
    for model, metrics in by_model(report).items():
        fit_seconds = seconds if model == "run" else metrics[task]["fit_seconds"]
        rows.append({"table": table, "seed": seed, "model": " ".join(["hydranet", *overrides]) if model == "run" else model,
                     "task": task, "metric": METRIC[kind], "value": metrics[task][METRIC[kind]],
                     "fit_seconds": round(fit_seconds, 2), "test_rows": report["rows"]["test"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables", nargs="+", default=["breast_cancer", "diabetes", "adult"])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override of the hydranet runs (repeatable), e.g. model.trunk.embedding=plr")
    parser.add_argument("--jsonl", type=Path, help="append the JSON lines to this file")
    args = parser.parse_args()
    machine = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "date": datetime.date.today().isoformat()}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        tables = experiments(work)
        for table in args.tables:
            for seed in args.seeds:
                for row in measure(table, tables[table], seed, work, args.overrides):
                    row |= machine
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    if args.jsonl:
        old = args.jsonl.read_text(encoding="utf-8") if args.jsonl.exists() else ""
        write_text(args.jsonl, old + "".join(json.dumps(row) + "\n" for row in rows))
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["table", "metric", "model"], sort=False).agg(
        mean=("value", "mean"), std=("value", lambda v: statistics.stdev(v) if len(v) > 1 else 0.0),
        seconds=("fit_seconds", "mean"), seeds=("seed", "count"))
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
