"""Balancers: a contract every registered balancer must meet, plus oracle tests against autograd.

The contract runs over `registry.names("balancer")`, so a new balancer gets it for free.
"""

import math

import pytest
import torch

from tests.mtl.toys import make_balancer

from hydranet import registry
from hydranet.config import Config, TaskConfig
from hydranet.models import HydraNet
from hydranet.models.trunks import MLPOptions, mlp
from hydranet.mtl.equal import Equal
from hydranet.mtl.static import Static
from hydranet.tasks import Task, TaskInfo

NAN = float("nan")


def setup():
    """A tiny two-task problem (digit class + parity) with missing labels, and three loss terms."""
    cfg = Config(tasks={"digit": TaskConfig(kind="classification", weight=2.0), "even": TaskConfig(kind="binary", weight=0.5)})
    infos = {"digit": TaskInfo("classification", 4, list("abcd")), "even": TaskInfo("binary", 1, ["odd", "even"])}
    tasks = {name: Task(name, cfg.tasks[name], infos[name]) for name in cfg.tasks}
    torch.manual_seed(0)
    trunk = mlp(MLPOptions(hidden=[8]), (1, 4, 4))
    model = HydraNet(trunk, {name: task.head(trunk.out_dim) for name, task in tasks.items()})
    gen = torch.Generator().manual_seed(1)
    batch = {
        "x": torch.randn(6, 1, 4, 4, generator=gen),
        "digit": torch.tensor([0, 3, -1, 1, 2, 2]),
        "even": torch.tensor([1.0, 0.0, 1.0, NAN, 0.0, 1.0]),
    }
    return cfg, tasks, model, batch


def loss_terms(tasks, model, batch):
    """Task losses plus a non-task term (as an adversarial objective would add)."""
    preds = model(batch["x"])
    losses = {name: task.loss(preds[name], batch[name]) for name, task in tasks.items()}
    losses["digit@adv"] = tasks["digit"].loss(model(batch["x"] * 1.1)["digit"], batch["digit"])
    return losses


@pytest.mark.parametrize("name", registry.names("balancer"))
def test_balancer_contract(name):
    cfg, tasks, model, batch = setup()
    balancer = make_balancer(name, cfg, tasks)
    losses = loss_terms(tasks, model, batch)
    weights = balancer.backward(losses, model.shared_parameters())
    assert set(weights) == set(losses)
    assert all(math.isfinite(float(w)) for w in weights.values())
    for group in (model.shared_parameters(), *(model.task_parameters(t) for t in tasks)):
        for p in group:
            assert p.grad is not None and torch.isfinite(p.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in model.shared_parameters())


def reference_grads(model, tasks, batch, weights):
    losses = loss_terms(tasks, model, batch)
    total = sum(weights[name] * loss for name, loss in losses.items())
    return torch.autograd.grad(total, list(model.parameters()))


@pytest.mark.parametrize(
    "method,expected",
    [(Equal, {"digit": 1.0, "even": 1.0, "digit@adv": 1.0}), (Static, {"digit": 2.0, "even": 0.5, "digit@adv": 1.0})],
)
def test_gradients_equal_autograd_of_weighted_sum(method, expected):
    cfg, tasks, model, batch = setup()
    reference = reference_grads(model, tasks, batch, expected)
    weights = make_balancer(method, cfg, tasks).backward(loss_terms(tasks, model, batch), model.shared_parameters())
    assert weights == expected
    for p, ref in zip(model.parameters(), reference):
        assert torch.allclose(p.grad, ref, atol=1e-6)


def test_static_differs_from_equal_when_weights_differ():
    """Guards the oracle test against weights that silently collapse to 1."""
    cfg, tasks, model, batch = setup()
    make_balancer(Static, cfg, tasks).backward(loss_terms(tasks, model, batch), model.shared_parameters())
    static = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    make_balancer(Equal, cfg, tasks).backward(loss_terms(tasks, model, batch), model.shared_parameters())
    assert not all(torch.allclose(s, p.grad) for s, p in zip(static, model.parameters()))


@pytest.mark.parametrize("name", registry.names("balancer"))
def test_balancer_without_shared_parameters(name):
    """A trunk with no parameters (mlp with no hidden layer): every balancer still trains each head."""
    cfg, tasks, _, batch = setup()
    trunk = mlp(MLPOptions(hidden=[]), (1, 4, 4))
    model = HydraNet(trunk, {n: task.head(trunk.out_dim) for n, task in tasks.items()})
    assert model.shared_parameters() == []
    balancer = make_balancer(name, cfg, tasks)
    weights = balancer.backward(loss_terms(tasks, model, batch), [])
    assert all(math.isfinite(float(w)) for w in weights.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
