"""Step attributions of numeric-sequence runs (Integrated Gradients and saliency on the standardized features, the
validity channel kept): the one step that decides a toy label gets the largest attribution, IG's completeness holds
per example, steps.csv holds each real step (padding left out) in the data's units; methods and baselines that
mean nothing for steps are refused in one line."""

import json

import numpy as np
import pandas as pd
import pytest

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.explain import Settings, explain_run
from hydranet.train import load_run

STEPS = 12


@pytest.fixture(scope="module")
def spike_run(tmp_path_factory):
    """Two features of noise around 10 (f0) and -5 (f1), 5 to 12 steps; one random step of f0 jumps by ±4, and
    `sign` says which way: that one step decides the label."""
    folder = tmp_path_factory.mktemp("spike")
    rng = np.random.default_rng(0)
    n = 400
    lengths = rng.integers(5, STEPS + 1, size=n)
    x = rng.normal(0, 0.3, size=(n, STEPS, 2)) + np.array([10.0, -5.0])
    where = (rng.random(n) * lengths).astype(int)
    up = rng.random(n) < 0.5
    x[np.arange(n), where, 0] += np.where(up, 4.0, -4.0)
    np.savez(folder / "spikes.npz", x=x, lengths=lengths, sign=np.where(up, "up", "down"))
    config = {"name": "spikes", "data": {"source": "sequence", "path": str(folder / "spikes.npz")},
              "tasks": {"sign": {}},
              "model": {"trunk": {"name": "gru", "width": 16, "pooling": "mean"}},
              "train": {"epochs": 8, "batch_size": 32, "optimizer": {"lr": 0.01}, "progress": False, "threads": 1,
                        "precision": "fp32"}}
    return hn.Experiment(config).fit(folder / "run").dir


def test_the_deciding_step_gets_the_largest_attribution(spike_run, tmp_path):
    result = explain_run(load_run(spike_run), split="test", n=10, out=tmp_path / "out")
    steps = pd.read_csv(tmp_path / "out" / "steps.csv")
    assert list(steps.columns) == ["input", "target", "step", "f0", "f1", "attribution_f0", "attribution_f1",
                                   "attribution"]
    for _, example in steps.groupby("input"):
        spike = example["step"].iloc[int((example["f0"] - 10).abs().argmax())]
        top = example.iloc[int(example["attribution"].abs().argmax())]
        assert top["step"] == spike and abs(top["attribution_f0"]) > abs(top["attribution_f1"]), example
    check = result["completeness"]["sign"]
    assert check["within_bound"] == check["examples"] == 10
    for name, gap, delta in zip(result["inputs"], check["gap"], check["delta"]):  # the steps add up to the gap
        assert steps.loc[steps["input"] == name, "attribution"].sum() == pytest.approx(gap + delta, abs=1e-4)
    assert (tmp_path / "out" / "example-9.png").is_file()


def test_steps_csv_holds_each_real_step_in_the_datas_units(spike_run, tmp_path):
    explain_run(load_run(spike_run), split="test", n=5, out=tmp_path / "out", settings=Settings(method="saliency"))
    steps = pd.read_csv(tmp_path / "out" / "steps.csv")
    data = build_dataset(load_run(spike_run).config)
    raw = np.load(spike_run.parent / "spikes.npz")
    for name, example in steps.groupby("input", sort=False):
        row = int(data.index["test"][int(name[len("test["):-1])])
        length = int(raw["lengths"][row])
        assert example["step"].tolist() == list(range(length))  # padding left out
        np.testing.assert_allclose(example[["f0", "f1"]].to_numpy(), raw["x"][row, :length], rtol=1e-5)
    assert (steps[["attribution_f0", "attribution_f1"]] >= 0).all().all()  # saliency: magnitudes


def test_model_explain_gives_zero_attribution_to_padding(spike_run, tmp_path):
    model = hn.load(spike_run)
    raw = np.load(spike_run.parent / "spikes.npz")
    np.savez(tmp_path / "few.npz", x=raw["x"][:6], lengths=raw["lengths"][:6])
    values = model.explain(tmp_path / "few.npz")
    assert values.shape == (6, STEPS, 2)
    for row, length in enumerate(raw["lengths"][:6]):
        assert (values[row, length:] == 0).all() and np.abs(values[row, :length]).sum() > 0


@pytest.mark.parametrize("option, words", [
    (["--method", "occlusion"], "--method: 'occlusion' does not explain numeric-sequence runs"),
    (["--baseline", "mean"], "--baseline: 'mean' is not a sequence baseline"),
    (["--global"], "--global: global importance is for table runs"),
])
def test_what_means_nothing_for_steps_is_refused_in_one_line(spike_run, cli, tmp_path, option, words):
    code, _, err = cli("explain", spike_run, "--split", "test", *option, "-o", tmp_path / "out")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and words in err, err
    assert not (tmp_path / "out").exists()


def test_the_explanation_says_what_it_explained(spike_run, cli, tmp_path):
    code, _, err = cli("explain", spike_run, "--split", "test", "--n", "2", "-o", tmp_path / "out")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert (summary["method"], summary["settings"]["baseline"]) == ("integrated_gradients", "zeros")
    assert len(summary["completeness"]["sign"]["delta"]) == 2
