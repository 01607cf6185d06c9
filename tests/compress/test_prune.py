"""Pruning: the cubic schedule on a hand case, global magnitude pruning to the requested sparsity (kept through
fine-tuning), structured pruning that shrinks the model and keeps its outputs, and pruned runs that load,
evaluate, predict and export like any run."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import hydranet as hn
from hydranet.compress.profile import flops_per_example, parameter_counts
from hydranet.compress.prune import PruneOptions, cubic_sparsity, magnitude_prune, sparsity
from hydranet.compress.run import _check, compress_run
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.models import build_model
from hydranet.train import load_run


def test_cubic_schedule_on_a_hand_case():
    """Zhu & Gupta's s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ with s_f 0.8, t0 0, nΔt 100."""
    assert cubic_sparsity(0, 0.8, 0, 100) == 0.0
    assert cubic_sparsity(50, 0.8, 0, 100) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    assert cubic_sparsity(90, 0.8, 0, 100) == pytest.approx(0.8 - 0.8 * 0.1 ** 3)
    assert cubic_sparsity(100, 0.8, 0, 100) == cubic_sparsity(150, 0.8, 0, 100) == 0.8
    assert cubic_sparsity(0, 0.8, 0, 0) == 0.8  # no ramp: one-shot


def test_magnitude_pruning_zeroes_the_smallest_weights_across_layers():
    """Ranked globally: a layer of small weights loses more than a layer of large ones. Conv weights in
    channels_last (as image runs train them) are pruned too, though they cannot be flattened as views."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 8)).to(memory_format=torch.channels_last)
    with torch.no_grad():
        model[0].weight.mul_(100)
    smallest = model[2].weight.detach().abs().flatten().sort().values[:16]
    magnitude_prune(model, 0.2)  # 20% of 72 + 32 = 104 weights: 21 zeroed
    assert sparsity(model) == pytest.approx(21 / 104)
    assert (model[2].weight == 0).sum() >= 16 and bool((model[2].weight.abs().flatten().sort().values[:16] == 0).all())
    assert smallest.abs().max() > 0 and isinstance(model[2].weight, nn.Parameter)


@pytest.mark.parametrize("schedule", ["oneshot", "gradual"])
def test_sparsity_is_reached_and_kept_through_fine_tuning(digits_run, tmp_path, schedule):
    options = PruneOptions(amount=0.8, schedule=schedule, epochs=2, every=2, end=0.5)
    run = compress_run(digits_run, options, tmp_path / "pruned")
    loaded = load_run(run.dir)
    assert sparsity(loaded.model) == pytest.approx(0.8, abs=1e-3)
    report = json.loads((run.dir / "compress.json").read_text())
    assert report["sparsity"] == pytest.approx(0.8, abs=1e-3) and report["options"]["schedule"] == schedule
    assert len(run.history) == 2  # fine-tuned through the trainer: its epochs, metrics and checkpoint


def test_structured_pruning_shrinks_the_model_and_keeps_outputs(digits_run, tmp_path):
    source = load_run(digits_run)
    run = compress_run(digits_run, PruneOptions(structure="channels", amount=0.5), tmp_path / "pruned")
    loaded = load_run(run.dir)  # built at the recorded widths from the run's own config
    before, after = parameter_counts(source.model), parameter_counts(loaded.model)
    assert after["total"] < 0.5 * before["total"]
    assert flops_per_example(loaded.model, (1, 8, 8)) < 0.5 * flops_per_example(source.model, (1, 8, 8))
    assert loaded.config.model.pruned["trunk.features.0.weight"] == [4, 1, 3, 3]
    x = build_dataset(loaded.config).split("test")["x"]
    with torch.no_grad():
        outputs, reference = loaded.model(x), source.model(x)
    for task, out in outputs.items():
        assert out.shape == reference[task].shape and bool(torch.isfinite(out).all()), task


def test_structured_pruning_follows_a_resnets_residual_additions(tmp_path):
    """Channels removed from a block's output are removed from its shortcut too (Torch-Pruning's dependency graph),
    so the pruned ResNet runs and loads at its recorded widths (benchmarks/compress.py's cifar10-fast rows)."""
    overrides = {"data.limit": 200, "train.epochs": 1, "train.progress": False, "train.threads": 1,
                 "model.trunk": {"name": "resnet", "channels": [8, 16], "blocks": [1, 1]}}
    source = hn.Experiment("quickstart", overrides).fit(tmp_path / "resnet")
    run = compress_run(source.dir, PruneOptions(structure="channels", amount=0.5), tmp_path / "pruned")
    loaded = load_run(run.dir)
    assert parameter_counts(loaded.model)["total"] < 0.5 * parameter_counts(load_run(source.dir).model)["total"]
    x = build_dataset(loaded.config).split("test")["x"]
    with torch.no_grad():
        for task, out in loaded.model(x).items():
            assert len(out) == len(x) and bool(torch.isfinite(out).all()), task


def test_taylor_importance_ranks_by_the_task_losses_not_by_weights(digits_run, tmp_path):
    """Taylor scores channels by |weight × gradient of the summed task losses|: it keeps other channels than L1."""
    kept = {}
    for importance in ("l1", "taylor"):
        options = PruneOptions(structure="channels", amount=0.5, importance=importance)
        kept[importance] = load_run(compress_run(digits_run, options, tmp_path / importance).dir).model
    assert parameter_counts(kept["taylor"])["total"] == parameter_counts(kept["l1"])["total"]
    assert not torch.equal(kept["taylor"].trunk.dense[1].weight, kept["l1"].trunk.dense[1].weight)


def test_a_pruned_run_evaluates_and_predicts(cli, digits_run, tmp_path):
    code, _, err = cli("compress", digits_run, "--structure", "channels", "--amount", "0.5", "-o", tmp_path / "p", "-q")
    assert code == 0, err
    code, out, err = cli("evaluate", tmp_path / "p")
    assert code == 0 and "digit" in out, err
    images = np.full((2, 1, 8, 8), 7, dtype=np.uint8)
    model = hn.load(tmp_path / "p")
    assert list(model.predict(images).columns)[:1] == ["digit"]


@pytest.mark.slow  # the ONNX export takes about 10 s
def test_a_pruned_run_exports(digits_run, tmp_path):
    run = compress_run(digits_run, PruneOptions(structure="channels", amount=0.5), tmp_path / "p")
    assert hn.load(run.dir).export(tmp_path / "onnx")["passed"]


@pytest.mark.parametrize("shapes, message", [
    ("{trunk.nothing.weight: [3, 3]}", "trunk.nothing.weight is not a tensor of the model"),
    ("{trunk.dense.1.weight: [3]}", "trunk.dense.1.weight is not a 1-dimensional tensor of the model"),
])
def test_a_width_that_does_not_fit_the_model_is_one_line(shapes, message):
    cfg = load_config("quickstart", [f"model.pruned={shapes}"])
    with pytest.raises(UserError, match=f"^model.pruned: {message}"):
        build_model(cfg.model, (1, 8, 8), {})


@pytest.mark.parametrize("args, message", [
    (["--amount", "1.5"], "error: --amount:"),
    (["--schedule", "gradual", "--structure", "channels", "--epochs", "1"], "error: --schedule: gradual pruning is unstructured"),
    (["--schedule", "gradual"], "error: --epochs:"),
    (["--method", "shrink"], "error: --method:"),
])
def test_compress_refuses_bad_flags_in_one_line(cli, digits_run, tmp_path, args, message):
    code, _, err = cli("compress", digits_run, "-o", tmp_path / "p", *args)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


def test_compress_never_writes_into_a_folder_that_holds_files(cli, digits_run, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.txt").write_text("keep")
    code, _, err = cli("compress", digits_run, "-o", tmp_path / "p")
    assert code == 2 and "is not empty" in err and (tmp_path / "p" / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("sharing", ["cgc", "cross_stitch"])
def test_channel_pruning_refuses_sharings_torch_pruning_cannot_follow(sharing):
    """On cgc Torch-Pruning removed channels the task experts still index (an IndexError at the next forward)."""
    with pytest.raises(UserError, match=f"^--structure: channel pruning supports model.sharing hard and mmoe, not {sharing}"):
        _check(PruneOptions(structure="channels"), sharing)
