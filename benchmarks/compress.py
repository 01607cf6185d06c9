"""Compression: what pruning and int8 quantization cost and save, against the fp32 model, per task.

For each experiment it trains one run (seed 0, `--set` overrides), then measures rows: fp32 and bf16 (autocast)
eager PyTorch; unstructured global magnitude pruning to 50/70/90% sparsity and structured channel pruning of
30/50% (L1), each fine-tuned for `--finetune` epochs through the normal trainer; int8 dynamic and static (ONNX
Runtime's quantizer on the export, static calibrated on 512 train examples) beside the fp32 ONNX graph they come
from; quantization-aware training (`--finetune` epochs with fake int8, then static int8); the distillation
benchmark's small student alone and distilled from the fp32 run (`compress --method distill`, seed 0). Columns:
parameters (nonzero), weights on disk, FLOPs per example, latency at batch 1 and 64 and each task's main test
metric. The latencies are measured side by side once every row is made: `--rounds` rounds, each timing every
row in turn (median of `--repeats` calls after 3 untimed ones, `--threads` threads, random inputs), and each row
keeps its median over the rounds, so all rows see the same machine. Prints one JSON line per row as it is made
(with a first latency), one per row after the latency pass, and a table. Usage (from the repository root;
adult-mtl, seed-cnn and cifar10-fast read ../shared/data):

    python benchmarks/compress.py [--experiments quickstart adult-mtl seed-cnn cifar10-fast] [--threads 1]
                                  [--repeats 50] [--rounds 5] [--finetune 3] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

import hydranet as hn
from distill import SETUPS  # the small student each experiment's distillation benchmark uses

from hydranet.compress.methods import choose, compress
from hydranet.compress.profile import latency, median_ms, profile_model
from hydranet.compress.prune import PruneOptions
from hydranet.compress.qat import QATOptions, qat_run
from hydranet.compress.quantize import OnnxModule, quantize_run
from hydranet.compress.run import compress_run
from hydranet.data import build_dataset
from hydranet.export.run import MODEL, export_run
from hydranet.train import load_run
from hydranet.train.evaluation import evaluate_split

PRUNED = [("pruned 50%", {"amount": 0.5}), ("pruned 70%", {"amount": 0.7}), ("pruned 90%", {"amount": 0.9}),
          ("structured 30%", {"structure": "channels", "amount": 0.3}),
          ("structured 50%", {"structure": "channels", "amount": 0.5})]
SETTINGS = {"quickstart": {}, "adult-mtl": {"train.epochs": 5, **SETUPS["adult-mtl"][0]},
            "seed-cnn": dict(SETUPS["seed-cnn"][0]),  # CIFAR-10 from ../shared/data, as the distillation benchmark reads it
            "cifar10-fast": dict(SETUPS["cifar10-fast"][0])}


def main_metrics(run, metrics: dict) -> dict[str, float]:
    """Each task's main test metric (accuracy; MAE for regression), named `task/metric`."""
    return {f"{task}/{t.spec.main_metric}": round(metrics[task][t.spec.main_metric], 4) for task, t in run.tasks.items()}


def torch_row(name: str, run_dir: Path, repeats: int, precision: str = "fp32") -> tuple[dict, Callable[[int], dict]]:
    """A PyTorch model's profile and test metrics at `precision`, and its timer for the latency pass (the same
    loaded model, measured anew at each call)."""
    run = load_run(run_dir)
    shape = tuple(run.info.input_shape)
    profile = profile_model(run.model, shape, repeats, precision)
    metrics = evaluate_split(run.model, run.tasks, build_dataset(run.config).split("test"),
                             run.config.train.eval_batch_size, precision)
    row = {"row": name, "params": profile["params"]["nonzero"], "bytes": (run_dir / "model.safetensors").stat().st_size,
           "flops": profile["flops_per_example"], "b1_ms": profile["latency"]["batch_1_ms"],
           "b64_ms": profile["latency"]["batch_64_ms"], **main_metrics(run, metrics)}
    return row, lambda repeats: latency(run.model, shape, repeats, precision)


def int8_row(name: str, run, report: dict, graph: str) -> dict:
    """The row of one graph (fp32 or int8) of a quantization report."""
    return {"row": name, "params": None, "bytes": report[graph]["bytes"], "flops": None,
            "b1_ms": report[graph]["batch_1_ms"], "b64_ms": report[graph]["batch_64_ms"],
            **main_metrics(run, report[graph]["metrics"])}


def onnx_timer(run, made: dict) -> Callable[[int], dict]:
    """Latencies of the model.onnx of the folder an export or quantization `made` (its report) under ONNX Runtime
    (as many threads as torch), on random inputs of the run's shape (dense arithmetic costs the same whatever the
    values), measured anew at each call."""
    graph = OnnxModule.of(Path(made["folder"]) / MODEL, run.info)
    shape = tuple(run.info.input_shape)
    return lambda repeats: {f"batch_{b}_ms": median_ms(lambda x=torch.randn(b, *shape): graph(x), repeats) for b in (1, 64)}


def student_runs(experiment: str, settings: dict, source: Path, folder: Path) -> list[tuple[str, Path]]:
    """The distillation benchmark's small student trained alone, and distilled from `source` through
    `hydranet compress --method distill` (same recipe and seed): (row name, run directory) each."""
    alone = hn.Experiment(experiment, {**settings, "model.trunk": SETUPS[experiment][1]})  # settings: setup + --set
    alone_dir = alone.fit(folder / "student").dir
    chosen = choose(load_run(alone_dir).config, "distill", [], {"teacher": str(source)})
    distilled = compress(alone_dir, chosen, folder / "student-distilled").run.dir
    return [("student alone", alone_dir), ("student distilled", distilled)]


def bench(experiment: str, overrides: list[str], folder: Path, repeats: int, finetune: int, rounds: int,
          echo=lambda row: None) -> list[dict]:
    """Every row of one experiment; `echo` sees each row as soon as it is measured (a long run that is stopped still
    leaves the rows it measured), then every row again with the latencies of the side-by-side pass."""
    settings = dict(SETTINGS.get(experiment, {}), **{"train.progress": False})
    settings.update(dict(item.split("=", 1) for item in overrides))
    rows: list[dict] = []
    timers: dict[str, Callable[[int], dict]] = {}

    def keep(row: dict, timer: Callable[[int], dict]) -> None:
        echo(row)
        rows.append(row)
        timers[row["row"]] = timer

    source = hn.Experiment(experiment, settings).fit(folder / "fp32").dir
    keep(*torch_row("fp32", source, repeats))
    keep(*torch_row("bf16", source, repeats, "bf16"))
    for name, options in PRUNED:
        pruned = compress_run(source, PruneOptions(**options, epochs=finetune), folder / name.replace(" ", "-"))
        keep(*torch_row(name, pruned.dir, repeats))
    run = load_run(source)
    for mode in ("dynamic", "static"):
        report = quantize_run(run, mode, folder / f"int8-{mode}", repeats=repeats)
        if mode == "dynamic":
            keep(int8_row("fp32 ONNX", run, report, "fp32"), onnx_timer(run, export_run(run, folder / "onnx")))
        keep(int8_row(f"int8 {mode}", run, report, "int8"), onnx_timer(run, report))
    tuned, report = qat_run(source, QATOptions(epochs=finetune), folder / "qat")
    keep(int8_row("QAT fp32 ONNX", tuned, report, "fp32"), onnx_timer(tuned, export_run(tuned, folder / "qat-onnx")))
    keep(int8_row("int8 QAT", tuned, report, "int8"), onnx_timer(tuned, report))
    for name, student in student_runs(experiment, settings, source, folder):
        keep(*torch_row(name, student, repeats))
    side_by_side(rows, timers, repeats, rounds)
    for row in rows:
        echo({**row, "latency": f"side by side, median of {rounds} rounds"})
    return rows


def side_by_side(rows: list[dict], timers: dict[str, Callable[[int], dict]], repeats: int, rounds: int) -> None:
    """Every row's latencies measured again once all training is done, in `rounds` rounds that time each row in
    turn; each row keeps the median over rounds. Measured one by one as they were made, beside the other core's
    training, identical dense arithmetic (the fp32 and unstructured rows) differed by up to 1.7× at batch 64."""
    seen: dict[str, list[dict]] = {row["row"]: [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            seen[row["row"]].append(timers[row["row"]](repeats))
    for row in rows:
        row["b1_ms"], row["b64_ms"] = (round(statistics.median(m[f"batch_{b}_ms"] for m in seen[row["row"]]), 4)
                                       for b in (1, 64))


def emit(experiment: str, threads: int, row: dict) -> None:
    """One row as a JSON line, at once, with the time and the 1-minute load average (how busy the machine was while
    its latencies were measured)."""
    print(json.dumps({"experiment": experiment, "threads": threads, "torch": torch.__version__,
                      "utc": time.strftime("%H:%M:%S", time.gmtime()), "load_1min": os.getloadavg()[0], **row}),
          flush=True)


def show(value, digits: int = 3) -> str:
    return "—" if value is None else (f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["quickstart"])
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every experiment, key=value")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--finetune", type=int, default=3, help="fine-tuning epochs after pruning")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the side-by-side latency pass")
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error(f"--set: expected KEY=VALUE items, got {' '.join(args.set)}")
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats: expected at least 1")
    torch.set_num_threads(args.threads)
    for experiment in args.experiments:
        with tempfile.TemporaryDirectory() as tmp:
            rows = bench(experiment, args.set, Path(tmp), args.repeats, args.finetune, args.rounds,
                         lambda row: emit(experiment, args.threads, row))
        tasks = [k for k in rows[0] if "/" in k]
        print(f"\n{experiment}: {'row':<18} {'params':>8} {'KiB':>7} {'MFLOPs':>7} {'b1 ms':>7} {'b64 ms':>7} "
              + " ".join(f"{t:>20}" for t in tasks))
        for r in rows:
            flops = None if r["flops"] is None else r["flops"] / 1e6
            print(f"{'':<{len(experiment) + 2}}{r['row']:<18} {show(r['params']):>8} {r['bytes'] / 1024:>7.1f} "
                  f"{show(flops, 2):>7} {r['b1_ms']:>7.3f} {r['b64_ms']:>7.3f} " + " ".join(f"{r[t]:>20.4f}" for t in tasks))


if __name__ == "__main__":
    main()
