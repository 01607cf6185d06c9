"""`hydranet pretrain` / `probe` / `train --set model.init_from=…` from the CLI and the API, their errors,
and exact resume of an interrupted pretraining."""

import json

import pytest
import torch

import hydranet as hn
from hydranet import registry
from hydranet.files import read_tensors
from tests.conftest import StopAt
from tests.contracts.test_ssl import method_inputs

SMALL = ["--set", "model.trunk.channels=[8,16]", "--set", "model.trunk.dense=[32]", "--set", "data.limit=400",
         "--set", "train.epochs=2", "--set", "train.threads=1"]


@pytest.mark.parametrize("objective", [n for n in registry.names("ssl") if "image" in method_inputs(n)])
def test_pretrain_probe_and_transfer_from_the_cli(cli, tmp_path, objective):
    code, out, err = cli("pretrain", "quickstart", *SMALL, "--set", f"ssl.method={objective}", "--run-dir", "pre", "-q")
    assert code == 0, err
    pre = tmp_path / "pre"
    trunk = read_tensors(pre / "trunk.safetensors")[0]
    assert trunk and all(k.startswith("trunk.") for k in trunk)
    records = [json.loads(line) for line in (pre / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and objective in records[-1]["train"]
    assert 0.2 < records[-1]["knn"]["digit"]["accuracy"] <= 1.0  # labels only monitor: far above chance (0.1)
    assert json.loads((pre / "run.json").read_text())["kind"] == "pretrain"

    code, out, err = cli("probe", "pre", "--mode", "knn", "--labels-fraction", "0.5")
    assert code == 0, err
    probe = json.loads((pre / "probe-knn.json").read_text())
    assert probe["test"]["digit"]["accuracy"] > 0.3 and set(probe["test"]) == {"digit", "parity", "ink"}

    code, out, err = cli("train", "quickstart", *SMALL, "--set", "model.init_from=pre", "--set", "train.freeze=trunk",
                         "--run-dir", "fine", "-q")
    assert code == 0, err
    assert "init_from" in err and "loaded" in err  # the load report is printed
    fine = read_tensors(tmp_path / "fine" / "model.safetensors")[0]
    assert all(torch.equal(fine[k], v) for k, v in trunk.items())  # frozen for the whole run


def test_python_api_pretrain_and_probe(tmp_path, one_thread):
    exp = hn.Experiment("quickstart", {"model.trunk.channels": [8], "model.trunk.dense": [16], "data.limit": 300,
                                       "train.epochs": 1, "ssl.method": "denoising"})
    run = exp.pretrain(tmp_path / "pre")
    assert (run.dir / "trunk.safetensors").exists() and run.summary["method"] == "denoising"
    linear = exp.probe(run.dir, "linear", 0.5)
    assert linear["mode"] == "linear" and 0 < linear["test"]["digit"]["accuracy"] <= 1
    assert hn.probe(run.dir, "knn")["test"]["parity"]["accuracy"] > 0.4


@pytest.mark.parametrize("args, message", [
    (["probe", "nowhere", "--mode", "knn"], "nowhere: not a folder"),
    (["train", "quickstart", "--set", "model.init_from=missing.safetensors"], "model.init_from: missing.safetensors not found"),
    (["train", "quickstart", "--set", "train.freeze=[stage9]", "--set", "train.epochs=1"], "train.freeze: this trunk has no 'stage9'"),
    (["train", "quickstart", "--set", "train.freeze=head"], "train.freeze: 'head' must be none, trunk or a list"),
    (["train", "quickstart", "--set", "train.unfreeze_at=2"], "train.unfreeze_at: nothing is frozen"),
    (["pretrain", "quickstart", "--set", "model.sharing=mmoe"], "model.sharing: pretraining learns one trunk"),
    (["pretrain", "quickstart", "--set", "ssl.method=mae"], "ssl.method: unknown self-supervised method 'mae'"),
    (["train", "quickstart", "--set", "data.labels_fraction=0"], "data.labels_fraction"),
])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    code, out, err = cli(*args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or "stage9" in message  # nothing half-made (stage9 fails after the data loads)


def test_probe_refuses_a_trunk_of_another_shape(cli, tmp_path):
    assert cli("pretrain", "quickstart", *SMALL, "--set", "data.limit=200", "--set", "train.epochs=1", "--run-dir", "pre", "-q")[0] == 0
    code, out, err = cli("probe", "pre", "--experiment", "quickstart", *SMALL[:2], "--set", "model.trunk.channels=[4,16]")
    assert code == 2 and "its trunk does not fit" in err


def test_interrupted_pretraining_resumes_exactly(tmp_path, one_thread):
    from hydranet.ssl import resume_pretrain

    exp = hn.Experiment("quickstart", {"model.trunk.channels": [8], "model.trunk.dense": [16], "data.limit": 300,
                                       "train.epochs": 3, "ssl.method": "byol"})
    whole = exp.pretrain(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        exp.pretrain(tmp_path / "cut", callbacks=[StopAt(2)])
    resumed = resume_pretrain(tmp_path / "cut", progress=False)
    a, b = read_tensors(whole.dir / "trunk.safetensors")[0], read_tensors(resumed.dir / "trunk.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("objective", ["simclr", "denoising"])
def test_tables_pretrain_with_scarf_views_and_transfer(tmp_path, tiny_csv, one_thread, objective):
    from tests.conftest import tiny_table_config

    cfg = tiny_table_config(tiny_csv, epochs=3)
    small = {"decoder_hidden": 16} if objective == "denoising" else {"projection_hidden": 16, "projection_dim": 8}
    cfg["ssl"] = {"method": {"name": objective, **small}}
    run = hn.Experiment(cfg).pretrain(tmp_path / "pre")
    assert 0.5 <= run.summary["knn"]["kind"]["accuracy"] <= 1.0  # kNN on the binary task `kind` (x1 > 0)
    cfg["model"]["init_from"] = str(run.dir)
    fine = hn.Experiment(cfg).fit(tmp_path / "fine")
    assert json.loads((fine.dir / "init.json").read_text())["missing"] == []


def test_unlabeled_image_folder_pretrains_but_does_not_train(cli, tmp_path):
    from tests.data.datafiles import pixels, write_png

    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for i in range(40):
        write_png(folder / f"img{i:02d}.png", pixels(i, size=(8, 8)))
    args = ["--set", "data.source=image_folder", "--set", f"data.path={folder}", "--set", "model.trunk.channels=[8]",
            "--set", "model.trunk.dense=[16]", "--set", "train.epochs=1", "--set", "train.batch_size=16",
            "--set", "train.early_stopping.monitor=null"]
    code, out, err = cli("pretrain", "quickstart", *args, "--set", "tasks={label: {kind: classification}}",
                         "--set", "data.split.stratify=null", "--run-dir", "pre", "-q")
    assert code == 0, err
    assert (tmp_path / "pre" / "trunk.safetensors").exists()
    assert "knn" not in json.loads((tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()[0])  # nothing to monitor
    code, out, err = cli("train", "quickstart", *args, "--set", "tasks={label: {kind: classification}}",
                         "--set", "data.split.stratify=null")
    assert code == 2 and "has no labels" in err
