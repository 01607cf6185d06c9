"""Gradient diagnostics: cosines against hand-built gradient directions, sampling, and no effect on training."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from hydranet import Experiment
from hydranet.files import read_tensors
from hydranet.train.diagnostics import GradientDiagnostics


def toy_losses(w, x, y):
    """Terms whose gradients on w are x, −x, y and 2x: cosines −1, 0 and 1 by construction."""
    return {"a": w @ x, "b": -(w @ x), "c": w @ y, "d": 2 * (w @ x), "const": torch.tensor(3.0)}


def run_epoch(diagnostics, steps, losses_of, w):
    trainer = SimpleNamespace(shared=[w])
    record = {}
    diagnostics.on_epoch_start(trainer)
    for _ in range(steps):
        diagnostics.on_losses(trainer, losses_of())
    diagnostics.on_epoch_end(trainer, record)
    return record


class Toy:
    def __init__(self):
        self.w = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
        self.x, self.y = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([-2.0, 1.0, 0.0])

    def __call__(self):
        return toy_losses(self.w, self.x, self.y)


def test_cosine_and_conflict_rate_of_known_directions():
    toy = Toy()
    record = run_epoch(GradientDiagnostics(every=1), 4, toy, toy.w)
    grads = record["gradients"]
    assert grads["samples"] == 4
    assert grads["cosine"]["a|b"] == pytest.approx(-1) and grads["conflict_rate"]["a|b"] == 1
    assert grads["cosine"]["a|c"] == pytest.approx(0, abs=1e-7) and grads["conflict_rate"]["a|c"] == 0
    assert grads["cosine"]["a|d"] == pytest.approx(1) and grads["conflict_rate"]["a|d"] == 0
    assert not any("const" in pair for pair in grads["cosine"])  # a term that reaches no parameter is left out
    assert toy.w.grad is None  # diagnostics never touch .grad


def test_samples_every_k_steps_from_each_epoch_start():
    toy = Toy()
    record = run_epoch(GradientDiagnostics(every=3), 7, toy, toy.w)
    assert record["gradients"]["samples"] == 3  # steps 0, 3 and 6


def test_nothing_recorded_for_a_single_term():
    toy = Toy()
    record = run_epoch(GradientDiagnostics(every=1), 3, lambda: {"a": toy.w @ toy.x}, toy.w)
    assert "gradients" not in record


def test_zero_gradient_gives_nan():
    toy = Toy()
    # a term whose gradient is exactly zero has no direction: its cosine is NaN, not an error
    record = run_epoch(GradientDiagnostics(every=1), 2, lambda: {"a": toy.w @ toy.x, "z": 0 * (toy.w @ toy.x)}, toy.w)
    assert math.isnan(record["gradients"]["cosine"]["a|z"])


def quickstart_run(path, every):
    overrides = {"data.limit": 300, "train.epochs": 2, "train.batch_size": 32, "mtl.diagnostics_every": every,
                 "train.early_stopping.monitor": None}
    return Experiment("quickstart", overrides).fit(path)


def test_diagnostics_do_not_change_training(tmp_path, one_thread):
    on, off = quickstart_run(tmp_path / "on", 1), quickstart_run(tmp_path / "off", 0)
    weights_on = read_tensors(on.dir / "model.safetensors")[0]
    weights_off = read_tensors(off.dir / "model.safetensors")[0]
    assert weights_on.keys() == weights_off.keys()
    assert all(torch.equal(weights_on[k], weights_off[k]) for k in weights_on)
    lines = [json.loads(line) for line in (on.dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["gradients"]["samples"] == 7  # 210 train examples, 32 per step
    assert set(lines[0]["gradients"]["cosine"]) == {"digit|parity", "digit|ink", "parity|ink"}
    assert all(-1 <= v <= 1 for v in lines[1]["gradients"]["cosine"].values())
    assert "gradients" not in (off.dir / "metrics.jsonl").read_text()
