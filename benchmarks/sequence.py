"""AG News and the sequence trunks, measured side by side: loop overhead, nn.TransformerEncoder, bf16, accuracy.

Two parts (both by default; `--parts` picks one):

- speed: padded tokens/s of training steps on AG News batches (64 texts × 64 tokens) for
  * hydranet's training loop (`Trainer`, one epoch of its `Batches`) against a bare PyTorch loop (fused AdamW,
    cross-entropy, the same shuffled index slices) driving a copy of the same trunk and head: the overhead ratio;
  * the transformer trunk against the same trunk with its blocks replaced by `nn.TransformerEncoder` of the same size
    (pre-LN, GELU, same width, depth, heads and MLP width; same embedding, positions and masked-mean pooling);
  * bf16 autocast against fp32, for the transformer, the nn.TransformerEncoder and the gru trunk.
  Every contender trains its own copy on the same --steps batches per block; the contenders take turns block by
  block for --rounds rounds and each reports its median block in CPU seconds of this one-thread process (a busy
  machine's waiting for a core left out), so the load hits all of them alike.
- accuracy: `ag-news` trained with transformer, gru and the nn.TransformerEncoder trunk for each of --seeds
  (--epochs each), beside TF-IDF (word 1–2-grams) + logistic regression (C from 1, 10, 100 by val accuracy) on
  the same train/val/test rows; then mean ± spread (half the range) over the seeds.

Prints one JSON line per measurement and a table per part.

    python benchmarks/sequence.py --parts speed --precisions fp32    # about 10 min on a busy 2-core machine
    python benchmarks/sequence.py --parts accuracy --trunks transformer gru --seeds 0   # the earlier single-seed table
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hydranet as hn
from hydranet import registry
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.data.build import load_raw
from hydranet.models.sequence import Transformer, TransformerOptions, masked_mean
from hydranet.randomness import Purpose, stream
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
AG_NEWS = str(ROOT.parent / "shared" / "data" / "ag_news" / "ag_news_test.csv.gz")
TRUNKS = {
    "transformer": {"name": "transformer", "width": 128, "depth": 2, "heads": 4, "dropout": 0.1, "pooling": "mean"},
    "gru": {"name": "gru", "width": 128, "embedding": 128, "bidirectional": True, "pooling": "mean", "dropout": 0.1},
    "nn.TransformerEncoder": {"name": "torch-encoder", "width": 128, "depth": 2, "heads": 4, "dropout": 0.1},
}


class TorchEncoder(Transformer):
    """The transformer trunk with PyTorch's `nn.TransformerEncoder` (pre-LN, GELU, final LayerNorm) in place of
    hydranet's blocks: the same parameters, so speed and accuracy compare the blocks alone."""

    def __init__(self, cfg: TransformerOptions, input_shape: tuple[int, ...]):
        super().__init__(cfg.model_copy(update={"pooling": "mean"}), input_shape)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.width * cfg.mlp_ratio), cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, norm=nn.LayerNorm(cfg.width), enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, keep = self.inputs(x)  # (B, T, W), (B, T)
        h = self.encoder(self.drop(h + self.positions[:, : h.shape[1]]), src_key_padding_mask=~keep)
        return masked_mean(h, keep)  # (B, W)


@registry.register("trunk", "torch-encoder", options=TransformerOptions)
def torch_encoder(cfg: TransformerOptions, input_shape: tuple[int, ...]) -> TorchEncoder:
    return TorchEncoder(cfg, input_shape)


torch_encoder.inputs = ("text",)  # type: ignore[attr-defined]  (a text trunk, as the config checks)


def experiment(seed: int, trunk: dict | None = None, **train) -> dict:
    """The built-in ag-news experiment with the data path made absolute, and optionally another trunk or train
    options."""
    cfg = load_config("ag-news").model_dump(mode="json")
    cfg["seed"], cfg["data"]["path"] = seed, AG_NEWS
    cfg["train"].update(progress=False, **train)
    if trunk is not None:
        cfg["model"]["trunk"] = trunk
    return cfg


# --- speed ------------------------------------------------------------------------------------------------------


def hydranet_block(cfg: dict, data, steps: int) -> Callable[[], None]:
    """One epoch of hydranet's loop (`Trainer._train_epoch`: batches, set lr, autocast, losses, balancer, stats) over
    the first `steps` batches of the train split; each call is the next epoch (new order)."""
    config = load_config(cfg)
    size = steps * config.train.batch_size
    subset = dataclasses.replace(data, index={**data.index, "train": data.index["train"][:size]})
    model, tasks = build_model_for(config, data.info, torch.device("cpu"))
    balancer = registry.get("balancer", "equal")(config.mtl.balancer.options, tasks, config.seed)
    trainer = Trainer(model, tasks, config, balancer, device=torch.device("cpu"))
    trainer.total_steps = config.train.epochs * steps
    batches = Batches(subset, trainer.device, config.train.batch_size, config.data.augment, config.seed)

    def block() -> None:
        trainer._train_epoch(batches)  # the loop's body without the per-epoch validation
        trainer.epoch += 1
    return block


def bare_block(cfg: dict, data, steps: int) -> Callable[[], None]:
    """The same epochs in a plain PyTorch loop: a copy of the same initial trunk and head, fused AdamW (as hydranet
    uses), cross-entropy, the index slices of hydranet's shuffle."""
    config = load_config(cfg)
    size, batch_size = steps * config.train.batch_size, config.train.batch_size
    hydra, _ = build_model_for(config, data.info, torch.device("cpu"))
    model = nn.Sequential(copy.deepcopy(hydra.trunk), copy.deepcopy(hydra.heads["topic"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.optimizer.lr, fused=True)
    train = data.split("train")
    x, y = train["x"][:size], train["topic"][:size]
    epoch = 0

    def block() -> None:
        nonlocal epoch
        order = torch.randperm(size, generator=stream(config.seed, Purpose.SHUFFLE, epoch))
        model.train()
        for idx in order.split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        epoch += 1
    return block


def race(blocks: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median CPU seconds per block of each contender; one warm-up block each, then they take turns round by round.

    CPU time of this one-thread process, not wall time: on a machine shared with other jobs, wall time also counts
    the time spent waiting for a core, which varies from block to block far more than the work does."""
    for block in blocks.values():
        block()
    seconds: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(rounds):
        for name, block in blocks.items():
            start = time.process_time()
            block()
            seconds[name].append(time.process_time() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


def speed_rows(trunks: list[str], steps: int, rounds: int, precisions: list[str]) -> list[dict]:
    """Tokens/s of every contender, with the loop's overhead ratio and bf16's and the encoder's speed-ups."""
    cfg = experiment(0)
    torch.set_num_threads(cfg["train"]["threads"])  # as the experiment trains; one thread: CPU time is the work
    data = build_dataset(load_config(cfg))
    tokens = steps * cfg["train"]["batch_size"] * cfg["data"]["text"]["max_length"]
    blocks = {}
    for trunk in trunks:
        for precision in precisions:
            blocks[f"{trunk} {precision}"] = hydranet_block(experiment(0, TRUNKS[trunk], precision=precision), data, steps)
        if trunk != "nn.TransformerEncoder":
            blocks[f"{trunk} fp32 bare loop"] = bare_block(experiment(0, TRUNKS[trunk]), data, steps)
    medians = race(blocks, rounds)
    rows = []
    for name, seconds in medians.items():
        trunk, precision, *bare = name.split(" ", 2)
        row = {"part": "speed", "contender": name, "tokens_per_s": round(tokens / seconds), "steps": steps,
               "rounds": rounds, "threads": torch.get_num_threads()}
        reference = f"{trunk} fp32 bare loop" if not bare and precision == "fp32" and trunk != "nn.TransformerEncoder" else None
        if reference:
            row["ratio_to_bare_loop"] = round(medians[reference] / seconds, 3)
        if precision == "bf16" and f"{trunk} fp32" in medians:
            row["bf16_speedup"] = round(medians[f"{trunk} fp32"] / seconds, 3)
        if trunk == "nn.TransformerEncoder" and f"transformer {precision}" in medians:
            row["ratio_to_transformer"] = round(medians[f"transformer {precision}"] / seconds, 3)
        rows.append(row)
    return rows


# --- accuracy ---------------------------------------------------------------------------------------------------


def hydranet_row(name: str, seed: int, epochs: int, workdir: Path) -> dict:
    """Train one trunk on ag-news; its test accuracy and training speed (padded tokens/s: train examples ×
    max_length × epochs / train seconds)."""
    cfg = experiment(seed, TRUNKS[name], epochs=epochs)
    run = hn.Experiment(cfg).fit(workdir / f"{TRUNKS[name]['name']}-{seed}")
    summary = json.loads((run.dir / "summary.json").read_text())
    train_rows = len(build_dataset(run.config).index["train"])
    tokens = train_rows * cfg["data"]["text"]["max_length"] * epochs
    return {"part": "accuracy", "model": name, "seed": seed, "epochs": epochs,
            "test_accuracy": round(summary["test"]["topic"]["accuracy"], 4),
            "train_seconds": round(summary["train_seconds"], 1), "tokens_per_s": round(tokens / summary["train_seconds"]),
            "params": summary["params"]}


def tfidf_row(seed: int) -> dict:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression on the rows hydranet trains, validates and
    tests on; C from {1, 10, 100} by val accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    config = load_config(experiment(seed))
    data, texts = build_dataset(config), np.asarray(load_raw(config).texts, dtype=object)
    labels = data.targets["topic"].numpy()
    rows = {split: data.index[split].numpy() for split in ("train", "val", "test")}
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    train = vectorizer.fit_transform(texts[rows["train"]])
    fitted = {c: LogisticRegression(C=c, max_iter=2000).fit(train, labels[rows["train"]]) for c in (1.0, 10.0, 100.0)}
    best = max(fitted, key=lambda c: fitted[c].score(vectorizer.transform(texts[rows["val"]]), labels[rows["val"]]))
    accuracy = fitted[best].score(vectorizer.transform(texts[rows["test"]]), labels[rows["test"]])
    return {"part": "accuracy", "model": "tfidf+logreg", "C": best, "seed": seed,
            "test_accuracy": round(float(accuracy), 4), "train_seconds": round(time.perf_counter() - start, 1)}


def accuracy_rows(trunks: list[str], seeds: list[int], epochs: int) -> list[dict]:
    """Every model on every seed's split, printed as it finishes, then one summary row per model."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for row in [tfidf_row(seed)] + [hydranet_row(name, seed, epochs, Path(tmp)) for name in trunks]:
                print(json.dumps(row), flush=True)
                rows.append(row)
    summaries = []
    for model in dict.fromkeys(row["model"] for row in rows):
        accuracies = [row["test_accuracy"] for row in rows if row["model"] == model]
        summaries.append({"part": "accuracy", "model": model, "seeds": seeds,
                          "mean_test_accuracy": round(statistics.mean(accuracies), 4),
                          "spread": round((max(accuracies) - min(accuracies)) / 2, 4)})
    return summaries


# --- report -----------------------------------------------------------------------------------------------------


def machine() -> dict:
    """What the numbers were measured on, including the load that other jobs put on it."""
    return {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def print_speed(rows: list[dict]) -> None:
    print(f"\n{'contender':<36} {'tokens/s':>9} {'x bare':>7} {'x fp32':>7} {'x ours':>7}")
    for row in rows:
        cells = [row.get(k) for k in ("ratio_to_bare_loop", "bf16_speedup", "ratio_to_transformer")]
        print(f"{row['contender']:<36} {row['tokens_per_s']:>9,} " + " ".join(f"{c:>7.2f}" if c else f"{'':>7}" for c in cells))


def print_accuracy(rows: list[dict]) -> None:
    print(f"\n{'model':<24} {'test accuracy':>16}  seeds")
    for row in rows:
        print(f"{row['model']:<24} {row['mean_test_accuracy']:>9.3f} ± {row['spread']:.3f}  {row['seeds']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["speed", "accuracy"], choices=["speed", "accuracy"])
    parser.add_argument("--steps", type=int, default=8, help="speed: training steps per block")
    parser.add_argument("--rounds", type=int, default=5, help="speed: blocks per contender (the median is reported)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"], help="speed: precisions")
    parser.add_argument("--trunks", nargs="+", default=list(TRUNKS), choices=list(TRUNKS), help="trunks measured")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="accuracy: seeds")
    parser.add_argument("--epochs", type=int, default=5, help="accuracy: epochs per run (the experiment's 5)")
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    if "speed" in args.parts:
        rows = speed_rows(args.trunks, args.steps, args.rounds, args.precisions)
        for row in rows:
            print(json.dumps(row), flush=True)
        print_speed(rows)
    if "accuracy" in args.parts:
        rows = accuracy_rows(args.trunks, args.seeds, args.epochs)
        for row in rows:
            print(json.dumps(row), flush=True)
        print_accuracy(rows)
    print(json.dumps({"machine at the end": machine()}), flush=True)


if __name__ == "__main__":
    main()
