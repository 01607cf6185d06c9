"""Every registered balancer: exact resume through a checkpoint file, and one epoch of the quickstart."""

import math
from types import SimpleNamespace

import pytest
import torch
from tests.mtl.toys import make_balancer, task_losses, tiny_problem

import hydranet as hn
from hydranet import registry
from hydranet.train.checkpoint import load_state, save_state

# Every balancer but the two that other runs train already (equal: every run by default; static: test_bench).
TRAINED_ELSEWHERE = {"equal", "static"}
TRAINED_HERE = [name for name in registry.names("balancer") if name not in TRAINED_ELSEWHERE]


def step(balancer, model, tasks, batch, trainer):
    """One training step as the trainer runs it (hooks, backward, SGD on the model and the balancer)."""
    losses = task_losses(tasks, model, batch)
    losses["digit@adv"] = 0.5 * losses["digit"] + 0.1 * losses["even"]  # a non-task term
    weights = balancer.backward(losses, model.shared_parameters())
    params = [*model.parameters(), *(balancer.parameters() if hasattr(balancer, "parameters") else [])]
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= 0.1 * p.grad
                p.grad = None
    if hasattr(balancer, "on_epoch_end"):  # as if every step ended an epoch: DWA's history fills up
        record = {"train": {name: {"loss": float(loss.detach())} for name, loss in losses.items()}}
        balancer.on_epoch_end(trainer, record)
    return {name: float(w) for name, w in weights.items()}


@pytest.mark.parametrize("name", registry.names("balancer"))
def test_resume_reproduces_the_next_step(name, tmp_path):
    cfg, tasks, model, batch = tiny_problem()
    make = lambda cfg, tasks: make_balancer(name, cfg, tasks)  # noqa: E731
    first = make(cfg, tasks)
    trainer = SimpleNamespace(model=model)
    if hasattr(first, "on_fit_start"):
        first.on_fit_start(trainer)
    for _ in range(3):
        step(first, model, tasks, batch, trainer)
    resumed, resumed_model = make(cfg, tasks), tiny_problem()[2]
    resumed_model.load_state_dict(model.state_dict())
    if hasattr(first, "state_dict"):
        save_state(tmp_path / "state.safetensors", first.state_dict())  # the checkpoint's own format
        resumed.load_state_dict(load_state(tmp_path / "state.safetensors"))
    resumed_trainer = SimpleNamespace(model=resumed_model)
    if hasattr(resumed, "on_fit_start"):
        resumed.on_fit_start(resumed_trainer)
    for _ in range(2):
        expected = step(first, model, tasks, batch, trainer)
        got = step(resumed, resumed_model, tasks, batch, resumed_trainer)
        assert got == pytest.approx(expected, rel=1e-6)
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("name", TRAINED_HERE)
def test_balancer_trains_the_quickstart(name, tmp_path):
    run = hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 120, "mtl.balancer": name,
                                       "train.progress": False}).fit(tmp_path / "run")
    record = run.history[-1]
    assert set(record["weights"]) == {"digit", "parity", "ink"}
    assert all(math.isfinite(w) for w in record["weights"].values())
    assert math.isfinite(record["train"]["loss"]) and math.isfinite(record["val_loss"])
