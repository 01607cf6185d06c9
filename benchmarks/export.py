"""ONNX export: export time, parity, and ONNX Runtime against eager PyTorch latency at batch 1 and 64.

For each experiment it trains a short run (the latency does not depend on how well the model learned), exports
it with `hydranet.load(run).export()` (which checks parity on 256 test examples), then times the same inputs
through the eager model (eval, inference_mode, fp32) and through an ONNX Runtime CPU session, both on `--threads`
threads. Each latency is the median of `--repeats` calls after `--warmup` calls that are not counted. Prints one
JSON line per experiment and a table. Usage (from the repository root; adult reads ../shared/data):

    python benchmarks/export.py [--experiments quickstart adult] [--threads 1] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

import hydranet as hn
from hydranet.compress.profile import median_ms
from hydranet.data import build_dataset


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def measure(experiment: str, folder: Path, threads: int, warmup: int, repeats: int) -> dict:
    run = hn.Experiment(experiment, {"train.epochs": 1, "train.progress": False}).fit(folder / experiment)
    report = hn.load(run.dir).export()
    data = build_dataset(run.config)
    x = data.split("test")["x"][:64].contiguous()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(run.dir / "export" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    model = run.model.eval()
    row = {"experiment": experiment, "params": sum(p.numel() for p in model.parameters()),
           "export_seconds": report["export_seconds"], "parity_max_abs_diff": max(report["max_abs_diff"].values()),
           "parity_examples": report["examples"], "threads": threads}
    for batch in (1, 64):
        inputs = x[:batch]
        feed = {"x": inputs.numpy()}
        with torch.inference_mode():
            row[f"eager_ms_b{batch}"] = median_ms(lambda: model(inputs), repeats, warmup)
        row[f"onnxruntime_ms_b{batch}"] = median_ms(lambda: session.run(None, feed), repeats, warmup)
        row[f"speedup_b{batch}"] = row[f"eager_ms_b{batch}"] / row[f"onnxruntime_ms_b{batch}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["quickstart", "adult"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {"machine": cpu_name(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "onnxruntime": ort.__version__, "threads": args.threads}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            rows.append(measure(experiment, Path(tmp), args.threads, args.warmup, args.repeats))
            print(json.dumps({**machine, **rows[-1]}), flush=True)
    print(f"\n{'experiment':<12} {'export s':>8} {'parity':>9} {'eager b1':>9} {'ORT b1':>8} {'eager b64':>10} {'ORT b64':>8}  (ms)")
    for r in rows:
        print(f"{r['experiment']:<12} {r['export_seconds']:>8.1f} {r['parity_max_abs_diff']:>9.1e} {r['eager_ms_b1']:>9.3f} "
              f"{r['onnxruntime_ms_b1']:>8.3f} {r['eager_ms_b64']:>10.3f} {r['onnxruntime_ms_b64']:>8.3f}")


if __name__ == "__main__":
    main()
