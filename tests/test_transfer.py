"""Transfer: init_from with its load report, freezing, gradual unfreezing, discriminative learning rates,
label fractions."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from hydranet import Experiment
from hydranet.data.split import label_subset
from hydranet.errors import UserError
from hydranet.files import write_tensors
from hydranet.models.pretrained import init_from, rename
from hydranet.train.freeze import Freezer
from hydranet.train.optim import param_groups
from tests.conftest import tiny_table_config


class Tiny(nn.Module):
    """trunk: Linear(3, 4) + BatchNorm1d(4); heads: a (4 → 2) and b (4 → 1)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 1)})


def test_load_report_on_a_hand_made_state_dict(tmp_path):
    model = Tiny()
    source = {
        "backbone.0.weight": torch.ones(4, 3),  # renamed to trunk.0.weight: loaded
        "backbone.0.bias": torch.ones(5),  # wrong shape: mismatched
        "heads.a.weight": torch.ones(2, 4),  # a head: skipped unless init_heads
        "fc.weight": torch.ones(10, 4),  # nothing like it in the model: unexpected
    }
    write_tensors(tmp_path / "w.safetensors", source)
    report = init_from(model, tmp_path / "w.safetensors", {"backbone.": "trunk."})
    assert report.loaded == ["trunk.0.weight"]
    assert report.mismatched == [("trunk.0.bias", [5], [4])]
    assert report.skipped == ["heads.a.weight"] and report.unexpected == ["fc.weight"]
    assert set(report.missing) == {"trunk.0.bias", "trunk.1.weight", "trunk.1.bias", "trunk.1.running_mean",
                                   "trunk.1.running_var", "trunk.1.num_batches_tracked"}
    assert torch.equal(model.trunk[0].weight, torch.ones(4, 3))
    assert "loaded 1 tensors" in str(report) and "shape mismatch: trunk.0.bias" in str(report)
    with_heads = init_from(Tiny(), tmp_path / "w.safetensors", {"backbone.": "trunk."}, heads=True)
    assert "heads.a.weight" in with_heads.loaded and "heads.b.bias" in with_heads.missing


def test_plain_pytorch_file_with_a_wrapper_and_an_empty_prefix_map(tmp_path):
    trunk = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    torch.save({"state_dict": trunk.state_dict(), "epoch": 3}, tmp_path / "trunk.pt")
    model = Tiny()
    report = init_from(model, tmp_path / "trunk.pt", {"": "trunk."})
    assert not report.missing and not report.unexpected and len(report.loaded) == 7  # with BatchNorm statistics
    assert torch.equal(model.trunk[0].weight, trunk[0].weight)
    assert rename({"a.b": 1, "ab": 2, "x": 3}, {"a.": "z.", "a": "y"}) == {"z.b": 1, "yb": 2, "x": 3}  # longest prefix wins


def test_nothing_matching_is_an_error(tmp_path):
    write_tensors(tmp_path / "w.safetensors", {"encoder.weight": torch.ones(4, 3)})
    with pytest.raises(UserError, match="no tensor of .* matches the model.*init_map"):
        init_from(Tiny(), tmp_path / "w.safetensors")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a safetensors or PyTorch weights file"):
        init_from(Tiny(), tmp_path / "junk.pt")
    with pytest.raises(UserError, match=r"not a hydranet run directory \(no config.yaml\)"):
        init_from(Tiny(), tmp_path)  # a folder is read as a run directory, as every reader of runs does
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match="holds neither trunk.safetensors nor model.safetensors"):
        init_from(Tiny(), tmp_path)


def test_gradual_unfreezing_schedule():
    groups = [nn.Linear(1, 1) for _ in range(3)]
    assert [Freezer(groups, None, False).frozen_count(e) for e in range(4)] == [3, 3, 3, 3]
    assert [Freezer(groups, 3, False).frozen_count(e) for e in range(4)] == [3, 3, 0, 0]
    assert [Freezer(groups, 2, True).frozen_count(e) for e in range(6)] == [3, 2, 1, 0, 0, 0]


def trunk_state(model):
    return {k: v.clone() for k, v in model.trunk.state_dict().items()}


class Snapshots:
    """Callback: the trunk's state after every epoch."""

    def __init__(self):
        self.states = []

    def on_epoch_end(self, trainer, record):
        self.states.append(trunk_state(trainer.model))


def test_frozen_trunk_stays_bit_identical_until_unfrozen(tmp_path, tiny_csv, one_thread):
    source = tiny_table_config(tiny_csv, epochs=1)
    source["model"]["trunk"].update(batch_norm=True, hidden=[16, 8], dropout=0.2)  # BN statistics must stay frozen too
    first = Experiment(source).fit(tmp_path / "source")
    cfg = tiny_table_config(tiny_csv, epochs=3, freeze="trunk", unfreeze_at=3)
    cfg["model"]["trunk"] = source["model"]["trunk"]
    cfg["model"]["init_from"] = str(first.dir)
    snapshots = Snapshots()
    run = Experiment(cfg).fit(tmp_path / "target", callbacks=[snapshots])
    start = {k[len("trunk."):]: v for k, v in first.model.state_dict().items() if k.startswith("trunk.")}
    for epoch in (0, 1):  # frozen: weights and BatchNorm statistics untouched, weight decay included
        assert all(torch.equal(snapshots.states[epoch][k], start[k]) for k in start)
    assert not torch.equal(snapshots.states[2]["layers.1.weight"], start["layers.1.weight"])  # unfrozen at epoch 3
    report = json.loads((run.dir / "init.json").read_text())
    assert len(report["loaded"]) == len(start) and report["skipped"]  # the trunk, not the heads


def test_discriminative_learning_rates_reach_the_optimizer(tmp_path, tiny_csv, one_thread):
    rates = []

    class Rates:
        def on_step_end(self, trainer, losses):
            rates.append({(g.get("lr_mult", 1.0), g["weight_decay"]): g["lr"] for g in trainer.optimizer.param_groups})

    cfg = tiny_table_config(tiny_csv, epochs=1, trunk_lr_mult=0.1, optimizer={"lr": 0.01, "weight_decay": 0.05})
    run = Experiment(cfg).fit(tmp_path / "run", callbacks=[Rates()])
    assert set(rates[-1]) == {(1.0, 0.05), (1.0, 0.0), (0.1, 0.05), (0.1, 0.0)}
    assert rates[-1][(0.1, 0.05)] == pytest.approx(0.1 * rates[-1][(1.0, 0.05)])
    trunk_ids = {id(p) for p in run.model.trunk.parameters()}
    for group in param_groups(run.model, 0.05, 0.1):
        assert all((id(p) in trunk_ids) == ("lr_mult" in group) for p in group["params"])


def test_label_subset_is_stratified_and_nested():
    strata = np.repeat(np.arange(4), 100)  # 4 classes × 100
    train = torch.arange(400)
    ten = label_subset(train, 0.1, seed=0, strata=strata)
    assert np.bincount(strata[ten.numpy()]).tolist() == [10, 10, 10, 10]
    assert set(label_subset(train, 0.05, seed=0, strata=strata).tolist()) <= set(ten.tolist())
    assert torch.equal(label_subset(train, 1.0, 0, strata), train)
    with pytest.raises(UserError, match="labels_fraction"):
        label_subset(train[:10], 0.01, 0, strata)


def test_labels_fraction_shrinks_train_only(one_thread):
    from hydranet.config import load_config
    from hydranet.data import build_dataset

    full = build_dataset(load_config("quickstart"))
    tenth = build_dataset(load_config("quickstart", ["data.labels_fraction=0.1"]))
    assert len(tenth.index["train"]) == pytest.approx(0.1 * len(full.index["train"]), abs=10)
    assert torch.equal(tenth.index["val"], full.index["val"]) and torch.equal(tenth.index["test"], full.index["test"])
    counts = torch.bincount(tenth.targets["digit"][tenth.index["train"]])
    assert counts.min() >= counts.max() - 1  # balanced over the 10 digits
