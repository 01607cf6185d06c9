"""Loss-weighting balancers (uncertainty, DWA, RLW, GradNorm, FAMO) against their formulas and behaviour."""

import math

import torch
from torch import nn
from tests.mtl.toys import LinearToy, make_balancer, task_losses, tiny_problem

from hydranet.config import Config
from hydranet.mtl.dwa import DWA
from hydranet.mtl.famo import FAMO
from hydranet.mtl.gradnorm import GradNorm
from hydranet.mtl.rlw import RLW
from hydranet.mtl.uncertainty import Uncertainty
from hydranet.train.trainer import Trainer

# --- uncertainty ---------------------------------------------------------------------------------


def test_uncertainty_loss_matches_its_formula():
    cfg, tasks, model, batch = tiny_problem()
    balancer = make_balancer(Uncertainty, cfg, tasks)
    with torch.no_grad():
        balancer.log_vars.copy_(torch.tensor([0.5, -1.0]))
    s = balancer.log_vars.detach()
    losses = task_losses(tasks, model, batch)
    values = torch.stack([loss.detach() for loss in losses.values()])
    total = sum(torch.exp(-s[i]) * loss + s[i] for i, loss in enumerate(task_losses(tasks, model, batch).values()))
    reference = torch.autograd.grad(total, list(model.parameters()))
    weights = balancer.backward(losses, model.shared_parameters())
    assert torch.allclose(torch.stack(list(weights.values())), torch.exp(-s))
    for p, ref in zip(model.parameters(), reference):
        assert torch.allclose(p.grad, ref, atol=1e-6)
    assert torch.allclose(balancer.log_vars.grad, 1 - torch.exp(-s) * values)  # ∂/∂s_t of e^{-s}L + s


def test_uncertainty_non_task_terms_share_the_base_task():
    cfg, tasks, model, batch = tiny_problem()
    balancer = make_balancer(Uncertainty, cfg, tasks)
    losses = task_losses(tasks, model, batch)
    losses["digit@adv"], losses["simclr"] = 2 * losses["digit"], losses["even"] * 0.5
    weights = balancer.backward(losses, model.shared_parameters())
    assert set(weights) == set(losses) and weights["simclr"] == 1.0
    assert torch.allclose(balancer.log_vars.grad[0], 1 - losses["digit"].detach() + 1 - 2 * losses["digit"].detach())


def test_uncertainty_log_variances_are_trained_by_the_trainer_optimizer():
    cfg, tasks, model, _ = tiny_problem()
    balancer = make_balancer(Uncertainty, cfg, tasks)
    trainer = Trainer(model, tasks, cfg, balancer, device=torch.device("cpu"))
    group = [g for g in trainer.optimizer.param_groups if any(p is balancer.log_vars for p in g["params"])]
    assert len(group) == 1 and group[0]["weight_decay"] == 0.0


# --- DWA -----------------------------------------------------------------------------------------


def epoch_record(**losses) -> dict:
    return {"train": {**{name: {"loss": value} for name, value in losses.items()}, "loss": sum(losses.values())}}


def test_dwa_weights_from_hand_set_epoch_losses():
    balancer = make_balancer(DWA)
    toy = LinearToy([[1.0], [1.0]], names=["a", "b"])
    assert balancer.backward(toy.losses(), [toy.w]) == {"a": 1.0, "b": 1.0}
    balancer.on_epoch_end(None, epoch_record(a=1.0, b=2.0))
    assert balancer.backward(toy.losses(), [toy.w]) == {"a": 1.0, "b": 1.0}  # one epoch: no ratio yet
    balancer.on_epoch_end(None, epoch_record(a=0.5, b=2.0))  # r_a = 0.5 (fell), r_b = 1 (flat)
    toy.w.grad = None
    weights = balancer.backward(toy.losses(), [toy.w])
    ea, eb = math.exp(0.5 / 2.0), math.exp(1.0 / 2.0)  # exp(r / T), temperature 2
    assert math.isclose(weights["a"], 2 * ea / (ea + eb)) and math.isclose(weights["b"], 2 * eb / (ea + eb))
    assert torch.allclose(toy.w.grad, torch.tensor([weights["a"] + weights["b"]]))
    balancer.on_epoch_end(None, epoch_record(a=0.5, b=1.0))  # only the last two epochs count
    assert balancer.weights["b"] < 1 < balancer.weights["a"]


# --- RLW -----------------------------------------------------------------------------------------


def draws(seed: int, steps: int = 3) -> list[list[float]]:
    balancer, toy = make_balancer(RLW, Config(seed=seed)), LinearToy([[1.0], [2.0], [3.0]])
    return [[float(w) for w in balancer.backward(toy.losses(), [toy.w]).values()] for _ in range(steps)]


def test_rlw_weights_sum_to_t_and_are_reproducible():
    first = draws(seed=0)
    for weights in first:
        assert math.isclose(sum(weights), 3.0, rel_tol=1e-6) and min(weights) > 0
    assert first[0] != first[1]  # fresh weights every step
    assert draws(seed=0) == first and draws(seed=1) != first


# --- GradNorm ------------------------------------------------------------------------------------


def test_gradnorm_lowers_the_weight_of_the_task_that_trains_faster():
    """"fast" is a linear target the net fits at once; "slow" a large nonlinear one it barely learns."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    targets = {"slow": 10 * torch.sin(3 * x[:, 0] * x[:, 1]), "fast": x @ torch.tensor([1.0, -2.0, 0.5, 1.0])}
    trunk = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
    heads = nn.ModuleDict({name: nn.Linear(16, 1) for name in targets})
    balancer = make_balancer(GradNorm)
    optimizer = torch.optim.SGD([*trunk.parameters(), *heads.parameters()], lr=0.01)
    for _ in range(30):
        z = trunk(x)
        losses = {name: (heads[name](z).squeeze(1) - y).pow(2).mean() for name, y in targets.items()}
        balancer.backward(losses, list(trunk.parameters()))
        optimizer.step()
        optimizer.zero_grad()
    w = dict(zip(balancer.names, balancer.weights.tolist()))
    assert w["fast"] < 0.8 and w["slow"] > 1.2 and math.isclose(sum(w.values()), 2.0, rel_tol=1e-5)


# --- FAMO ----------------------------------------------------------------------------------------


def test_famo_weights_follow_the_formula_and_favour_the_slowest_task():
    balancer = make_balancer(FAMO)
    p = nn.Parameter(torch.ones(1))
    values = {"fast": 4.0, "slow": 2.0, "mid": 1.0}
    rates = {"fast": 0.8, "slow": 0.99, "mid": 0.9}  # each loss is multiplied by its rate every step
    for step in range(40):
        losses = {name: value * p.sum() for name, value in values.items()}
        weights = balancer.backward(losses, [p])
        if step == 0:  # ξ = 0: z uniform, w_t ∝ 1/L_t, Σ w = 1
            inverse = {name: 1 / v for name, v in values.items()}
            expected = {name: inv / sum(inverse.values()) for name, inv in inverse.items()}
            assert all(math.isclose(float(weights[n]), expected[n], rel_tol=1e-5) for n in values)
        values = {name: v * rates[name] for name, v in values.items()}
    z = dict(zip(balancer.names, torch.softmax(balancer.logits.detach(), 0).tolist()))
    assert z["slow"] > z["mid"] > z["fast"]
