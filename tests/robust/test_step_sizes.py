"""Default attack step sizes, pinned and proven in use: PGD steps 2.5·eps/steps (Madry et al. 2018) in attacks,
the guard, PGD and TRADES training; FGSM training with a random start steps 1.25·eps (Wong et al. 2020).
A changed default changes every robustness number, so it must be deliberate.

The step a run really takes is measured by a spy on the `project` that `robust.pgd` calls: each PGD iteration projects
δ + α·direction, so the change between one projection's output and the next one's input is the step.
"""

import importlib
from types import SimpleNamespace

import pytest
import torch

from hydranet.config import AdversarialConfig, Config, TaskConfig
from hydranet.data import DataInfo
from hydranet.models import HydraNet
from hydranet.models.trunks import MLPOptions, mlp
from hydranet.robust.attack_loss import AttackLoss
from hydranet.robust.attack_run import DEFAULT_STEPS, attack_run
from hydranet.robust.space import PixelSpace
from hydranet.robust.guard import RobustGuard
from hydranet.robust.defenses.fgsm_rs import FGSMOptions, FGSMRandomStart
from hydranet.robust.defenses.pgd import PGDOptions, PGDTraining
from hydranet.robust.defenses.trades import TRADES, TRADESOptions
from hydranet.tasks import Task, TaskInfo

pgd_module = importlib.import_module("hydranet.robust.pgd")  # the module: `hydranet.robust.pgd` is also the function
space_module = importlib.import_module("hydranet.robust.space")  # random_start projects there
EPS = 0.05
SPACE = PixelSpace(torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.25))
pytestmark = pytest.mark.usefixtures("one_thread")
TASKS = {"digit": Task("digit", TaskConfig(), TaskInfo("classification", 3, ["a", "b", "c"]))}


def test_defaults_are_pinned():
    assert PGDOptions().steps == 7 and PGDOptions().step_size is None
    assert FGSMOptions().step_size is None
    assert TRADESOptions().steps == 7 and TRADESOptions().step_size is None and TRADESOptions().beta == 6.0
    assert DEFAULT_STEPS == {"fgsm": 1, "pgd": 10, "apgd": 100}
    assert AdversarialConfig().guard_steps == 10


@pytest.fixture
def setup():
    torch.manual_seed(0)
    trunk = mlp(MLPOptions(hidden=[8]), (1, 4, 4))
    model = HydraNet(trunk, {name: task.head(trunk.out_dim) for name, task in TASKS.items()})
    raw = 0.4 + 0.2 * torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))  # far from 0 and 1
    batch = {"x": (raw - SPACE.mean) / SPACE.std, "digit": torch.tensor([0, 1, 2, 0, 1, 2])}
    return model, batch


@pytest.fixture
def steps_taken(monkeypatch):
    """The raw-pixel steps (max |Δ| per projection after the first) of every attack run while it is active."""
    calls = []
    real = pgd_module.project

    def spy(delta, x_raw, eps, norm):
        out = real(delta, x_raw, eps, norm)
        calls.append((delta.detach().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(pgd_module, "project", spy)
    monkeypatch.setattr(space_module, "project", spy)

    def measured() -> float:
        # call 0 projects the random start; call k ≥ 1 takes δ_{k-1} (call k-1's output) plus one step
        return max(float((calls[k][0] - calls[k - 1][1]).abs().max()) for k in range(1, len(calls)))

    return measured


def test_pgd_defaults_to_2_5_eps_over_steps(setup, steps_taken):
    model, batch = setup
    pgd_module.pgd(model, batch["x"], AttackLoss(TASKS, batch), SPACE, EPS, steps=5)
    assert steps_taken() == pytest.approx(2.5 * EPS / 5)


def test_an_attack_run_without_step_size_uses_the_pgd_default(setup, steps_taken):
    """What `hydranet attack --attack pgd` runs (it has no step-size option)."""
    model, batch = setup
    info = DataInfo("image", (1, 4, 4), mean=[0.5], std=[0.25])
    run = SimpleNamespace(config=Config(tasks={"digit": {}}), tasks=TASKS, model=model, info=info, dir=None)
    result = attack_run(run, "pgd", EPS, steps=4, batch=batch, write=False)
    assert result["steps"] == 4 and steps_taken() == pytest.approx(2.5 * EPS / 4)


def recording_pgd(monkeypatch, caller: str) -> dict:
    """Replace the `pgd` that module `caller` calls with one that records its keyword arguments, then runs it."""
    seen, real = {}, pgd_module.pgd

    def pgd(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(f"{caller}.pgd", pgd)
    return seen


@pytest.mark.parametrize("method, ratio", [
    pytest.param(lambda cfg: PGDTraining(PGDOptions(), cfg, TASKS, SPACE), 2.5 / 7, id="pgd"),  # PGD-7: 2.5·eps/7
    pytest.param(lambda cfg: FGSMRandomStart(FGSMOptions(), cfg, TASKS, SPACE), 1.25, id="fgsm_rs"),  # one step
])
def test_training_perturbations_step_by_their_default(setup, steps_taken, monkeypatch, method, ratio):
    model, batch = setup
    seen = recording_pgd(monkeypatch, "hydranet.robust.defenses.base")
    method(AdversarialConfig(eps=EPS))(model, batch)
    assert seen["step_size"] == pytest.approx(ratio * EPS)
    assert steps_taken() == pytest.approx(ratio * EPS)


def test_trades_steps_by_2_5_eps_over_steps(setup, steps_taken, monkeypatch):
    model, batch = setup
    seen = recording_pgd(monkeypatch, "hydranet.robust.defenses.trades")
    TRADES(TRADESOptions(), AdversarialConfig(eps=EPS), TASKS, SPACE).adversarial(model, batch["x"])
    assert seen["steps"] == 7 and seen["step_size"] == pytest.approx(2.5 * EPS / 7)
    assert steps_taken() == pytest.approx(2.5 * EPS / 7)


def test_a_step_size_option_replaces_the_default(setup, monkeypatch):
    model, batch = setup
    seen = {}
    monkeypatch.setattr("hydranet.robust.defenses.base.pgd", lambda *a, **kw: seen.update(kw) or a[1])
    PGDTraining(PGDOptions(step_size=0.01), AdversarialConfig(eps=EPS), TASKS, SPACE)(model, batch)
    assert seen["step_size"] == pytest.approx(0.01)


def test_the_guard_attacks_with_the_pgd_default(setup, steps_taken, tmp_path):
    model, batch = setup
    adversarial = AdversarialConfig(eps=EPS, guard_steps=4, guard_examples=6)
    guard = RobustGuard(adversarial, TASKS, SPACE, batch, tmp_path / "best.safetensors")
    trainer = SimpleNamespace(model=model, eval_model=model, epoch=0, cfg=Config(tasks={"digit": {}}))
    guard.check(trainer)
    assert steps_taken() == pytest.approx(2.5 * EPS / 4)
