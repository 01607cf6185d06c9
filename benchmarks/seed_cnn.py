"""hydranet's training loop against a bare PyTorch loop on the seed CNN (Keras CIFAR-10 tutorial model).

Both train the same architecture on the same in-memory CIFAR-10 tensors in one process, epoch by epoch
interleaved: hydranet through `hydranet.Experiment("seed-cnn")` (image_folder source on the JPEG archive,
its Trainer, metrics and checkpoints), the reference as the minimal loop a user would write. Both sides
always use the same precision and memory format, so the ratio is the framework's own cost. Each batch
size is measured twice: fp32 in NCHW (PyTorch's defaults) and bf16 autocast with channels_last (what
`seed-cnn` runs by default on a CPU with bf16 support). Prints one JSON line per row and a table. Usage:

    python benchmarks/seed_cnn.py [--epochs 3] [--batch-size 32 256] [--data ../shared/data/cifar10-jpg.tar.gz]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hydranet as hn
from hydranet.data import build_dataset

ROOT = Path(__file__).resolve().parents[1]


def keras_cnn() -> nn.Module:
    """Conv32-Pool-Conv64-Pool-Flatten-Dense64-Dense10, written independently of hydranet's trunks."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 64), nn.ReLU(), nn.Linear(64, 10),
    )


class BareLoop:
    """The plain loop a user writes (shuffle, slice, forward, cross-entropy, backward, Adam step), run one
    epoch at a time from hydranet's epoch-end hook, so both loops see the same machine state: epoch by
    epoch, interleaved. It also times hydranet's epochs, from the end of one bare epoch to the next hook
    (so hydranet's checkpoint and metrics writing count against it)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, fast: bool):
        torch.manual_seed(seed)
        self.model = keras_cnn()
        if fast:
            self.model, x = self.model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        self.fast = fast
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle = torch.Generator().manual_seed(seed)
        self.bare_seconds: list[float] = []
        self.hydranet_seconds: list[float] = []

    def on_fit_start(self, trainer) -> None:
        self.mark = time.perf_counter()

    def on_epoch_end(self, trainer, record) -> None:
        self.hydranet_seconds.append(time.perf_counter() - self.mark)
        start = time.perf_counter()
        order = torch.randperm(len(self.x), generator=self.shuffle)
        self.model.train()
        for i in range(0, len(self.x), self.batch_size):
            idx = order[i:i + self.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16) if self.fast else contextlib.nullcontext():
                logits = self.model(self.x[idx])
            loss = F.cross_entropy(logits.float(), self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.bare_seconds.append(time.perf_counter() - start)
        self.mark = time.perf_counter()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(chunk).argmax(1) for chunk in x.split(1024)])
    return float((pred == y).float().mean())


def run(data_path: str, epochs: int, batch_size: int, seed: int, fast: bool, limit: int | None = None) -> dict:
    """One batch size: hydranet against the bare loop, both fp32 NCHW, or both bf16 + channels_last when `fast`."""
    overrides = {"data.path": data_path, "train.epochs": epochs, "train.batch_size": batch_size, "seed": seed,
                 "train.precision": "bf16" if fast else "fp32", "train.channels_last": fast, "data.limit": limit}
    experiment = hn.Experiment("seed-cnn", overrides)
    data = build_dataset(experiment.config)  # the same tensors hydranet trains on (decoded once, then cached)
    train, test = data.split("train"), data.split("test")
    n = len(train["x"])
    bare = BareLoop(train["x"], train["label"], batch_size, seed, fast)
    with tempfile.TemporaryDirectory() as tmp:
        result = experiment.fit(Path(tmp) / "run", callbacks=[bare])
    hydra, ref = statistics.median(bare.hydranet_seconds), statistics.median(bare.bare_seconds)
    return {
        "benchmark": "seed_cnn", "batch_size": batch_size, "epochs": epochs, "train_images": n,
        "mode": "bf16+channels_last" if fast else "fp32",
        "hydranet_img_s": round(n / hydra, 1), "bare_img_s": round(n / ref, 1), "ratio": round(ref / hydra, 4),
        "hydranet_test_accuracy": round(result.summary["test"]["label"]["accuracy"], 4),
        "bare_test_accuracy": round(accuracy(bare.model, test["x"], test["label"]), 4),
        "machine": machine(),
    }


def machine() -> str:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    return f"{model}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only this many images (smoke test)")
    parser.add_argument("--no-fast", action="store_true", help="skip the bf16 + channels_last rows")
    args = parser.parse_args()
    rows = []
    for bs in args.batch_size:
        for fast in (False,) if args.no_fast else (False, True):
            rows.append(run(args.data, args.epochs, bs, args.seed, fast, args.limit))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{rows[0]['machine']}; {args.epochs} epochs; img/s = training images / median epoch seconds")
    print("| batch | mode (both sides) | hydranet img/s | bare img/s | ratio | hydranet test acc | bare test acc |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['mode']} | {r['hydranet_img_s']} | {r['bare_img_s']} | {r['ratio']} "
              f"| {r['hydranet_test_accuracy']} | {r['bare_test_accuracy']} |")


if __name__ == "__main__":
    main()
