"""The trainer surface: every built-in component uses only `TrainerView` (train/surface.py) of the trainer its
hooks receive — checked statically over src and at run time with a view that refuses everything else."""

import ast
from pathlib import Path

import pytest

import hydranet as hn
from hydranet import registry
from hydranet.config import load_config
from hydranet.ssl import pretrain
from hydranet.train.surface import HOOKS, SURFACE, WRITABLE
from hydranet.train.trainer import Trainer

SRC = Path(__file__).resolve().parents[1] / "src" / "hydranet"
# The trainer itself and the code that builds, resumes and summarizes one own it whole; every other function
# that takes a `trainer` is (part of) a component.
OWNERS = {"train/trainer.py", "train/run.py", "train/lifecycle.py", "ssl/pretraining.py"}


def trainer_uses(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, attribute, set?) of every `trainer.<attribute>` inside functions that take a `trainer` argument."""
    uses = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and "trainer" in [a.arg for a in func.args.args]:
            for node in ast.walk(func):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trainer":
                    uses.append((node.lineno, node.attr, isinstance(node.ctx, ast.Store)))
    return uses


def test_components_in_src_use_only_the_documented_surface():
    wrong, seen = [], set()
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in OWNERS:
            continue
        for line, attr, stored in trainer_uses(ast.parse(path.read_text(encoding="utf-8"))):
            seen.add(attr)
            if attr not in (WRITABLE if stored else SURFACE):
                wrong.append(f"{name}:{line}: trainer.{attr}{' = …' if stored else ''}")
    assert not wrong, "outside train/surface.py's TrainerView:\n" + "\n".join(wrong)
    assert {"epoch", "model", "should_stop", "shared"} <= seen  # the scan does find the components


class StrictView:
    """The trainer as TrainerView promises it, and nothing more."""

    def __init__(self, trainer):
        object.__setattr__(self, "_trainer", trainer)

    def __getattr__(self, name):
        if name not in SURFACE:
            raise AssertionError(f"a component read trainer.{name}, which train/surface.py does not offer")
        return getattr(self._trainer, name)

    def __setattr__(self, name, value):
        if name not in WRITABLE:
            raise AssertionError(f"a component set trainer.{name}, which train/surface.py does not allow")
        setattr(self._trainer, name, value)


@pytest.fixture
def strict_hooks(monkeypatch):
    """Hooks receive a StrictView instead of the trainer (the loop of Trainer.hook, with the view)."""
    def hook(self, name, *args):
        view = StrictView(self)
        for component in self.components:
            method = getattr(component, name, None)
            if method is not None:
                method(view, *args)

    monkeypatch.setattr(Trainer, "hook", hook)


SMALL = {"data.limit": 240, "train.epochs": 2, "train.batch_size": 64, "train.threads": 1}


def hooked_balancers() -> list[str]:
    return [n for n in registry.names("balancer") if any(hasattr(registry.get("balancer", n), h) for h in HOOKS)]


def test_a_run_with_every_built_in_callback_keeps_to_the_surface(strict_hooks, tmp_path):
    """EMA, diagnostics, early stopping, freezing, TensorBoard, progress, adversarial training and its guard."""
    overrides = {**SMALL, "train.ema.decay": 0.9, "mtl.diagnostics_every": 1, "train.tensorboard": True,
                 "train.freeze": "trunk", "train.unfreeze_at": 2, "adversarial.method": "fgsm_rs",
                 "adversarial.guard_examples": 16}
    run = hn.Experiment("quickstart", overrides).fit(tmp_path / "run", progress=True)
    assert "robust" in run.history[-1] and "gradients" in run.history[-1]


@pytest.mark.parametrize("balancer", hooked_balancers())
def test_balancers_with_hooks_keep_to_the_surface(strict_hooks, tmp_path, balancer):
    hn.Experiment("quickstart", {**SMALL, "mtl.balancer": balancer}).fit(tmp_path / "run")


def test_trades_and_pretraining_keep_to_the_surface(strict_hooks, tmp_path):
    hn.Experiment("quickstart", {**SMALL, "adversarial.method": {"name": "trades", "steps": 1},
                                 "adversarial.guard_every": 0}).fit(tmp_path / "trades")
    cfg = load_config("quickstart", [f"{k}={v}" for k, v in SMALL.items()] + ["ssl.method=byol"])
    run = pretrain(cfg, tmp_path / "byol", progress=False)
    assert "knn" in run.history[-1]
