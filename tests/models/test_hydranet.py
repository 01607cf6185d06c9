"""HydraNet: one prediction per task with the task's shape, dict-trunk routing, parameter groups.

Also `build_model` through the registry (hard sharing, unknown names as UserErrors).
"""

import pytest
import torch
from torch import nn

from hydranet.config import ModelConfig, TaskConfig
from hydranet.errors import UserError
from hydranet.models import HydraNet, build_model
from hydranet.models.trunks import CNNOptions, cnn
from hydranet.tasks import Task, TaskInfo


def two_tasks() -> dict[str, Task]:
    """The shape of the bundled digits set as two tasks: the digit (10 classes) and its parity."""
    return {
        "digit": Task("digit", TaskConfig(kind="classification"), TaskInfo("classification", 10, [str(i) for i in range(10)])),
        "even": Task("even", TaskConfig(kind="binary"), TaskInfo("binary", 1, ["odd", "even"])),
    }


def test_forward_gives_one_prediction_per_task():
    tasks = two_tasks()
    trunk = cnn(CNNOptions(channels=[4, 8], dense=[16]), (1, 8, 8))
    model = HydraNet(trunk, {name: task.head(trunk.out_dim) for name, task in tasks.items()})
    out = model(torch.randn(5, 1, 8, 8))
    assert set(out) == {"digit", "even"}
    assert out["digit"].shape == (5, 10) and out["even"].shape == (5,)


def test_parameter_groups_split_trunk_and_heads():
    model = HydraNet(nn.Linear(3, 4), {"a": nn.Linear(4, 2), "b": nn.Linear(4, 1)})
    shared = {id(p) for p in model.shared_parameters()}
    a, b = ({id(p) for p in model.task_parameters(t)} for t in "ab")
    assert shared == {id(p) for p in model.trunk.parameters()}
    assert not (shared & a) and not (shared & b) and not (a & b)
    assert len(shared) + len(a) + len(b) == len(list(model.parameters()))


class PerTaskTrunk(nn.Module):
    """A soft-sharing stand-in: task a sees x + 1, task b sees x - 1 (as MMoE's gates would mix experts)."""

    out_dim = 3

    def forward(self, x):
        return {"a": x + 1, "b": x - 1}


def test_dict_trunk_routes_each_task_its_own_features():
    model = HydraNet(PerTaskTrunk(), {"a": nn.Identity(), "b": nn.Identity()})
    x = torch.zeros(2, 3)
    out = model(x)
    assert torch.equal(out["a"], x + 1) and torch.equal(out["b"], x - 1)


def test_build_model_hard_sharing():
    cfg = ModelConfig(trunk={"name": "mlp", "hidden": [16]}, head_hidden=[8], head_dropout=0.1)
    model = build_model(cfg, (1, 8, 8), two_tasks())
    assert isinstance(model, HydraNet) and model.trunk.out_dim == 16
    out = model(torch.randn(3, 1, 8, 8))
    assert out["digit"].shape == (3, 10) and out["even"].shape == (3,)


def test_build_model_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="model.sharing"):
        build_model(ModelConfig(sharing="nope"), (1, 8, 8), two_tasks())
    with pytest.raises(UserError, match="model.trunk.name"):
        build_model(ModelConfig(trunk="nope"), (1, 8, 8), two_tasks())
