"""benchmarks/distill.py and benchmarks/compress.py: on CIFAR-10 (`seed-cnn`) the student the docs describe is the one
the setup builds, and the distillation benchmark runs end to end at toy size (slow: reads ../shared/data); the
compression benchmark's side-by-side latency pass."""

from pathlib import Path

import pytest
from tests.benchmark_scripts import load_benchmark

import hydranet as hn
from hydranet.compress.profile import flops_per_example, parameter_counts
from hydranet.models import build_model
from hydranet.tasks import Task, TaskInfo

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def seed_cnn_model(overrides: dict):
    cfg = hn.Experiment("seed-cnn", overrides).config
    tasks = {"label": Task("label", cfg.tasks["label"], TaskInfo(kind="classification", outputs=10))}
    return build_model(cfg.model, (3, 32, 32), tasks).eval()


def test_seed_cnn_student_is_the_small_cnn_the_docs_describe():
    """Closed forms, layer by layer (32×32 → valid 3×3 conv 30 → pool 15 → conv 13 → pool 6): the teacher is the
    Keras CNN, the student the same shape at a quarter of the channels and half the dense width, 8× fewer
    parameters and 10× fewer FLOPs (a multiply-add counts two; pooling and ReLU count nothing)."""
    distill = load_benchmark("distill")
    setup, trunk = distill.SETUPS["seed-cnn"]
    teacher, student = seed_cnn_model(setup), seed_cnn_model({**setup, "model.trunk": trunk})
    assert parameter_counts(teacher)["total"] == (27 * 32 + 32) + (288 * 64 + 64) + (2304 * 64 + 64) + (64 * 10 + 10)
    assert parameter_counts(student)["total"] == (27 * 8 + 8) + (72 * 16 + 16) + (576 * 32 + 32) + (32 * 10 + 10)
    assert flops_per_example(teacher, (3, 32, 32)) == 2 * (900 * 32 * 27 + 169 * 64 * 288 + 2304 * 64 + 64 * 10)
    assert flops_per_example(student, (3, 32, 32)) == 2 * (900 * 8 * 27 + 169 * 16 * 72 + 576 * 32 + 32 * 10)
    compress = load_benchmark("compress")
    assert compress.SETTINGS["seed-cnn"] == setup  # the compression table's fp32 run is the distillation teacher


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.exists(), reason="needs ../shared/data")
def test_seed_cnn_distillation_benchmark_runs(tmp_path, one_thread):
    """Teacher, student alone and distilled on 600 CIFAR-10 images for one epoch: the three runs have the models
    the setup names, and the table reports them."""
    distill = load_benchmark("distill")
    rows = distill.distill_benchmark("seed-cnn", [0], {"temperature": 4.0, "alpha": 0.5}, tmp_path,
                                     echo=lambda line: None, overrides={"data.limit": 600, "train.epochs": 1})
    assert [r["model"] for r in rows] == ["teacher", "alone", "distilled"]
    assert [r["params"] for r in rows] == [167_562, 20_186, 20_186]
    assert all(0 <= r["label/accuracy"] <= 1 for r in rows)
    assert "| distilled | 20,186 | 1 |" in distill.table(rows)


def test_the_latency_pass_times_every_row_in_turn_and_keeps_its_median():
    """compress.py's side-by-side pass: rounds interleave the rows (a, b, a, b, …), so a busy moment slows all of
    them alike, and each row keeps the median of its rounds at both batch sizes."""
    compress = load_benchmark("compress")
    calls = []

    def timer(name: str, values: list[float]):
        left = iter(values)

        def measure(repeats: int) -> dict:
            calls.append((name, repeats))
            value = next(left)
            return {"batch_1_ms": value, "batch_64_ms": 10 * value}
        return measure

    rows = [{"row": "a", "b1_ms": 0.0, "b64_ms": 0.0}, {"row": "b", "b1_ms": 0.0, "b64_ms": 0.0}]
    compress.side_by_side(rows, {"a": timer("a", [3.0, 1.0, 2.0]), "b": timer("b", [5.0, 90.0, 7.0])}, 4, 3)
    assert calls == [("a", 4), ("b", 4)] * 3
    assert (rows[0]["b1_ms"], rows[0]["b64_ms"]) == (2.0, 20.0)
    assert (rows[1]["b1_ms"], rows[1]["b64_ms"]) == (7.0, 70.0)
