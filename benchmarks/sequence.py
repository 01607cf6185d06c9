"""AG News: hydranet's transformer and gru trunks against TF-IDF + logistic regression on the same split.

The built-in `ag-news` experiment (7,600 articles, split 70/10/20 by the seed, stratified by topic) trains each
trunk; the baseline (scikit-learn, word uni- and bigrams, C chosen on val) reads the same train/val/test rows.
Prints one JSON line per row: test accuracy, train seconds and padded tokens/s (train examples × max_length ×
epochs / train seconds: what the trunk processes, padding included).

    python benchmarks/sequence.py                  # both trunks and the baseline, seed 0 (about 10 min on 2 cores)
    python benchmarks/sequence.py --trunks gru --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import hydranet as hn
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.build import load_raw

ROOT = Path(__file__).resolve().parents[1]
AG_NEWS = str(ROOT.parent / "shared" / "data" / "ag_news" / "ag_news_test.csv.gz")
TRUNKS = {
    "transformer": {"name": "transformer", "width": 128, "depth": 2, "heads": 4, "dropout": 0.1, "pooling": "mean"},
    "gru": {"name": "gru", "width": 128, "embedding": 128, "bidirectional": True, "pooling": "mean", "dropout": 0.1},
}


def experiment(seed: int, trunk: dict | None = None) -> dict:
    """The built-in ag-news experiment with the data path made absolute, and optionally another trunk."""
    cfg = load_config("ag-news").model_dump(mode="json")
    cfg["seed"], cfg["data"]["path"] = seed, AG_NEWS
    cfg["train"]["progress"] = False
    if trunk is not None:
        cfg["model"]["trunk"] = trunk
    return cfg


def hydranet_row(name: str, seed: int, workdir: Path) -> dict:
    """Train one trunk; its test accuracy and training speed."""
    cfg = experiment(seed, TRUNKS[name])
    run = hn.Experiment(cfg).fit(workdir / f"{name}-{seed}")
    summary = json.loads((run.dir / "summary.json").read_text())
    train_rows = len(build_dataset(run.config).index["train"])
    tokens = train_rows * cfg["data"]["text"]["max_length"] * cfg["train"]["epochs"]
    return {"model": name, "seed": seed, "test_accuracy": round(summary["test"]["topic"]["accuracy"], 4),
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
    return {"model": f"tfidf+logreg (C={best:g})", "seed": seed, "test_accuracy": round(float(accuracy), 4),
            "train_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trunks", nargs="+", default=list(TRUNKS), choices=list(TRUNKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            print(json.dumps(tfidf_row(seed)), flush=True)
            for name in args.trunks:
                print(json.dumps(hydranet_row(name, seed, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
