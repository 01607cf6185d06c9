"""hydranet's `seed-cnn` against the article's Keras CNN on the same CIFAR-10 arrays, side by side.

The article trains Conv32-Pool-Conv64-Pool-Flatten-Dense64-Dense10 with Adam in Keras (`model.fit`, pixels
divided by 255). This script decodes CIFAR-10 once (hydranet's image_folder source and cache), writes the
uint8 arrays and the train/test split to an .npz in a temporary folder, and trains on them alternately,
A B A B, each run in its own process: Keras (TensorFlow CPU, in its own virtual environment
benchmarks/.venv-keras, created from benchmarks/requirements-keras.txt on first use) and hydranet
(`seed-cnn` as shipped, reading the .npz through the npz source). Per batch size it prints one JSON line:
training img/s of each (train images / median epoch seconds, the first epoch left out as warm-up when
there are two or more; evaluation excluded on both sides), their ratio, test accuracy after the last
epoch (mean over the repeats) and peak RSS of each process (ru_maxrss from wait4). Keras runs with
verbose=2 (one line per epoch) and hydranet without its progress bar, so neither pays for a per-step display.

`--precisions` compares like with like, a row per precision and batch size: `default` is each side as a user
gets it (Keras's float32 policy against `seed-cnn`'s `auto`), `fp32` both in float32, `bf16` Keras's
`mixed_bfloat16` policy against hydranet's bf16 autocast (both keep float32 weights and compute in bf16). On a
CPU without native bf16 (AVX2 only) both sides emulate it and are slow.

    python benchmarks/vs_keras.py [--epochs 10] [--batch-sizes 32,256] [--repeats 2] [--precisions default,fp32,bf16]
                                  [--limit N | --quick]

Run it on an otherwise idle machine. When another process takes one of two cores, PyTorch's OpenMP threads
wait for each other at every operation and hydranet with two threads collapses (measured: to under a tenth
of its speed) while TensorFlow's work-stealing pool slows down gracefully; `--threads 1` compares the two
on one thread each.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv-keras"
REQUIREMENTS = HERE / "requirements-keras.txt"
QUICK = {"epochs": 2, "limit": 3000}


# --- the Keras side (runs in the Keras venv: standard library, numpy, keras, tensorflow only) ------------


def keras_child(npz: str, epochs: int, batch_size: int, seed: int, threads: int | None, precision: str) -> dict:
    """The article's example on the given arrays; returns epoch seconds (training only) and test accuracy."""
    import keras
    import numpy as np
    import tensorflow as tf

    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")  # float32 variables, bf16 compute

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(seed)
    data = np.load(npz)
    x, y, split = data["x"].transpose(0, 2, 3, 1), data["label"], data["split"]  # NCHW → NHWC, as Keras wants
    train_images, test_images = x[split == "train"] / 255.0, x[split == "test"] / 255.0  # as in the article
    train_labels, test_labels = y[split == "train"], y[split == "test"]
    model = keras.Sequential([
        keras.Input(shape=train_images.shape[1:]),
        keras.layers.Conv2D(32, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    class EpochClock(keras.callbacks.Callback):
        """Seconds from an epoch's start to its last training batch (validation, if any, excluded)."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(self.last - self.start)

    clock = EpochClock()
    model.fit(train_images, train_labels, epochs=epochs, batch_size=batch_size, verbose=2, callbacks=[clock])
    _, accuracy = model.evaluate(test_images, test_labels, verbose=0)
    return {"epoch_seconds": clock.seconds, "test_accuracy": float(accuracy),
            "version": f"keras {keras.__version__}, tensorflow {tf.__version__}, policy {keras.mixed_precision.global_policy().name}"}


# --- the hydranet side (runs in this interpreter) ---------------------------------------------------------


def hydranet_child(npz: str, epochs: int, batch_size: int, seed: int, threads: int | None, precision: str) -> dict:
    """`seed-cnn` as shipped (`precision` other than default: that train.precision), on the same arrays."""
    import torch

    import hydranet as hn

    overrides = {"data.source": "npz", "data.path": npz, "train.epochs": epochs, "train.batch_size": batch_size,
                 "seed": seed, "train.progress": False, "train.threads": threads}
    if precision != "default":
        overrides["train.precision"] = precision
    with tempfile.TemporaryDirectory() as tmp:
        run = hn.Experiment("seed-cnn", overrides).fit(Path(tmp) / "run")
    config = run.config.train
    return {"epoch_seconds": [r["seconds"] for r in run.history], "test_accuracy": run.summary["test"]["label"]["accuracy"],
            "version": f"hydranet {hn.__version__}, torch {torch.__version__}, precision {run.summary['precision']}, "
                       f"channels_last {config.channels_last}, {torch.get_num_threads()} threads"}


# --- the parent: data, venv, alternation, report ---------------------------------------------------------


def ensure_keras_venv() -> Path:
    """benchmarks/.venv-keras with the pinned Keras and TensorFlow; reinstalled when the requirements change."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing Keras and TensorFlow into {VENV} (first use; a few minutes) …", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def write_arrays(data_path: str, limit: int | None, out: Path) -> int:
    """The decoded CIFAR-10 set as hydranet builds it (same seed, same limit) → x uint8 NCHW, label, split."""
    import numpy as np

    import hydranet as hn
    from hydranet.data import build_dataset

    cfg = hn.Experiment("seed-cnn", {"data.path": data_path, "data.limit": limit}).config
    data = build_dataset(cfg)
    split = np.empty(len(data.x), dtype="<U5")
    for name, idx in data.index.items():
        split[idx.numpy()] = name
    keep = split != ""  # every example is in some split; val is empty for seed-cnn
    np.savez(out, x=data.x.numpy()[keep], label=data.targets["label"].numpy()[keep], split=split[keep])
    return int((split == "train").sum())


def run_child(python: Path, side: str, npz: Path, args: argparse.Namespace, batch_size: int, seed: int, tmp: Path,
              precision: str) -> dict:
    """One training in a fresh process; adds its peak resident memory (MiB) from the kernel's accounting."""
    name = f"{side}-{precision}-{batch_size}-{seed}"
    result = tmp / f"{name}.json"
    cmd = [str(python), str(Path(__file__).resolve()), "--child", side, "--npz", str(npz), "--epochs", str(args.epochs),
           "--batch-size", str(batch_size), "--seed", str(seed), "--result", str(result), "--precision", precision]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{side} run failed ({precision}, batch {batch_size}, seed {seed}); its output:\n{log.read_text()[-4000:]}")
    return {**json.loads(result.read_text()), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def img_per_s(runs: list[dict], images: int) -> float:
    """Train images / median epoch seconds, epoch 1 (graph tracing, kernel selection) left out when possible."""
    seconds = [s for r in runs for s in (r["epoch_seconds"][1:] or r["epoch_seconds"])]
    return round(images / statistics.median(seconds), 1)


def compare(python: Path, npz: Path, images: int, args: argparse.Namespace, batch_size: int, tmp: Path,
            precision: str) -> dict:
    keras, hydra = [], []
    for seed in range(args.repeats):  # A B A B: both sides see the machine in the same state, in turn
        keras.append(run_child(python, "keras", npz, args, batch_size, seed, tmp, precision))
        hydra.append(run_child(Path(sys.executable), "hydranet", npz, args, batch_size, seed, tmp, precision))
    k, h = img_per_s(keras, images), img_per_s(hydra, images)
    return {
        "benchmark": "vs_keras", "precision": precision, "batch_size": batch_size, "epochs": args.epochs, "train_images": images,
        "repeats": args.repeats, "threads": args.threads, "keras_img_s": k, "hydranet_img_s": h, "ratio": round(h / k, 3),
        "keras_test_accuracy": round(statistics.mean(r["test_accuracy"] for r in keras), 4),
        "hydranet_test_accuracy": round(statistics.mean(r["test_accuracy"] for r in hydra), 4),
        "keras_peak_rss_mib": max(r["peak_rss_mib"] for r in keras),
        "hydranet_peak_rss_mib": max(r["peak_rss_mib"] for r in hydra),
        "keras": keras[0]["version"], "hydranet": hydra[0]["version"], "machine": machine(),
        "runs": {"keras": [_brief(r) for r in keras], "hydranet": [_brief(r) for r in hydra]},
    }


def _brief(run: dict) -> dict:
    return {"epoch_seconds": [round(s, 3) for s in run["epoch_seconds"]], "test_accuracy": round(run["test_accuracy"], 4),
            "peak_rss_mib": run["peak_rss_mib"]}


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} CPUs"


def table(rows: list[dict]) -> str:
    first = rows[0]
    title = (f"{first['machine']}; {first['epochs']} epochs on {first['train_images']} images, "
             f"{first['repeats']} runs per side (A B A B); {first['keras']} vs {first['hydranet']}")
    lines = [title,
             "| precision | batch | Keras img/s | hydranet img/s | ratio | Keras test acc | hydranet test acc | Keras peak RSS MiB | hydranet peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['batch_size']} | {r['keras_img_s']} | {r['hydranet_img_s']} | {r['ratio']} | {r['keras_test_accuracy']} "
                     f"| {r['hydranet_test_accuracy']} | {r['keras_peak_rss_mib']} | {r['hydranet_peak_rss_mib']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-sizes", default="32,256", help="comma-separated, e.g. 32,256")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side and batch size, alternating")
    parser.add_argument("--limit", type=int, default=None, help="use only this many images (train + test), drawn with the seed")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: --epochs {QUICK['epochs']} --limit {QUICK['limit']} --repeats 1")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of both sides (default: each framework's own; 1 is fairer on a busy machine)")
    parser.add_argument("--precisions", default="default", help="comma-separated: default (each side's own), fp32, bf16")
    parser.add_argument("--child", choices=["keras", "hydranet"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train = keras_child if args.child == "keras" else hydranet_child
        Path(args.result).write_text(json.dumps(train(args.npz, args.epochs, args.batch_size, args.seed, args.threads,
                                                      args.precision)))
        return
    if args.quick:
        args.epochs, args.limit, args.repeats = QUICK["epochs"], args.limit or QUICK["limit"], 1
    precisions = args.precisions.split(",")
    if unknown := set(precisions) - {"default", "fp32", "bf16"}:
        sys.exit(f"--precisions: {', '.join(sorted(unknown))} (expected default, fp32 or bf16)")
    python = ensure_keras_venv()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-keras-") as tmp:
        npz = Path(tmp) / "cifar10.npz"
        images = write_arrays(args.data, args.limit, npz)
        for precision in precisions:
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                rows.append(compare(python, npz, images, args, batch_size, Path(tmp), precision))
                print(json.dumps(rows[-1]), flush=True)
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
