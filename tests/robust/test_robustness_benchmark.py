"""benchmarks/robustness.py: PGD-20 and APGD-100 scored on the same examples, the paired counts and the
APGD-weaker flag, and the summary across seeds."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("robustness")


def tiny_image_folder(root: Path) -> Path:
    """Two classes of 8×8 images, dark and bright, in train/ and test/ folders (as the CIFAR-10 archive)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 6)):
        for label, (low, high) in {"dark": (0, 120), "bright": (135, 256)}.items():
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                image = rng.integers(low, high, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / label / f"{i}.png")
    return root


def outcomes(clean, pgd, apgd):
    """Per-example right/wrong vectors from lists of 0/1."""
    return {"clean": torch.tensor(clean, dtype=torch.bool), "pgd20": torch.tensor(pgd, dtype=torch.bool),
            "apgd100": torch.tensor(apgd, dtype=torch.bool)}


def test_both_attacks_see_the_same_examples(bench, tmp_path, monkeypatch, one_thread):
    """Every attack gets the one seeded draw of `--eval` test images, so the columns compare image by image."""
    seen = {}
    real = bench.adversarial_inputs

    def spy(run, batch, attack, *args):
        seen[attack] = batch["x"].clone()
        return real(run, batch, attack, *args)

    monkeypatch.setattr(bench, "adversarial_inputs", spy)
    args = argparse.Namespace(data=str(tiny_image_folder(tmp_path / "images")), epochs=1, limit=None, eval=8,
                              sweep=0, precision="fp32", threads=1, keep=None, rescore=None, seeds=1)
    row = bench.run("none", 0, args)
    assert set(seen) == {"pgd", "apgd"} and len(seen["pgd"]) == 8
    assert torch.equal(seen["pgd"], seen["apgd"])
    assert row["eval_examples"] == 8 and row["seed"] == 0 and row["precision"] == "fp32"
    assert row["apgd100_accuracy"] <= row["clean_accuracy"] and row["pgd20_accuracy"] <= row["clean_accuracy"]


def test_compare_counts_pairs_and_flags_a_weaker_apgd(bench):
    # 100 examples, all right clean; PGD-20 fools 0–9, APGD fools 5–11: 5 fooled by PGD only, 2 by APGD only
    clean, pgd, apgd = [1] * 100, [0] * 10 + [1] * 90, [1] * 5 + [0] * 7 + [1] * 88
    result = bench.compare(outcomes(clean, pgd, apgd))
    assert result["pgd20_fooled_apgd100_not"] == 5 and result["apgd100_fooled_pgd20_not"] == 2
    assert result["pgd20_accuracy"] == 0.90 and result["apgd100_accuracy"] == 0.93
    assert result["apgd_weaker"]  # 3 points above PGD-20: beyond the 2-point tolerance on 100 images
    assert not bench.compare(outcomes(clean, pgd, [1] * 2 + [0] * 8 + [1] * 90))["apgd_weaker"]  # 2 points: noise


def test_compare_ignores_examples_wrong_before_the_attack(bench):
    """An example the model gets wrong clean was not fooled by either attack, whatever they return."""
    result = bench.compare(outcomes([0, 1, 1], [0, 0, 1], [1, 1, 1]))
    assert result["pgd20_fooled_apgd100_not"] == 1 and result["apgd100_fooled_pgd20_not"] == 0


def test_summary_across_seeds(bench):
    rows = [{"seed": s, "apgd_weaker": s == 1, "clean_accuracy": c, "pgd20_accuracy": 0.3, "apgd100_accuracy": 0.29,
             "pgd20_fooled_apgd100_not": 0, "train_seconds": 10.0} for s, c in ((0, 0.4), (1, 0.5), (2, 0.6))]
    summary = bench.summarize("pgd", rows)
    assert summary["seeds"] == [0, 1, 2] and summary["apgd_weaker_seeds"] == [1]
    assert summary["clean_accuracy"] == {"mean": 0.5, "std": 0.1, "values": [0.4, 0.5, 0.6]}
    assert bench.spread(summary["clean_accuracy"]) == "0.500 ± 0.100"
    assert bench.summarize("pgd", rows[:1])["clean_accuracy"]["std"] is None  # one seed: no spread to report
