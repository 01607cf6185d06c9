"""Sharing architectures: shapes for every name × trunk, the shared-parameter contract, and oracles.

MMoE against its formula and a one-hot gate, CGC's routing, cross-stitch against independent columns,
parameter counts in closed form, and a short end-to-end fit for every name on images and a table.
"""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import hydranet as hn
from hydranet import registry
from hydranet.config import ModelConfig, TaskConfig
from hydranet.errors import UserError
from hydranet.models import build_model
from hydranet.models.sharing.base import ModelParts
from hydranet.models.sharing.cross_stitch import CrossStitch
from hydranet.tasks import Task, TaskInfo
from tests.conftest import tiny_table_config

NAMES = registry.names("sharing")
SOFT = [name for name in NAMES if name != "hard"]  # each task its own mixture of shared parts
TRUNKS = {
    "mlp": ({"name": "mlp", "hidden": [16, 8]}, (1, 8, 8)),
    "cnn": ({"name": "cnn", "channels": [4, 8], "dense": [12]}, (1, 8, 8)),
    "resnet": ({"name": "resnet", "channels": [4, 8], "blocks": [1, 1]}, (3, 8, 8)),
    "table": ({"name": "mlp", "hidden": [16], "batch_norm": True, "dropout": 0.1}, (30,)),
}


def build_trunk(spec: dict, shape: tuple[int, ...]) -> nn.Module:
    """A fresh trunk of a `model.trunk` mapping, as every sharing builds one."""
    return ModelParts.of(ModelConfig(trunk=spec), shape, {}).new_trunk()


def three_tasks() -> dict[str, Task]:
    """Digits-shaped tasks of three kinds: the digit (10 classes), its parity, and the ink."""
    return {
        "digit": Task("digit", TaskConfig(kind="classification"), TaskInfo("classification", 10, [str(i) for i in range(10)])),
        "even": Task("even", TaskConfig(kind="binary"), TaskInfo("binary", 1, ["odd", "even"])),
        "ink": Task("ink", TaskConfig(kind="regression"), TaskInfo("regression", 1)),
    }


def make(name: str, trunk: str = "mlp", **options) -> tuple[nn.Module, torch.Tensor]:
    """A model of the sharing `name` with those of `options` that it declares (`experts` is mmoe's only)."""
    torch.manual_seed(0)
    cfg, shape = TRUNKS[trunk]
    declared = registry.options("sharing", name)
    own = {k: v for k, v in options.items() if declared is not None and k in declared.model_fields}
    model = build_model(ModelConfig(sharing={"name": name, **own}, trunk=cfg), shape, three_tasks())
    return model, torch.randn(5, *shape)


def ids(params) -> set[int]:
    return {id(p) for p in params}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("trunk", list(TRUNKS))
@pytest.mark.parametrize("name", NAMES)
def test_every_sharing_gives_each_task_its_shape(name, trunk):
    model, x = make(name, trunk, experts=3)
    out = model(x)
    assert out["digit"].shape == (5, 10) and out["even"].shape == (5,) and out["ink"].shape == (5,)
    if name != "hard":  # soft sharing: each task its own (B, D) features
        assert {t: f.shape for t, f in model.features.items()} == {t: (5, model.trunk.out_dim) for t in out}


@pytest.mark.parametrize("name", NAMES)
def test_shared_parameters_are_those_every_task_reaches(name):
    """Shared and per-task groups partition the model; every task's loss reaches each shared parameter
    and no task's loss reaches another task's parameters (the contract gradient balancers rely on)."""
    model, x = make(name)
    shared = ids(model.shared_parameters())
    own = {t: ids(model.task_parameters(t)) for t in model.heads}
    groups = [shared, *own.values()]
    assert sum(map(len, groups)) == len(set().union(*groups)) == len(list(model.parameters()))
    assert shared
    out = model(x)
    for task in out:
        model.zero_grad(set_to_none=True)
        out[task].sum().backward(retain_graph=True)
        reached = {id(p) for p in model.parameters() if p.grad is not None}
        assert shared <= reached and own[task] <= reached
        assert not any(own[other] & reached for other in own if other != task)


# --- MMoE ----------------------------------------------------------------------------------------


def test_mmoe_gates_are_softmax_and_features_their_mixture():
    model, x = make("mmoe", "cnn", experts=3)
    trunk = model.eval().trunk
    features = trunk(x)
    experts = torch.stack([expert(x) for expert in trunk.experts], dim=1)  # (B, E, D)
    for task, gate in trunk.gates.items():
        weights = gate(x)  # (B, E)
        assert weights.shape == (5, 3) and (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(5))
        torch.testing.assert_close(trunk.gate_weights[task], weights)
        torch.testing.assert_close(features[task], (weights[:, :, None] * experts).sum(1))


@pytest.mark.parametrize("k", [0, 2])
def test_mmoe_one_hot_gate_gives_that_experts_features(k):
    model, x = make("mmoe", "cnn", experts=3)
    trunk = model.trunk
    with torch.no_grad():
        trunk.gates["even"].linear.weight.zero_()
        trunk.gates["even"].linear.bias.copy_(torch.eye(3)[k] * 1e4)  # softmax → exactly one-hot
    features = trunk(x)
    torch.testing.assert_close(features["even"], trunk.experts[k](x))
    assert not torch.allclose(features["digit"], trunk.experts[k](x))


def test_mmoe_gates_see_pooled_images_and_flat_tables():
    image, _ = make("mmoe", "cnn", experts=3, gate_pool=2)
    table, _ = make("mmoe", "table", experts=3)
    assert image.trunk.gates["digit"].linear.in_features == 1 * 2 * 2
    assert table.trunk.gates["digit"].linear.in_features == 30


# --- CGC -----------------------------------------------------------------------------------------


def test_cgc_routes_each_task_to_its_own_and_the_shared_experts():
    model, _ = make("cgc", shared_experts=2, task_experts=2)
    routes = model.trunk.routes
    assert len(model.trunk.experts) == 2 + 3 * 2
    assert routes == {"digit": [0, 1, 2, 3], "even": [0, 1, 4, 5], "ink": [0, 1, 6, 7]}
    assert all(gate.linear.out_features == 4 for gate in model.trunk.gates.values())


def test_cgc_task_never_receives_another_tasks_experts():
    model, x = make("cgc", "cnn", shared_experts=1, task_experts=2)
    trunk = model.eval().trunk
    before = trunk(x)
    digit_own = [trunk.experts[e] for e in trunk.routes["digit"][1:]]
    handles = [e.register_forward_hook(lambda m, i, out: torch.zeros_like(out)) for e in digit_own]
    after = trunk(x)
    for h in handles:
        h.remove()
    assert not torch.allclose(after["digit"], before["digit"])
    for task in ("even", "ink"):
        torch.testing.assert_close(after[task], before[task], rtol=0, atol=0)


def test_cgc_without_any_expert_is_a_user_error():
    with pytest.raises(UserError, match="model.sharing.task_experts"):
        make("cgc", shared_experts=0, task_experts=0)


# --- cross-stitch --------------------------------------------------------------------------------


def test_cross_stitch_units_start_near_identity():
    model, _ = make("cross_stitch")
    (unit, *_) = model.trunk.mixing()
    expected = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    torch.testing.assert_close(unit, expected)
    assert len(model.trunk.units) == len(build_trunk(TRUNKS["mlp"][0], (1, 8, 8)).stages())


@pytest.mark.parametrize("trunk", ["mlp", "cnn"])
def test_cross_stitch_with_identity_units_is_independent_columns(trunk):
    cfg, shape = TRUNKS[trunk]
    columns = [build_trunk(cfg, shape) for _ in range(3)]
    stitched = CrossStitch(columns, ["a", "b", "c"], self_weight=0.9)
    x = torch.randn(4, *shape)
    out = stitched(x)
    assert not torch.allclose(out["a"], columns[0](x))  # the default units do mix
    with torch.no_grad():
        for unit in stitched.units:
            unit.copy_(torch.eye(3).flatten())
    out = stitched(x)
    for task, column in zip("abc", columns):
        torch.testing.assert_close(out[task], column(x), rtol=0, atol=0)


def test_cross_stitch_mixes_after_every_stage():
    """Oracle: run the two columns' stages by hand and mix with each unit."""
    cfg, shape = TRUNKS["mlp"]
    columns = [build_trunk(cfg, shape) for _ in range(2)]
    stitched = CrossStitch(columns, ["a", "b"], self_weight=0.9)
    with torch.no_grad():
        for unit in stitched.units:
            unit.copy_(torch.rand(4))
    x = torch.randn(4, *shape)
    a, b = x, x
    for stage_a, stage_b, alpha in zip(columns[0].stages(), columns[1].stages(), stitched.mixing()):
        ha, hb = stage_a(a), stage_b(b)
        a, b = alpha[0, 0] * ha + alpha[0, 1] * hb, alpha[1, 0] * ha + alpha[1, 1] * hb
    out = stitched(x)
    torch.testing.assert_close(out["a"], a)
    torch.testing.assert_close(out["b"], b)


def test_cross_stitch_mixing_trains_under_bf16_where_onednn_matmul_crashed():
    """Three columns of 2¹⁹ activations each, mixed under bf16 autocast and differentiated: written as a (3, 3)·(3, N)
    einsum, oneDNN's AMX matmul heuristic killed the process with SIGFPE (torch 2.13, Intel Xeon with AMX), so the
    check runs in a child process and a crash fails it with its signal; elsewhere it checks the mixture's values."""
    script = textwrap.dedent("""
        import torch
        from hydranet.config import ModelConfig
        from hydranet.models.sharing.base import ModelParts
        from hydranet.models.sharing.cross_stitch import CrossStitch
        torch.manual_seed(0)
        parts = ModelParts.of(ModelConfig(trunk={"name": "mlp", "hidden": [4]}), (8,), {})
        stitched = CrossStitch([parts.new_trunk() for _ in range(3)], ["a", "b", "c"], self_weight=0.9)
        unit = stitched.units[0]
        outputs = [torch.randn(16, 32, 32, 32).bfloat16() for _ in range(3)]  # stage outputs under autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = stitched.stitch(unit, outputs)
        assert all(m.dtype == torch.bfloat16 for m in mixed)
        torch.autograd.grad(sum(m.float().square().sum() for m in mixed), [unit])
        want = torch.einsum("tu,u...->t...", unit.detach().view(3, 3), torch.stack(outputs).float())
        torch.testing.assert_close(torch.stack(mixed).float(), want, rtol=0.02, atol=0.05)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode} (negative: killed by that signal): {done.stderr[-2000:]}"


def test_cross_stitch_needs_a_trunk_with_stages(monkeypatch):
    class Plain(nn.Linear):
        out_dim = 4

    monkeypatch.setitem(registry._TABLES["trunk"], "plain", lambda cfg, shape: Plain(shape[0], 4))
    with pytest.raises(UserError, match=r"model.sharing: cross_stitch needs a trunk with stages\(\)"):
        build_model(ModelConfig(sharing="cross_stitch", trunk="plain"), (30,), three_tasks())


# --- parameter counts ----------------------------------------------------------------------------


def test_parameter_counts_scale_with_experts_and_tasks():
    cfg, shape = TRUNKS["cnn"]
    trunk = n_params(build_trunk(cfg, shape))
    gate = lambda n: 1 * 4 * 4 * n + n  # noqa: E731  (pooled 4×4 grey image → n logits)
    assert n_params(make("mmoe", "cnn", experts=3)[0].trunk) == 3 * trunk + 3 * gate(3)
    assert n_params(make("cgc", "cnn", shared_experts=2, task_experts=1)[0].trunk) == (2 + 3 * 1) * trunk + 3 * gate(3)
    n_stages = len(build_trunk(cfg, shape).stages())
    assert n_params(make("cross_stitch", "cnn")[0].trunk) == 3 * trunk + n_stages * 3 * 3


def test_expert_width_mult_narrows_each_expert():
    cfg, shape = TRUNKS["cnn"]
    half = n_params(build_trunk({"name": "cnn", "channels": [2, 4], "dense": [6]}, shape))
    model, x = make("mmoe", "cnn", experts=2, expert_width_mult=0.5)
    assert [n_params(e) for e in model.trunk.experts] == [half, half]
    assert model(x)["digit"].shape == (5, 10) and model.trunk.out_dim == 6


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOFT)
def test_quickstart_trains_with_each_sharing(name, tmp_path):
    overrides = {"train.epochs": 1, "data.limit": 300, "model.sharing": name, "train.progress": False}
    run = hn.Experiment("quickstart", overrides).fit(tmp_path / name)
    assert run.config.model.sharing.name == name
    assert set(run.summary["test"]) == {"digit", "parity", "ink"}
    assert hn.load(run.dir).evaluate("test").keys() == {"digit", "parity", "ink"}  # weights reload


@pytest.mark.parametrize("name", SOFT)
def test_table_experiment_trains_with_each_sharing(name, tmp_path, tiny_csv):
    config = tiny_table_config(tiny_csv, epochs=1)
    run = hn.Experiment(config, {"model.sharing": name}).fit(tmp_path / name)
    assert set(run.summary["test"]) == {"kind", "size"}
