"""Compression: what pruning and int8 quantization cost and save, against the fp32 model, per task.

For each experiment it trains one run (seed 0, `--set` overrides), then measures rows: fp32 and bf16 (autocast)
eager PyTorch; unstructured global magnitude pruning to 50/70/90% sparsity and structured channel pruning of
30/50% (L1), each fine-tuned for `--finetune` epochs through the normal trainer; int8 dynamic and static (ONNX
Runtime's quantizer on the export, static calibrated on 512 train examples) beside the fp32 ONNX graph they come
from; quantization-aware training (`--finetune` epochs with fake int8, then static int8); the distillation
benchmark's small student alone and distilled from the fp32 run (`compress --method distill`, seed 0). Columns:
parameters (nonzero), weights on disk, FLOPs per example, latency at batch 1 and 64 (median of `--repeats` after 3
untimed calls, `--threads` threads) and each task's main test metric. Prints one JSON line per
row and a table. Usage (from the repository root; adult-mtl and seed-cnn read ../shared/data):

    python benchmarks/compress.py [--experiments quickstart adult-mtl seed-cnn] [--threads 1] [--repeats 50] [--finetune 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import hydranet as hn
from distill import SETUPS  # the small student each experiment's distillation benchmark uses

from hydranet.compress.methods import choose, compress
from hydranet.compress.profile import profile_model
from hydranet.compress.prune import PruneOptions
from hydranet.compress.qat import QATOptions, qat_run
from hydranet.compress.quantize import quantize_run
from hydranet.compress.run import compress_run
from hydranet.data import build_dataset
from hydranet.train import load_run
from hydranet.train.evaluation import evaluate_split

PRUNED = [("pruned 50%", {"amount": 0.5}), ("pruned 70%", {"amount": 0.7}), ("pruned 90%", {"amount": 0.9}),
          ("structured 30%", {"structure": "channels", "amount": 0.3}),
          ("structured 50%", {"structure": "channels", "amount": 0.5})]
SETTINGS = {"quickstart": {}, "adult-mtl": {"train.epochs": 5, **SETUPS["adult-mtl"][0]},
            "seed-cnn": dict(SETUPS["seed-cnn"][0])}  # CIFAR-10 from ../shared/data, the distillation benchmark's budget


def main_metrics(run, metrics: dict) -> dict[str, float]:
    """Each task's main test metric (accuracy; MAE for regression), named `task/metric`."""
    return {f"{task}/{t.spec.main_metric}": round(metrics[task][t.spec.main_metric], 4) for task, t in run.tasks.items()}


def torch_row(name: str, run_dir: Path, repeats: int, precision: str = "fp32") -> dict:
    """A PyTorch model's profile and test metrics at `precision`."""
    run = load_run(run_dir)
    profile = profile_model(run.model, tuple(run.info.input_shape), repeats, precision)
    metrics = evaluate_split(run.model, run.tasks, build_dataset(run.config).split("test"),
                             run.config.train.eval_batch_size, precision)
    return {"row": name, "params": profile["params"]["nonzero"], "bytes": (run_dir / "model.safetensors").stat().st_size,
            "flops": profile["flops_per_example"], "b1_ms": profile["latency"]["batch_1_ms"],
            "b64_ms": profile["latency"]["batch_64_ms"], **main_metrics(run, metrics)}


def int8_rows(run, report: dict, names: dict[str, str]) -> list[dict]:
    """Rows of a quantization report: `names` maps its graphs (fp32, int8) to row names."""
    return [{"row": row, "params": None, "bytes": report[name]["bytes"], "flops": None,
             "b1_ms": report[name]["batch_1_ms"], "b64_ms": report[name]["batch_64_ms"],
             **main_metrics(run, report[name]["metrics"])} for name, row in names.items()]


def student_rows(experiment: str, settings: dict, source: Path, folder: Path, repeats: int) -> list[dict]:
    """The distillation benchmark's small student trained alone, and distilled from `source` through
    `hydranet compress --method distill` (same recipe and seed)."""
    alone = hn.Experiment(experiment, {**settings, **SETUPS[experiment][0], "model.trunk": SETUPS[experiment][1]})
    alone_dir = alone.fit(folder / "student").dir
    chosen = choose(load_run(alone_dir).config, "distill", [], {"teacher": str(source)})
    distilled = compress(alone_dir, chosen, folder / "student-distilled").run.dir
    return [torch_row("student alone", alone_dir, repeats), torch_row("student distilled", distilled, repeats)]


def bench(experiment: str, overrides: list[str], folder: Path, repeats: int, finetune: int,
          echo=lambda row: None) -> list[dict]:
    """Every row of one experiment; `echo` sees each row as soon as it is measured (a long run that is stopped still
    leaves the rows it measured)."""
    settings = dict(SETTINGS.get(experiment, {}), **{"train.progress": False})
    settings.update(dict(item.split("=", 1) for item in overrides))
    rows: list[dict] = []

    def keep(*new: dict) -> None:
        for row in new:
            echo(row)
            rows.append(row)

    source = hn.Experiment(experiment, settings).fit(folder / "fp32").dir
    keep(torch_row("fp32", source, repeats), torch_row("bf16", source, repeats, "bf16"))
    for name, options in PRUNED:
        pruned = compress_run(source, PruneOptions(**options, epochs=finetune), folder / name.replace(" ", "-"))
        keep(torch_row(name, pruned.dir, repeats))
    run = load_run(source)
    for mode in ("dynamic", "static"):
        report = quantize_run(run, mode, folder / f"int8-{mode}", repeats=repeats)
        keep(*int8_rows(run, report, {"fp32": "fp32 ONNX", "int8": f"int8 {mode}"} if mode == "dynamic" else {"int8": "int8 static"}))
    tuned, report = qat_run(source, QATOptions(epochs=finetune), folder / "qat")
    keep(*int8_rows(tuned, report, {"fp32": "QAT fp32 ONNX", "int8": "int8 QAT"}))
    keep(*student_rows(experiment, settings, source, folder, repeats))
    return rows


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for experiment in args.experiments:
        with tempfile.TemporaryDirectory() as tmp:
            rows = bench(experiment, args.set, Path(tmp), args.repeats, args.finetune,
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
