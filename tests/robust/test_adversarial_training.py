"""Adversarial training: budgets, untouched models, TRADES against a hand-computed KL, eps warm-up, config
errors, the guard, one run per method, and the headline — PGD training buys robust accuracy on digits."""

import json

import pytest
import torch
import torch.nn.functional as F

import hydranet as hn
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.robust import PixelSpace, attack_run
from hydranet.robust.guard import RobustGuard
from hydranet.robust.trades import TRADES
from hydranet.robust.training import (
    FGSMRandomStart,
    PGDTraining,
    build_adversarial,
    warmup_eps,
)
from hydranet.train import load_run
from hydranet.train.run import build_model_for
from tests.conftest import tiny_table_config

FAST = {"data.limit": 400, "train.epochs": 2, "train.progress": False, "train.threads": 1, "mtl.diagnostics_every": 0,
        "train.early_stopping.monitor": None}


@pytest.fixture(scope="module")
def setup():
    """An untrained quickstart model with BatchNorm (train mode), its tasks, pixel space and a batch."""
    cfg = load_config("quickstart", ["data.limit=200", "model.trunk.batch_norm=true", "adversarial.eps=0.1"])
    data = build_dataset(cfg)
    model, tasks = build_model_for(cfg, data.info, torch.device("cpu"))
    batch = {k: v[:32] for k, v in data.split("train").items()}
    return cfg, model.train(), tasks, PixelSpace.from_info(data.info), batch


@pytest.mark.parametrize("method", [FGSMRandomStart, PGDTraining])
def test_perturbations_stay_in_the_ball_and_in_range(setup, method):
    cfg, model, tasks, space, batch = setup
    out = method(cfg.adversarial, tasks, space)(model, batch)
    delta = space.raw(out["x"]) - space.raw(batch["x"])
    assert delta.abs().max() <= 0.1 + 1e-5 and delta.abs().max() > 0.05
    raw = out["x"] * space.std + space.mean  # unclamped: the model input itself must be a valid image
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert all(torch.equal(out[k], batch[k]) for k in batch if k != "x")


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd", "trades"])
def test_crafting_leaves_parameters_grads_and_batchnorm_alone(setup, method):
    cfg, model, tasks, space, batch = setup
    cfg = cfg.model_copy(update={"adversarial": cfg.adversarial.model_copy(update={"method": method})})
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    perturbations, objectives = build_adversarial(cfg, tasks, {"kind": "image", "mean": space.mean.flatten().tolist(),
                                                               "std": space.std.flatten().tolist()})
    if perturbations:
        perturbations[0](model, batch)
    else:
        objectives[0].adversarial(model, batch["x"])
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # includes BN running stats
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    for p in model.parameters():
        p.grad = None


def test_trades_term_is_beta_times_the_kl(setup):
    cfg, model, tasks, space, batch = setup
    trades = TRADES(cfg.adversarial.model_copy(update={"beta": 3.0, "steps": 2}), tasks, space)
    small = {k: v[:5] for k, v in batch.items()}
    model.eval()  # no dropout, BN fixed: both calls see the same function
    try:
        trades.generator = torch.Generator().manual_seed(0)
        x_adv = trades.adversarial(model, small["x"])
        trades.generator = torch.Generator().manual_seed(0)
        terms = trades(model, small)
        with torch.no_grad():
            p, log_q = F.softmax(model(small["x"])["digit"], -1), F.log_softmax(model(x_adv)["digit"], -1)
    finally:
        model.train()
    assert list(terms) == ["digit@trades"]  # parity is binary, ink a regression: no KL of theirs
    expected = 3.0 * F.kl_div(log_q, p, reduction="batchmean")
    torch.testing.assert_close(terms["digit@trades"].detach(), expected, atol=1e-6, rtol=1e-5)
    assert expected > 0


def test_eps_warmup_is_linear_then_flat():
    assert [round(warmup_eps(0.1, e, 4), 6) for e in range(6)] == [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    assert warmup_eps(0.1, 0, 0) == 0.1


@pytest.mark.parametrize("override, message", [
    ("adversarial.method=fgsm", "adversarial.method: unknown method 'fgsm' (known: none, fgsm_rs, pgd, trades)"),
    ("adversarial.tasks=[digit,colour]", "adversarial.tasks: 'colour' is not a task"),
])
def test_config_errors_are_one_line(override, message):
    with pytest.raises(UserError) as err:
        load_config("quickstart", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_table_run_is_refused(tiny_csv, tmp_path):
    cfg = {**tiny_table_config(tiny_csv), "adversarial": {"method": "pgd"}}
    with pytest.raises(UserError, match="adversarial.method: pgd needs an image run"):
        hn.Experiment(cfg).fit(tmp_path / "run")


def test_the_guard_flags_a_collapse_and_restores_the_best_weights(setup, tmp_path, capsys):
    cfg, model, tasks, space, batch = setup
    guard = RobustGuard(cfg.adversarial, tasks, space, batch, tmp_path / "best.safetensors")
    trainer = type("T", (), {"model": model, "eval_model": model})()  # eval_model: what the guard scores and keeps
    checks = iter([(0.5, 0.8), (0.6, 0.85), (0.2, 0.9)])  # (robust, clean): the third epoch collapses
    guard.check = lambda trainer: dict(zip(("pgd_accuracy", "clean_accuracy"), next(checks)), eps=0.1, steps=10)
    best = None
    for epoch in (1, 2, 3):
        record = {"epoch": epoch}
        guard.on_epoch_end(trainer, record)
        best = {k: v.clone() for k, v in model.state_dict().items()} if epoch == 2 else best
        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # training moves on
    assert record["robust"]["collapsed"] and record["robust"]["best_epoch"] == 2
    assert "collapsed" in capsys.readouterr().err
    restored = RobustGuard(cfg.adversarial, tasks, space, batch, tmp_path / "best.safetensors")
    restored.load_state_dict(json.loads(json.dumps(guard.state_dict())))
    restored.on_fit_end(trainer)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd", "trades"])
def test_a_run_per_method_writes_the_guard_numbers(method, tmp_path):
    overrides = {**FAST, "adversarial.method": method, "adversarial.steps": 2, "adversarial.guard_examples": 32,
                 "adversarial.guard_steps": 3, "adversarial.warmup_epochs": 2}
    hn.Experiment("quickstart", overrides).fit(tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        robust = line["robust"]
        assert 0 <= robust["pgd_accuracy"] <= robust["clean_accuracy"] + 0.2 and robust["eps"] == pytest.approx(8 / 255)
        assert robust["collapsed"] in (True, False)
    assert (tmp_path / "run" / "checkpoint" / "best_robust.safetensors").exists()
    assert ("digit@trades" in lines[0]["train"]) == (method == "trades")


def test_pgd_training_buys_robust_accuracy_on_digits(tmp_path):
    """The headline, on the digit task alone: standard vs PGD training, PGD-10 at eps 0.15 on 200 test images."""
    base = {**FAST, "data.limit": None, "train.epochs": 6, "tasks": {"digit": {"kind": "classification"}},
            "adversarial.eps": 0.15, "adversarial.steps": 3, "adversarial.guard_every": 0}
    accuracy = {}
    for method in ("none", "pgd"):
        hn.Experiment("quickstart", {**base, "adversarial.method": method}).fit(tmp_path / method)
        result = attack_run(load_run(tmp_path / method), "pgd", 0.15, steps=10, limit=200, write=False)
        accuracy[method] = result["robust"]["digit"]["accuracy"]
    assert accuracy["pgd"] >= accuracy["none"] + 0.15, accuracy
