"""Balancers, beyond tests/mtl/test_balancers.py (the backward contract) and test_balancer_runs.py (exact resume):
the same seed gives the same weights and gradients step after step, and losses computed under bf16 autocast
(one term per task of every kind, plus a non-task term) give finite weights and float32 gradients.
"""

import math

import pytest
import torch

from hydranet import registry
from hydranet.train.precision import autocast
from tests.contracts.conftest import default_options, fake_trainer

NAMES = registry.names("balancer")


def make(name, tasks, model, seed=0):
    balancer = registry.get("balancer", name)(default_options("balancer", name), tasks, seed)
    hook = getattr(balancer, "on_fit_start", None)
    if hook is not None:
        hook(fake_trainer(model, seed=seed))
    return balancer


def losses_of(model, tasks, batch, precision="fp32") -> dict[str, torch.Tensor]:
    """One term per task, computed in float32 as the trainer does, plus an adversarial-like extra term."""
    with autocast(torch.device("cpu"), precision):
        preds = model(batch["x"])
    losses = {name: task.loss(preds[name].float(), batch[name]) for name, task in tasks.items()}
    losses["digit@adv"] = 0.5 * losses["digit"]
    return losses


def run(name, tasks, model, batch, steps=3, seed=0, precision="fp32"):
    """Weights and gradients of `steps` SGD steps."""
    balancer = make(name, tasks, model, seed)
    out = []
    for _ in range(steps):
        weights = balancer.backward(losses_of(model, tasks, batch, precision), model.shared_parameters())
        grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
        out.append(({k: float(w) for k, w in weights.items()}, grads))
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= 0.05 * p.grad
                    p.grad = None
    return out


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_and_gradients(name, tasks, make_model, image_batch):
    a = run(name, tasks, make_model().eval(), image_batch, seed=7)
    b = run(name, tasks, make_model().eval(), image_batch, seed=7)
    for (wa, ga), (wb, gb) in zip(a, b):
        assert wa == wb
        assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_losses_give_finite_weights_and_float32_grads(name, tasks, make_model, image_batch):
    model = make_model()
    shared = {id(p) for p in model.shared_parameters()}
    for weights, grads in run(name, tasks, model, image_batch, steps=2, precision="bf16"):
        assert set(weights) == {*tasks, "digit@adv"} and all(math.isfinite(w) for w in weights.values())
        assert all(g is None or (g.dtype == torch.float32 and torch.isfinite(g).all()) for g in grads)
        assert all(g is not None for g, p in zip(grads, model.parameters()) if id(p) in shared)
