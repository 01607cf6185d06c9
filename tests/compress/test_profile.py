"""`hydranet profile`: parameter counts that add up, FLOPs and peak memory against hand counts, the median latency
without its warm-up, profile.json through the CLI and its one-line refusals."""

import json

import pytest
import torch
from torch import nn

from hydranet.compress.profile import flops_per_example, median_ms, parameter_counts, peak_memory
from hydranet.train import load_run


def test_parameters_split_into_trunk_and_heads(digits_run):
    model = load_run(digits_run).model
    counts = parameter_counts(model)
    assert counts["total"] == counts["trunk"] + sum(counts["heads"].values())
    assert counts["shared"] == counts["trunk"] and counts["nonzero"] == counts["total"]
    assert counts["heads"]["digit"] == 33 * 10 and counts["heads"]["parity"] == 33  # Linear(32 → K) with bias


def test_flops_of_a_linear_layer_are_two_per_multiply_add():
    assert flops_per_example(nn.Linear(4, 3), (4,)) == 2 * 4 * 3


def test_peak_memory_counts_the_activations_alive_at_once():
    """Linear(10→100) → ReLU → Linear(100→5) on 8 rows: the ReLU's input and output (8×100 float32 each) are the
    fullest moment; the inputs and weights are not activations."""
    model = nn.Sequential(nn.Linear(10, 100), nn.ReLU(), nn.Linear(100, 5))
    memory = peak_memory(model, torch.zeros(8, 10))
    assert memory["activations"] == 2 * 8 * 100 * 4
    assert memory["weights"] == (10 * 100 + 100 + 100 * 5 + 5) * 4


def test_median_latency_excludes_the_warmup():
    calls = []
    median_ms(lambda: calls.append(1), repeats=5, warmup=3)
    assert len(calls) == 8


def test_profile_writes_profile_json(cli, digits_run):
    code, out, _ = cli("profile", digits_run, "--repeats", "2", "--threads", "1")
    report = json.loads((digits_run / "profile.json").read_text())
    assert code == 0 and "FLOPs per example" in out
    assert report["latency"]["threads"] == 1 and report["latency"]["repeats"] == 2
    assert report["flops_per_example"] > 0 and report["weights_bytes"] == (digits_run / "model.safetensors").stat().st_size
    assert report["latency"]["batch_1_ms"] > 0 and report["latency"]["batch_64_ms"] > 0


@pytest.mark.parametrize("args, flag", [(["--repeats", "0"], "--repeats"), (["--precision", "fp8"], "--precision")])
def test_profile_refuses_bad_flags_in_one_line(cli, digits_run, args, flag):
    code, _, err = cli("profile", digits_run, *args)
    assert code == 2 and err.startswith(f"error: {flag}") and len(err.strip().splitlines()) == 1
