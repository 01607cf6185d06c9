"""Label efficiency: does a self-supervised trunk beat training from scratch when labels are few?

One self-supervised pretraining on the training images without their labels, then for each labels
fraction (class-balanced, nested subsets of the train split): training from scratch, fine-tuning the
pretrained trunk (`model.init_from`), and a linear probe of the frozen pretrained features — test accuracy
and seconds for each. The same recipe (trunk, optimizer, schedule, augmentation, number of steps) serves
scratch and fine-tuning; only the initial weights differ. Prints one JSON line per row and a table.

    python benchmarks/label_efficiency.py --toy      # bundled 8×8 digits, seconds (also run by the test suite)
    python benchmarks/label_efficiency.py --quick    # CIFAR-10, 10,000 train images, under 5 minutes on 2 cores
    python benchmarks/label_efficiency.py            # CIFAR-10, all 50,000 train images (sizes in SIZES)
    python benchmarks/label_efficiency.py --ag-news  # AG News texts, masked-token pretraining (mlm), a transformer
    python benchmarks/label_efficiency.py --ag-news --trunk gru   # the same with a bidirectional gru

Texts: every run reuses the pretraining run's tokenizer (`data.text.tokenizer_from`), scratch too, so that scratch
and fine-tuning differ in their initial weights only (a tokenizer trained on 1% of the texts would be another lever).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

import hydranet as hn

ROOT = Path(__file__).resolve().parents[1]
CIFAR = str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz")
AG_NEWS = str(ROOT.parent / "shared" / "data" / "ag_news" / "ag_news_test.csv.gz")

# scratch: random init; finetune: from the pretrained trunk; linear: probe of the frozen pretrained trunk;
# linear_random: the same probe of a random trunk (what the probe gets without any pretraining)
METHODS = ("scratch", "finetune", "linear", "linear_random")
# (data limit over the 60,000 images, pretraining epochs, fine-tuning epochs at 100% labels, minimum steps)
SIZES = {"toy": (None, 6, 10, 150), "quick": (12000, 3, 2, 80), "full": (None, 4, 3, 200), "ag-news": (None, 8, 4, 120)}


def cifar_recipe(limit: int | None) -> dict:
    """The seed CNN's two conv blocks with BatchNorm and a 128-wide dense layer (12 MFLOP per image): small
    enough for 2 cores to pretrain on 50,000 images with two views each in minutes per epoch."""
    return {
        "name": "label-efficiency", "seed": 0,
        "data": {"source": "image_folder", "path": CIFAR, "limit": limit, "split": {"val": 0.0},
                 "augment": {"crop_padding": 4, "flip": True}},
        "tasks": {"label": {"kind": "classification"}},
        "model": {"trunk": {"name": "cnn", "channels": [32, 64], "padding": "same", "batch_norm": True, "dense": [128]}},
        "train": {"batch_size": 256, "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0005},
                  "schedule": {"name": "onecycle", "warmup": 0.2}, "precision": "bf16", "channels_last": True, "progress": False},
        "ssl": {"knn_bank": 5000, "knn_queries": 1000},
    }


TEXT_TRUNKS = {  # --trunk for --ag-news: narrower than the ag-news experiment's, so the study takes minutes
    "transformer": {"name": "transformer", "width": 64, "depth": 2, "heads": 4, "dropout": 0.1, "vocab_size": 8192},
    "gru": {"name": "gru", "width": 64, "embedding": 64, "bidirectional": True, "pooling": "mean", "dropout": 0.1,
            "vocab_size": 8192},
}


def ag_news_recipe(trunk: str = "transformer") -> dict:
    """The `ag-news` experiment's data and split with a narrower trunk (TEXT_TRUNKS: a transformer of width 64 and 2
    blocks, or a bidirectional gru of width 64), so that masked-token pretraining and the supervised runs take minutes
    on 2 cores; no val split: every train text is labeled or not."""
    return {
        "name": "label-efficiency-ag-news", "seed": 0,
        "data": {"source": "text", "path": AG_NEWS, "split": {"val": 0.0, "test": 0.2, "stratify": "topic"},
                 "text": {"columns": ["title", "description"], "header": ["topic", "title", "description"],
                          "vocab_size": 8192, "max_length": 64}},
        "tasks": {"topic": {"kind": "classification"}},
        "model": {"trunk": dict(TEXT_TRUNKS[trunk])},
        "train": {"batch_size": 32, "threads": 1, "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
                  "schedule": {"name": "cosine", "warmup": 0.05}, "progress": False},
        "ssl": {"knn_bank": 5000, "knn_queries": 1000},
    }


def digits_recipe() -> dict:
    """The quickstart trunk on the bundled digits, one task (digit), small enough for the test suite."""
    return {
        "name": "label-efficiency-toy", "seed": 0,
        "data": {"source": "digits", "split": {"val": 0.0, "test": 0.3, "stratify": "digit"}},
        "tasks": {"digit": {"kind": "classification"}},
        "model": {"trunk": {"name": "cnn", "channels": [16, 32], "padding": "same", "batch_norm": True, "dense": [64]}},
        "train": {"batch_size": 64, "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0005},
                  "schedule": {"name": "onecycle", "warmup": 0.2}, "progress": False},
        "ssl": {"crop_scale": 0.5, "color_jitter": 0.4, "grayscale": 0.0, "flip": False},  # digits: no mirror images
    }


def epochs_for(fraction: float, train_size: int, batch: int, epochs_full: int, min_steps: int) -> int:
    """At least `min_steps` optimizer steps however few the labels (1% of CIFAR is 2 batches per epoch)."""
    steps_per_epoch = math.ceil(max(1, round(train_size * fraction)) / batch)
    return max(epochs_full, math.ceil(min_steps / steps_per_epoch))


def with_(cfg: dict, **sections) -> dict:
    """A deep copy of cfg with some sections' keys replaced."""
    out = copy.deepcopy(cfg)
    for section, values in sections.items():
        out.setdefault(section, {}).update(values)
    return out


def label_efficiency(recipe: dict, fractions: list[float], pretrain_epochs: int, epochs_full: int, min_steps: int,
                     method: str, workdir: Path, echo=print) -> list[dict]:
    """Pretrain once, then scratch / fine-tune / linear probe per fraction; one dict per (method, fraction)."""
    task = next(iter(recipe["tasks"]))
    pre_cfg = with_(recipe, train={"epochs": pretrain_epochs}, ssl={"method": method})
    start = time.perf_counter()
    pretrained = hn.Experiment(pre_cfg).pretrain(workdir / "pretrain")
    pretrain_seconds = round(time.perf_counter() - start, 1)
    echo(json.dumps({"pretrain": method, "epochs": pretrain_epochs, "seconds": pretrain_seconds,
                     "knn_accuracy": pretrained.summary["knn"].get(task, {}).get("accuracy")}))
    train_size = _train_size(pre_cfg)
    if recipe["data"]["source"] == "text":  # one tokenizer for every run: the pretrained embedding's
        recipe = with_(recipe, data={"text": {**recipe["data"]["text"], "tokenizer_from": str(workdir / "pretrain")}})
    rows = []
    for fraction in fractions:
        epochs = epochs_for(fraction, train_size, recipe["train"]["batch_size"], epochs_full, min_steps)
        for arm in METHODS:
            start = time.perf_counter()
            if arm.startswith("linear"):
                trunk = workdir / "pretrain" if arm == "linear" else None  # linear_random: an untrained trunk
                accuracy = hn.Experiment(recipe).probe(trunk, "linear", fraction)["test"][task]["accuracy"]
            else:
                model = {"init_from": str(workdir / "pretrain")} if arm == "finetune" else {}
                cfg = with_(recipe, data={"labels_fraction": fraction}, train={"epochs": epochs}, model=model)
                run = hn.Experiment(cfg).fit(workdir / f"{arm}-{fraction}")
                accuracy = run.summary["test"][task]["accuracy"]
            rows.append({"benchmark": "label_efficiency", "method": arm, "labels_fraction": fraction,
                         "labels": round(train_size * fraction), "epochs": None if arm.startswith("linear") else epochs,
                         "test_accuracy": round(accuracy, 4), "seconds": round(time.perf_counter() - start, 1),
                         "trunk": recipe["model"]["trunk"]["name"], "pretrain": method,
                         "pretrain_epochs": pretrain_epochs, "pretrain_seconds": pretrain_seconds})
            echo(json.dumps(rows[-1]))
    return rows


def _train_size(cfg: dict) -> int:
    from hydranet.config import validate
    from hydranet.data import build_dataset

    return len(build_dataset(validate(with_(cfg, data={"labels_fraction": 1.0}))).index["train"])


def table(rows: list[dict]) -> str:
    fractions = sorted({r["labels_fraction"] for r in rows})
    lines = ["| method | " + " | ".join(f"{f:.0%} labels ({next(r['labels'] for r in rows if r['labels_fraction'] == f):,})" for f in fractions) + " |",
             "|---|" + "---|" * len(fractions)]
    for method in METHODS:
        cells = []
        for f in fractions:
            r = next(r for r in rows if r["method"] == method and r["labels_fraction"] == f)
            cells.append(f"{r['test_accuracy']:.3f} ({r['seconds']:.0f} s)")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--toy", action="store_true", help="bundled digits, seconds")
    size.add_argument("--quick", action="store_true", help="CIFAR-10 on 12,000 images, under 5 minutes")
    size.add_argument("--ag-news", action="store_true", help="AG News texts, a transformer, mlm pretraining")
    parser.add_argument("--method", default=None, help="ssl.method of the pretraining (default: simclr, for texts mlm)")
    parser.add_argument("--trunk", choices=list(TEXT_TRUNKS), default="transformer", help="--ag-news: the text trunk")
    parser.add_argument("--fractions", default="0.01,0.1,1.0")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "toy" if args.toy else "quick" if args.quick else "ag-news" if args.ag_news else "full"
    limit, pretrain_epochs, epochs_full, min_steps = SIZES[name]
    if args.trunk != "transformer" and not args.ag_news:
        parser.error("--trunk chooses the text trunk of --ag-news")
    recipe = digits_recipe() if args.toy else ag_news_recipe(args.trunk) if args.ag_news else cifar_recipe(limit)
    method = args.method or ("mlm" if args.ag_news else "simclr")
    fractions = [float(f) for f in args.fractions.split(",")]
    if args.toy:
        fractions = [f for f in fractions if f >= 0.05] or [0.1]  # 1% of 1,257 digits is 13 images
    with tempfile.TemporaryDirectory() as tmp:
        rows = label_efficiency(recipe, fractions, pretrain_epochs, epochs_full, min_steps, method, Path(tmp))
    print(f"\n{name} ({recipe['model']['trunk']['name']}): {platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{method} pretraining {rows[0]['pretrain_epochs']} epochs ({rows[0]['pretrain_seconds']} s); test accuracy (seconds)")
    print(table(rows))


if __name__ == "__main__":
    main()
