"""`model.ensemble: k`: k members sharing every Linear's weights, each with rank-1 adapters and its own bias; with
identical adapters they are one model, and the averaged prediction is what a loaded run's predict and evaluate give."""

import copy

import pytest
import torch

from hydranet.api import load
from hydranet.config import validate
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.models import build_model
from hydranet.models.ensemble import EnsembleLinear, make_ensemble
from hydranet.tasks import Task
from hydranet.train import fit
from tests.conftest import tiny_table_config


def plain_model(config, run_info):
    tasks = {name: Task(name, config.tasks[name], run_info.tasks[name]) for name in config.tasks}
    return build_model(config.model.model_copy(update={"ensemble": 1}), run_info.input_shape, tasks), tasks


def member(ensemble_state: dict, plain, i: int):
    """Member i as a plain model: W_i = diag(s_i)·W·diag(r_i), b_i (BatchEnsemble's own reading of its layers)."""
    state = {}
    for key, value in plain.state_dict().items():
        prefix = key.rsplit(".", 1)[0]
        if f"{prefix}.r" not in ensemble_state:
            state[key] = ensemble_state[key]
        elif key.endswith(".weight"):
            state[key] = ensemble_state[f"{prefix}.s"][i][:, None] * ensemble_state[key] * ensemble_state[f"{prefix}.r"][i]
        else:
            state[key] = ensemble_state[key][i]
    single = copy.deepcopy(plain)
    single.load_state_dict(state)
    return single.eval()


def test_members_with_identical_adapters_are_one_model(tiny_csv):
    config = validate(tiny_table_config(tiny_csv) | {"model": {"trunk": {"name": "mlp", "hidden": [16, 8]}}})
    info = build_dataset(config).info
    torch.manual_seed(0)
    plain, _ = plain_model(config, info)
    ensemble = make_ensemble(copy.deepcopy(plain), 4)
    layers = [m for m in ensemble.modules() if isinstance(m, EnsembleLinear)]
    assert len(layers) == 4 and not (layers[0].r == 1).all()  # trunk 2 + heads 2; the first starts diverse
    with torch.no_grad():
        layers[0].r.fill_(1.0)
    x = torch.randn(5, info.input_shape[0])
    got, expected = ensemble.eval()(x), plain.eval()(x)
    assert all(torch.allclose(got[t], expected[t], atol=1e-6) for t in expected)


def test_predict_and_evaluate_use_the_members_average(tiny_csv, tmp_path, one_thread):
    config = validate(tiny_table_config(tiny_csv, epochs=2) | {"model": {"trunk": {"name": "mlp", "hidden": [16]},
                                                                         "ensemble": 3}})
    run = fit(config, tmp_path / "run", progress=False)
    loaded = load(tmp_path / "run")
    plain, tasks = plain_model(config, run.info)
    members = [member(run.model.state_dict(), plain, i) for i in range(3)]
    split = build_dataset(config).split("test")
    with torch.no_grad():
        averaged = {t: torch.stack([m(split["x"])[t] for m in members]).mean(0) for t in tasks}
        assert all(torch.allclose(loaded.predict_raw(split["x"])[t], averaged[t], atol=1e-5) for t in tasks)
        assert not torch.allclose(members[0](split["x"])["size"], averaged["size"], atol=1e-4)  # members differ
    evaluated = loaded.evaluate("test")
    for name, task in tasks.items():
        expected = task.metrics(averaged[name], split[name])
        assert evaluated[name].keys() == expected.keys()
        assert all(abs(evaluated[name][k] - expected[k]) < 1e-5 for k in expected)


def test_pretraining_refuses_an_ensemble(tiny_csv, tmp_path):
    """Pretraining feeds the trunk alone, one member's rows: refused in one line before any run folder exists."""
    from hydranet.ssl.pretraining import pretrain

    config = validate(tiny_table_config(tiny_csv) | {"model": {"trunk": {"name": "mlp"}, "ensemble": 2},
                                                      "ssl": {"method": "denoising"}})
    with pytest.raises(UserError, match=r"^model.ensemble: pretraining feeds the trunk alone"):
        pretrain(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
