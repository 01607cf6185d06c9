"""Tables: hydranet's default (a config naming only the source and the task) and its tabular variants against
`hydranet baseline`'s boosted trees (LightGBM, else HistGradientBoosting) and linear model, on the same rows.

Tables: scikit-learn's breast cancer (binary `diagnosis`) and diabetes (regression `progression`, written to a
CSV in the work folder), and UCI Adult (binary `income`, ../shared/data). Per table and seed: train each variant
(`--variants`, VARIANTS below: the defaults plus its overrides, `train.progress` off, and the `--set` overrides of
every run), then `baselines` on the first run. Prints one JSON line per table, seed and model (appended to
`--jsonl` when given) and a table of mean ± std over the seeds of the test metric and the fit time.

    python benchmarks/tabular.py --seeds 0 1 2 --tables breast_cancer diabetes adult
    python benchmarks/tabular.py --tables adult --seeds 0 --variants default ft_transformer --set train.threads=1
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
EMBEDDED = ["data.encoder.categorical=embedding", "data.encoder.numeric=quantile"]
PLAIN = ["model.trunk={name: mlp}", "train.early_stopping.monitor=null"]  # the default before early stopping
PLR = ["model.trunk={name: mlp, embedding: plr, plr: {sigma: 3.0}}", "train.early_stopping.monitor=val/loss"]
VARIANTS = {  # name → overrides of the one-line config
    "default": [],
    "plain": PLAIN,
    "mlp+stop": ["model.trunk={name: mlp}", "train.early_stopping.monitor=val/loss"],  # the default below 10,000 rows
    "embeddings": [*PLAIN, "data.encoder.categorical=embedding"],
    "embeddings+quantile": [*PLAIN, *EMBEDDED],
    "ft_transformer": [*EMBEDDED, "model.trunk=ft_transformer", "train.early_stopping.monitor=null"],
    "ensemble": [*PLAIN, *EMBEDDED, "model.ensemble=4"],
    "plr": PLR,
    "plr+embeddings": [*PLR, *EMBEDDED],
    "tabm+plr": [*PLR, *EMBEDDED, "model.ensemble=4"],
    "tabm-mini+plr": [*PLR, *EMBEDDED, "model.ensemble=4", "model.ensemble_style=mini"],
}


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


def measure(table: str, experiment: dict, seed: int, work: Path, variants: list[str], overrides: list[str]) -> list[dict]:
    """One JSON row per model (each variant's run, then the baselines, fitted once on the first run's rows) for one
    table and seed."""
    rows, report = [], None
    for variant in variants:
        cfg = load_config(experiment | {"seed": seed, "name": table, "train": {"progress": False}},
                          [*VARIANTS[variant], *overrides])
        (task, kind), = ((name, t.kind) for name, t in cfg.tasks.items())
        start = time.perf_counter()
        run = fit(cfg, work / f"{table}-{seed}-{variant}", progress=False)
        seconds = time.perf_counter() - start
        rows.append(row(table, seed, f"hydranet {variant}", task, kind, run.summary["test"][task][METRIC[kind]], seconds))
        report = report or baselines(run.dir)
    for model, metrics in by_model(report).items():
        if model != "run":
            rows.append(row(table, seed, model, task, kind, metrics[task][METRIC[kind]], metrics[task]["fit_seconds"]))
    for out in rows:
        out["test_rows"] = report["rows"]["test"]
    return rows


def row(table: str, seed: int, model: str, task: str, kind: str, value: float, seconds: float) -> dict:
    """One JSON line: the test metric of one model on one table and seed, and its training or fitting seconds."""
    return {"table": table, "seed": seed, "model": model, "task": task, "metric": METRIC[kind], "value": value,
            "fit_seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables", nargs="+", default=["breast_cancer", "diabetes", "adult"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override of every hydranet run (repeatable), e.g. model.trunk.embedding=plr")
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
                for out in measure(table, tables[table], seed, work, args.variants, args.overrides):
                    out |= machine | {"overrides": args.overrides}
                    print(json.dumps(out), flush=True)
                    rows.append(out)
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
