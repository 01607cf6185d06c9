"""Time to a target CIFAR-10 test accuracy with the built-in `cifar10-fast` recipe (80% on a CPU, 94% on a GPU).

Trains `cifar10-fast` (small BatchNorm ResNet, batched flip + translate, label smoothing, one-cycle SGD,
weight EMA, flip TTA; see src/hydranet/experiments/cifar10-fast.yaml) and scores the test split after
every epoch with what the run would save (the EMA weights, with TTA). It reports the training seconds
until the first epoch whose test accuracy reaches the target (DAWNBench style: test evaluations are not
counted, data decoding neither), then stops. Prints one JSON line per epoch, then a summary line. Usage:

    python benchmarks/cifar10_fast.py                      # CPU: target 0.80, the experiment as shipped
    python benchmarks/cifar10_fast.py --device cuda        # GPU: target 0.94, the wider CUDA recipe below
    python benchmarks/cifar10_fast.py --limit 3000 --set train.epochs=2   # smoke test

On a GPU the recipe is ResNet-18-like (widths 64-512, two blocks per stage), 30 epochs at batch 512: the
CPU net is sized for 80% in minutes on two cores and would stop short of 94%.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import hydranet as hn
from hydranet.config import parse_override
from hydranet.data import build_dataset

ROOT = Path(__file__).resolve().parents[1]
CUDA_RECIPE = {"train.device": "cuda", "model.trunk.channels": [64, 128, 256, 512], "model.trunk.blocks": [2, 2, 2, 2],
               "train.epochs": 30, "train.batch_size": 512, "train.optimizer.lr": 0.4}
TARGETS = {"cpu": 0.80, "cuda": 0.94}


class TimeToTarget:
    """After each epoch: test accuracy of the eval model; stop at the first epoch that reaches the target."""

    def __init__(self, test: dict[str, torch.Tensor], target: float):
        self.test, self.target = test, target  # on the CPU until the trainer moves it (device, channels_last)
        self.curve: list[dict] = []
        self.seconds = 0.0

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.seconds += record["seconds"]  # the epoch's training time (no val split: nothing else in it)
        start = time.perf_counter()
        if self.test["x"].device != trainer.device:
            self.test = trainer.to_device(self.test)
        accuracy = trainer.evaluate(self.test)[0]["label"]["accuracy"]
        self.curve.append({"epoch": record["epoch"], "train_seconds": round(self.seconds, 2), "test_accuracy": round(accuracy, 4),
                           "eval_seconds": round(time.perf_counter() - start, 2)})
        print(json.dumps(self.curve[-1]), flush=True)
        if accuracy >= self.target:
            trainer.should_stop = True


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--target", type=float, default=None, help="test accuracy to reach (default: cpu 0.80, cuda 0.94)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    parser.add_argument("--limit", type=int, default=None, help="use only this many images (smoke test)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, as in `hydranet train --set`")
    args = parser.parse_args()
    target = args.target if args.target is not None else TARGETS[args.device]
    overrides = {"data.path": args.data, "data.limit": args.limit, "train.progress": False}
    if args.device == "cuda":
        overrides.update(CUDA_RECIPE)
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions once
    overrides.update({".".join(key): value for key, value in map(parse_override, args.overrides)})
    experiment = hn.Experiment("cifar10-fast", overrides)
    data = build_dataset(experiment.config)  # for the test split; `fit` builds it again from the cache
    clock = TimeToTarget(data.split("test"), target)
    with tempfile.TemporaryDirectory() as tmp:
        run = experiment.fit(Path(tmp) / "run", callbacks=[clock])
    reached = next((point for point in clock.curve if point["test_accuracy"] >= target), None)
    print(json.dumps({
        "benchmark": "cifar10_fast", "device": args.device, "target": target, "reached": reached is not None,
        "seconds_to_target": reached["train_seconds"] if reached else None, "epochs_to_target": reached["epoch"] if reached else None,
        "final_test_accuracy": clock.curve[-1]["test_accuracy"], "epochs_run": len(clock.curve),
        "train_seconds": clock.curve[-1]["train_seconds"], "precision": run.summary["precision"],
        "train_images": len(data.index["train"]), "machine": machine(torch.device(args.device)),
    }))


if __name__ == "__main__":
    try:
        main()
    except hn.UserError as err:  # a bad --set or no CUDA: one line, as the CLI does
        raise SystemExit(f"error: {err}") from None
