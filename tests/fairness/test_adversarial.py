"""Adversarial debiasing: the paper's update on hand vectors, the wrapped balancer's gradient against that closed
form for several balancers, a biased table whose parity gaps the mitigation closes, and the refusals."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from hydranet import registry
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.fairness import AdversarialDebiasing, adversarial_update
from hydranet.fairness.adversarial import GROUP_KEY
from hydranet.fairness.audit import audit_run
from hydranet.train import fit
from hydranet.train.run import build_model_for
from tests.fairness.conftest import fair_config

CPU = torch.device("cpu")


def test_update_is_the_projection_then_the_reversed_adversary_gradient():
    g, h = torch.tensor([3.0, 4.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])
    projected = adversarial_update(g, h, alpha=0.0)
    assert projected @ h == pytest.approx(0.0)  # nothing left that helps the adversary
    torch.testing.assert_close(projected, torch.tensor([-0.5, 0.5, 1.0]))  # g − (7/2)·h
    torch.testing.assert_close(adversarial_update(g, h, alpha=2.0), torch.tensor([-2.5, -1.5, 1.0]))
    torch.testing.assert_close(adversarial_update(g, h, alpha=2.0, projection=False), torch.tensor([1.0, 2.0, 1.0]))
    torch.testing.assert_close(adversarial_update(g, torch.zeros(3), alpha=2.0), g)  # no adversary signal: g, not NaN


def flat_grads(params):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


@pytest.mark.parametrize("balancer", ["equal", "pcgrad", "uncertainty"])
def test_wrapped_balancer_applies_the_update_to_its_combined_gradient(fair_csv, balancer, one_thread):
    """The balancer combines the task terms as without the mitigation; the trunk and the mitigated head then get
    g − proj_h g − α·h, the other task's head keeps its gradient, the adversary takes an Adam step on ∇L_A."""
    cfg = load_config(fair_config(fair_csv, mtl={"balancer": balancer}, fairness={
        "sensitive": ["sex"], "tasks": ["income"], "mitigation": {"name": "adversarial", "adversary_weight": 0.7}}))
    data = build_dataset(cfg)
    model, tasks = build_model_for(cfg, data.info, CPU)
    debias = AdversarialDebiasing(cfg.fairness.mitigation.options, {"income": tasks["income"]}, groups=2)
    batch = {k: v[:64] for k, v in data.split("train").items()}

    def step(wrapped: bool):
        model.zero_grad(set_to_none=True)
        inner = registry.get("balancer", balancer)(cfg.mtl.balancer.options, tasks, cfg.seed)
        preds = model(batch["x"])
        losses = {t: task.loss(preds[t], batch[t]) for t, task in tasks.items()}
        adversary = debias(model, batch) if wrapped else {}
        (debias.wrap(inner) if wrapped else inner).backward({**losses, **adversary}, list(model.trunk.parameters()))

    step(wrapped=False)
    reached = [*model.trunk.parameters(), *model.heads["income"].parameters()]
    g, other = flat_grads(reached), flat_grads(model.heads["size"].parameters())
    reference = copy.deepcopy(debias.adversaries)  # the adversaries should take one step of their Adam
    grads = torch.autograd.grad(debias(model, batch)["income@adversary"], [*reached, *debias.adversaries.parameters()])
    h = torch.cat([x.reshape(-1) for x in grads[:len(reached)]])
    for p, grad in zip(reference.parameters(), grads[len(reached):]):
        p.grad = grad
    torch.optim.Adam(reference.parameters(), lr=cfg.fairness.mitigation.options.adversary_lr).step()
    step(wrapped=True)
    torch.testing.assert_close(flat_grads(reached), adversarial_update(g, h, 0.7))
    torch.testing.assert_close(flat_grads(model.heads["size"].parameters()), other)
    for p, q in zip(debias.adversaries.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def biased_csv(path, n=1200):
    """`proxy` tells the group almost exactly, `skill` is independent of it, and the label follows both."""
    rng = np.random.default_rng(1)
    male = rng.random(n) < 0.5
    proxy, skill = 2.0 * male + rng.normal(scale=0.3, size=n), rng.normal(size=n)
    income = skill + 1.5 * male + rng.normal(scale=0.3, size=n) > 0.75
    pd.DataFrame({"proxy": proxy, "skill": skill, "sex": np.where(male, "M", "F"),
                  "income": np.where(income, "high", "low")}).to_csv(path, index=False)
    return path


def parity_gaps(path, run_dir, mitigation):
    cfg = load_config(fair_config(path, tasks={"income": {"kind": "binary"}},
                                  fairness={"sensitive": ["sex"], "mitigation": mitigation, "bootstrap": 0},
                                  train={"epochs": 6, "batch_size": 64, "progress": False,
                                         "optimizer": {"name": "adam", "lr": 0.01}}))
    summary = audit_run(fit(cfg, run_dir, progress=False), ["sex"], "test")["tasks"]["income"]["attributes"]["sex"]["summary"]
    return summary["demographic_parity_difference"]["value"], summary["equalized_odds_difference"]["value"]


def test_adversarial_training_closes_the_gap_it_is_asked_to(tmp_path, one_thread):
    path = biased_csv(tmp_path / "biased.csv")
    dp, eo = parity_gaps(path, tmp_path / "none", "none")
    adversarial = {"name": "adversarial", "adversary_lr": 0.05}  # 5× the model's learning rate
    dp_adv, _ = parity_gaps(path, tmp_path / "dp", adversarial | {"adversary_weight": 0.3})
    _, eo_adv = parity_gaps(path, tmp_path / "eo", adversarial | {"adversary_weight": 1.0, "constraint": "equalized_odds"})
    assert dp > 0.4 and dp_adv < dp / 3, (dp, dp_adv)
    assert eo_adv < eo / 2, (eo, eo_adv)


def test_batches_carry_the_group_and_the_run_logs_the_adversary_term(fair_csv, tmp_path, one_thread):
    cfg = load_config(fair_config(fair_csv, fairness={"sensitive": ["sex"], "tasks": ["income"],
                                                      "mitigation": "adversarial"}, train={"epochs": 1, "progress": False}))
    data = build_dataset(cfg)
    sex = pd.read_csv(fair_csv)["sex"].to_numpy()
    np.testing.assert_array_equal(data.extras[GROUP_KEY].numpy(), (sex == "M").astype(np.int64))  # F=0, M=1
    assert GROUP_KEY in data.split("train") and not data.weights
    run = fit(cfg, tmp_path / "run", progress=False)
    assert {"income", "size", "income@adversary"} <= set(run.history[0]["train"])


def test_adversarial_refuses_tasks_without_classes_and_runs_without_sensitive_columns(fair_csv, tmp_path):
    cfg = load_config(fair_config(fair_csv, fairness={"sensitive": ["sex"], "mitigation": "adversarial"}))
    with pytest.raises(UserError, match="fairness.tasks: adversarial needs class labels, and task 'size' is regression"):
        fit(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
    with pytest.raises(UserError, match="fairness.mitigation: adversarial needs fairness.sensitive"):
        build_dataset(load_config(fair_config(fair_csv, fairness={"mitigation": "adversarial"})))


def test_adversarial_under_torchrun_is_refused_before_the_run_directory(fair_csv, tmp_path, monkeypatch):
    """Its projection and the adversaries' steps read one process's gradients: refused with several ranks."""
    from hydranet.fairness import adversarial

    monkeypatch.setattr(adversarial, "world_size", lambda: 2)
    cfg = load_config(fair_config(fair_csv, fairness={"sensitive": ["sex"], "tasks": ["income"],
                                                      "mitigation": "adversarial"}))
    with pytest.raises(UserError, match=r"^fairness.mitigation: adversarial debiasing trains in one process only"):
        fit(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
