"""`model.ensemble: k`: k members sharing the trunk's Linear weights through rank-1 adapters (all of them: tabm; the
first: mini), each with an output layer of its own and trained on its own loss; with identical adapters and output
layers they are one model, and the averaged prediction is what a loaded run's predict and evaluate give."""

import copy
import math

import pytest
import torch

from hydranet.api import load
from hydranet.config import NoOptions, load_config, validate
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.models import build_model
from hydranet.models.ensemble import EnsembleLinear, MemberLinear, make_ensemble
from hydranet.mtl.equal import Equal
from hydranet.tasks import Task
from hydranet.train import fit
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer
from tests.conftest import tiny_table_config


def plain_model(config, run_info):
    tasks = {name: Task(name, config.tasks[name], run_info.tasks[name]) for name in config.tasks}
    return build_model(config.model.model_copy(update={"ensemble": 1}), run_info.input_shape, tasks), tasks


def member(ensemble_state: dict, plain, i: int):
    """Member i as a plain model: W_i = diag(s_i)·W·diag(r_i) and b_i in adapted layers (BatchEnsemble's own reading
    of its layers), W_i and b_i of a member's own output layer, the shared tensors as they are."""
    state = {}
    for key, value in plain.state_dict().items():
        prefix, stored = key.rsplit(".", 1)[0], ensemble_state[key]
        if f"{prefix}.r" in ensemble_state and key.endswith(".weight"):
            s = ensemble_state.get(f"{prefix}.s", torch.ones(len(stored), value.shape[0]))
            state[key] = s[i][:, None] * stored * ensemble_state[f"{prefix}.r"][i]
        else:  # a member's own tensor has one more dimension, members first
            state[key] = stored[i] if stored.dim() > value.dim() else stored
    single = copy.deepcopy(plain)
    single.load_state_dict(state)
    return single.eval()


def last_linear(head: torch.nn.Module):
    """A head's output layer, plain or a member's own."""
    return [m for m in head.modules() if isinstance(m, (torch.nn.Linear, MemberLinear))][-1]


@pytest.mark.parametrize("style, adapted", [("tabm", 2), ("mini", 1)])
def test_members_with_identical_adapters_and_outputs_are_one_model(tiny_csv, style, adapted):
    config = validate(tiny_table_config(tiny_csv) | {"model": {"trunk": {"name": "mlp", "hidden": [16, 8]}}})
    info = build_dataset(config).info
    torch.manual_seed(0)
    plain, _ = plain_model(config, info)
    ensemble = make_ensemble(copy.deepcopy(plain), 4, style)
    layers = [m for m in ensemble.modules() if isinstance(m, EnsembleLinear)]
    outputs = [m for m in ensemble.modules() if isinstance(m, MemberLinear)]
    assert len(layers) == adapted and len(outputs) == 2  # trunk layers; each head's own output layer per member
    assert not (layers[0].r == 1).all() and not torch.equal(outputs[0].weight[0], outputs[0].weight[1])
    assert (layers[0].s is None) == (style == "mini")
    with torch.no_grad():
        layers[0].r.fill_(1.0)
        for head, output in zip(plain.heads.values(), outputs):
            linear = last_linear(head)
            output.weight.copy_(linear.weight.expand_as(output.weight))
            output.bias.copy_(linear.bias.expand_as(output.bias))
    x = torch.randn(5, info.input_shape[0])
    got, expected = ensemble.eval()(x), plain.eval()(x)
    assert all(torch.allclose(got[t], expected[t], atol=1e-6) for t in expected)


def test_each_member_is_trained_on_its_own_loss(tiny_csv):
    """TabM's rule, on a hand case: two members answer logits +2 and −2 for every example. Their average, 0, would
    cost log 2 per example; each member's own loss costs (log(1 + e⁻²) + log(1 + e²)) / 2 whatever the label."""
    config = validate(tiny_table_config(tiny_csv) | {"model": {"trunk": {"name": "mlp", "hidden": [8]}, "ensemble": 2}})
    data = build_dataset(config)
    model, tasks = build_model_for(config, data.info, torch.device("cpu"))
    with torch.no_grad():
        last_linear(model.heads["kind"]).weight.zero_()
        last_linear(model.heads["kind"]).bias.copy_(torch.tensor([[2.0], [-2.0]]))
    trainer = Trainer(model, tasks, config, Equal(NoOptions(), tasks, 0), device=torch.device("cpu"))
    losses, _, _ = trainer.train_step(data.split("train"))
    assert model.member_outputs is None  # taken by the loss: graph tensors are not left on the model
    assert losses["kind"].grad_fn is None  # nor by the caller, who holds the losses through the next step
    own = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2
    assert losses["kind"].item() == pytest.approx(own, rel=1e-6)  # the averaged logit's loss: log 2 = 0.693
    assert model.eval()(data.split("test")["x"])["kind"].dim() == 1 and model.member_outputs is None  # eval: averaged


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


def test_mini_without_an_ensemble_is_refused_and_tabm_is_the_plain_model(tiny_csv):
    """mini with model.ensemble 1 would do nothing: refused in one line naming it. tabm with one member is the plain
    model, accepted: configs dumped whole while tabm was the default (a run's config.yaml, a study's best.yaml and
    trials) name it and validate again; a config dumped today (null) does too."""
    with pytest.raises(UserError, match=r"^config: model.ensemble_style: mini styles the members of an "
                                        r"ensemble, and model.ensemble is 1") as err:
        load_config(tiny_table_config(tiny_csv), ["model.ensemble_style=mini"])
    assert "\n" not in str(err.value)
    plain = validate(tiny_table_config(tiny_csv))
    assert plain.model.ensemble_style is None
    dumped = plain.model_dump(mode="json")
    assert validate(dumped).model_dump() == plain.model_dump()
    dumped_before = copy.deepcopy(dumped)
    dumped_before["model"]["ensemble_style"] = "tabm"
    assert validate(dumped_before).model.ensemble == 1
    assert validate(dumped_before, stored=True).model.ensemble_style is None
    for style in ("tabm", "mini"):
        chosen = load_config(tiny_table_config(tiny_csv), ["model.ensemble=2", f"model.ensemble_style={style}"])
        assert chosen.model.ensemble_style == style


def ensemble_config(tiny_csv, sharing: dict, style: str):
    return validate(tiny_table_config(tiny_csv) | {"model": {"trunk": {"name": "mlp", "hidden": [8]}, "sharing": sharing,
                                                             "ensemble": 2, "ensemble_style": style}})


@pytest.mark.parametrize("sharing", ["mmoe", "cgc", "cross_stitch"])
def test_mini_is_refused_where_the_sharing_builds_several_trunks(tiny_csv, tmp_path, sharing):
    """Mini adapts the model's first linear layer: under soft sharing that is expert (or column) 0's alone, so the
    members would share every other expert. Refused in one line before a run folder exists."""
    with pytest.raises(UserError, match=rf"^model.ensemble_style: mini adapts the first linear layer of one trunk, "
                                        rf"and model.sharing {sharing} builds \d+ ") as err:
        fit(ensemble_config(tiny_csv, {"name": sharing}, "mini"), tmp_path / "run", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()
    info = build_dataset(validate(tiny_table_config(tiny_csv))).info  # a run saved before the refusal still loads
    model, _ = build_model_for(ensemble_config(tiny_csv, {"name": sharing}, "mini"), info, torch.device("cpu"))
    assert model.members == 2


def test_mini_builds_with_one_expert_and_tabm_adapts_every_expert(tiny_csv):
    info = build_dataset(validate(tiny_table_config(tiny_csv))).info
    cpu = torch.device("cpu")
    mini, _ = build_model_for(ensemble_config(tiny_csv, {"name": "mmoe", "experts": 1}, "mini"), info, cpu)
    (adapted,) = [m for m in mini.modules() if isinstance(m, EnsembleLinear)]
    assert adapted is mini.trunk.experts[0].layers[1] and mini.members == 2  # the one expert's first Linear
    tabm, _ = build_model_for(ensemble_config(tiny_csv, {"name": "mmoe"}, "tabm"), info, cpu)
    assert len(tabm.trunk.experts) == 4 and tabm.members == 2
    assert all(isinstance(expert.layers[1], EnsembleLinear) for expert in tabm.trunk.experts)
