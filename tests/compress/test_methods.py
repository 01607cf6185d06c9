"""The `compress:` config section: the method and its options come from the run's config, `--set compress.…`, then
`--method` and the flags; refusals are one line naming the key or flag; `--method distill` is `train --teacher`."""

import json

import pytest
import torch

from hydranet.compress.methods import choose
from hydranet.config import load_config
from hydranet.rundir import RunDir
from hydranet.train import load_run


def test_the_method_comes_from_the_config_then_set_then_the_flags():
    stored = load_config("quickstart", ["compress.method={name: int8-static, calibration: 64}"])
    assert choose(stored, None, [], {}).model_dump() == {"name": "int8-static", "calibration": 64}
    chosen = choose(stored, "prune", ["compress.method.amount=0.7", "compress.method.epochs=2"], {"amount": 0.6})
    assert chosen.name == "prune" and (chosen.options.amount, chosen.options.epochs) == (0.6, 2)
    assert choose(stored, "int8-dynamic", [], {}).model_dump() == {"name": "int8-dynamic"}  # calibration dropped
    # another method starts from its own defaults, not from the stored ones of the configured method (prune's epochs 0)
    assert choose(load_config("quickstart"), "qat", [], {}).model_dump() == {"name": "qat", "epochs": 2, "calibration": 512}


@pytest.mark.parametrize("args, message", [
    (["--set", "train.epochs=3"], "error: --set train.epochs=3: compress takes compress.… keys only"),
    (["--set", "compress.method.amount=2"], "error: config: compress.method.amount:"),
    (["--set", "compress.method.weird=1"], "error: config: unknown key 'compress.method.weird'"),
    (["--set", "compress.metod.amount=0.9"], "error: config: unknown key 'compress.metod'"),
    (["--set", "compress.method=5"], "error: config: compress.method: Input should be a valid dictionary"),
    (["--set", "compress=3"], "error: config: compress: Input should be a valid dictionary"),
    (["--method", "int8-static", "--amount", "0.5"], "error: --amount: the compression method int8-static has no option"),
    (["--method", "distill"], "error: compress.method.teacher: distillation needs a teacher run"),
])
def test_bad_compress_settings_are_one_line(cli, digits_run, tmp_path, args, message):
    code, _, err = cli("compress", digits_run, "-o", tmp_path / "c", *args)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "c").exists()


def test_an_ensemble_run_is_refused_not_compressed_to_nothing(cli, digits_run, tmp_path):
    """Its layers are EnsembleLinear: pruning found nothing to prune and QAT wrapped no layer."""
    import shutil

    ensemble = tmp_path / "ensemble"
    shutil.copytree(digits_run, ensemble)
    config = (ensemble / "config.yaml").read_text()
    assert config.count("\n  ensemble: 1\n") == 1
    (ensemble / "config.yaml").write_text(config.replace("\n  ensemble: 1\n", "\n  ensemble: 2\n"))
    code, _, err = cli("compress", ensemble, "--method", "qat", "-o", tmp_path / "c")
    assert code == 2 and err.startswith("error: compress.method: qat prunes or quantizes plain conv and linear layers")
    assert not (tmp_path / "c").exists()


def test_compress_without_method_runs_the_configured_one(cli, digits_run, tmp_path):
    code, _, err = cli("compress", digits_run, "--set", "compress.method={name: prune, amount: 0.7}", "-o", tmp_path / "p", "-q")
    assert code == 0, err
    pruned = RunDir.open(tmp_path / "p").read_config()
    assert pruned.compress.method.model_dump()["amount"] == 0.7  # the new run records what made it


@pytest.mark.slow  # trains two students: about 11 s on the busy machine
def test_compress_distill_is_train_with_a_teacher(cli, digits_run, tmp_path):
    """One implementation: the same student config and seed give the same weights either way."""
    code, _, err = cli("compress", digits_run, "--method", "distill", "--teacher", digits_run, "-o", tmp_path / "c", "-q")
    assert code == 0, err
    code, _, err = cli("train", digits_run / "config.yaml", "--teacher", digits_run, "--run-dir", tmp_path / "t", "-q")
    assert code == 0, err
    via_compress, via_train = load_run(tmp_path / "c"), load_run(tmp_path / "t")
    assert via_compress.config.distill.teacher == str(digits_run) == via_train.config.distill.teacher
    report = json.loads((tmp_path / "c" / "compress.json").read_text())
    assert report["method"] == "distill" and report["source"] == str(digits_run)
    for name, tensor in via_train.model.state_dict().items():
        assert torch.equal(tensor, via_compress.model.state_dict()[name]), name
