"""Built-in trainer callbacks: the contract each meets inside a real (tiny) Trainer.

Callbacks are objects passed to `fit(callbacks=[…])`, not registered names, so the list is `CALLBACKS` below,
and a test finds every class in hydranet with a trainer hook that is not listed (a new callback gets the
suite once it is added there). Each: only the six documented hooks, with signatures the trainer can call;
two epochs train with it, and the records it writes are JSON (metrics.jsonl); a `state_dict` survives the
checkpoint's format; an interrupted run resumed from its checkpoint ends exactly as the uninterrupted one.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

import hydranet
from hydranet import registry
from hydranet.compress.prune import GradualPruning
from hydranet.compress.qat import FakeQuantization
from hydranet.compress.run import StartFrom
from hydranet.config import AdversarialConfig, Config, EMAConfig, NoOptions
from hydranet.data.dataset import Dataset
from hydranet.data.info import DataInfo
from hydranet.monitor.reference import StoreReference
from hydranet.robust.defenses.base import attacked
from hydranet.robust.guard import RobustGuard
from hydranet.robust.space import PixelSpace
from hydranet.rundir import RunDir
from hydranet.ssl.knn import KNNMonitor
from hydranet.train.callbacks import (
    Checkpointer, EarlyStopping, MetricsLog, ProgressBar, TensorBoardLog, make_callbacks,
)
from hydranet.train.checkpoint import load_state
from hydranet.train.diagnostics import GradientDiagnostics
from hydranet.train.ema import WeightEMA
from hydranet.train.freeze import Freezer, frozen_groups
from hydranet.train.trainer import Trainer
from hydranet.tune.trial import PruningReporter
from tests.conftest import StopAt
from tests.contracts.conftest import (
    HOOKS, IMAGE_SHAPE, MEAN, RAW, STD, image_inputs, make_problem, same_tensors, tiny_model,
)

MONITOR = "val/digit/accuracy"
TASKS = ("digit", "ink")  # two loss terms (diagnostics compare them), a single-label task (kNN, guard, monitor)
N = 32  # 24 train, 8 val


class Trial:
    """What PruningReporter needs of an Optuna trial: it records reports and prunes from epoch `prune_at`."""

    def __init__(self, prune_at: int | None = None):
        self.prune_at, self.reports = prune_at, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and self.reports[-1][0] >= self.prune_at


GUARD = AdversarialConfig(eps=0.1, guard_examples=8, guard_steps=2)

# name → factory(ctx): each built-in callback set up as a run sets it up, on the tiny problem (ctx below).
CALLBACKS = {
    "WeightEMA": lambda c: WeightEMA(c.model, EMAConfig(decay=0.5)),
    "EarlyStopping": lambda c: EarlyStopping(MONITOR, patience=1, best_path=c.dir / "best.safetensors"),
    "Checkpointer": lambda c: Checkpointer(c.dir / "own-checkpoint.safetensors"),
    "MetricsLog": lambda c: MetricsLog(c.dir / "metrics.jsonl"),
    "TensorBoardLog": lambda c: TensorBoardLog(c.dir / "tensorboard"),
    "ProgressBar": lambda c: ProgressBar(Console(file=io.StringIO(), width=100)),
    "GradientDiagnostics": lambda c: GradientDiagnostics(1),
    "KNNMonitor": lambda c: KNNMonitor(c.tasks, c.data.split("train"), c.data.split("val"), k=3, batch_size=16),
    "RobustGuard": lambda c: RobustGuard(GUARD, attacked(c.tasks, GUARD.tasks), c.space, c.data.split("val"),
                                         c.dir / "best_robust.safetensors", seed=0, batch_size=16),
    "Freezer": lambda c: Freezer(frozen_groups(c.model, ["stage1"]), unfreeze_at=2, gradual=False),
    "PruningReporter": lambda c: PruningReporter(Trial(prune_at=2), MONITOR),
    "StoreReference": lambda c: StoreReference(config(), c.tasks, c.data, RunDir(c.dir)),
    "GradualPruning": lambda c: GradualPruning(0.5, end=0.5, every=1),
    "StartFrom": lambda c: StartFrom({k: v.clone() for k, v in c.model.state_dict().items()}),
    "FakeQuantization": lambda c: FakeQuantization(),
}
# Classes with trainer hooks that are not callbacks of their own: ViewMaker gets `on_epoch_start` forwarded
# by the self-supervised method that holds it; Distillation is an extra loss whose hooks only keep the trainer's own
# forward outputs for its term (tests/test_distill.py checks that the student runs one forward per step).
NOT_CALLBACKS = {"ViewMaker", "Distillation"}


@functools.cache
def problem() -> tuple[dict, dict]:
    return make_problem(N, TASKS)


def tiny_data() -> Dataset:
    """32 stored 8×8 images (24 train, 8 val) and their targets, as `data.build` makes them."""
    tasks, targets = problem()
    info = DataInfo(kind="image", input_shape=IMAGE_SHAPE, mean=[MEAN], std=[STD], scale=1.0, channels=1,
                    size=IMAGE_SHAPE[1:], tasks={name: task.info for name, task in tasks.items()})
    raw = image_inputs(N) * STD + MEAN  # stored as raw pixels in [0, 1]; the trainer normalizes batches
    index = {"train": torch.arange(24), "val": torch.arange(24, 32), "test": torch.arange(0)}
    return Dataset(x=raw, targets=targets, index=index, info=info)


def config(precision: str = "fp32") -> Config:
    return Config(tasks={name: {"kind": RAW[name][0]} for name in TASKS},
                  train={"epochs": 2, "batch_size": 8, "progress": False, "precision": precision,
                         "optimizer": {"lr": 0.01}})


def context(folder: Path, model) -> SimpleNamespace:
    """What the callbacks are made from: the run's folder, data, tasks, model and pixel space."""
    data, (tasks, _) = tiny_data(), problem()
    space = PixelSpace(torch.full((1, 1, 1, 1), MEAN), torch.full((1, 1, 1, 1), STD))
    return SimpleNamespace(dir=folder, data=data, tasks=tasks, model=model, space=space)


def trainer_with(name: str, folder: Path, seed: int = 0, first: tuple = (), precision: str = "fp32") -> Trainer:
    """A tiny Trainer with the callback `name` (and `first` before it), checkpointed after every epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg, (tasks, _) = config(precision), problem()
    model = tiny_model(tasks, seed=seed)
    callback = CALLBACKS[name](context(folder, model))
    balancer = registry.get("balancer", "equal")(NoOptions(), tasks, cfg.seed)
    return Trainer(model, tasks, cfg, balancer, device=torch.device("cpu"),
                   callbacks=[*first, callback, Checkpointer(folder / "last.safetensors")])


def records(trainer: Trainer) -> str:
    """The history without wall-clock times, as JSON (NaN-safe comparison)."""
    return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in trainer.history], sort_keys=True)


def the_callback(trainer: Trainer, name: str):
    return next(c for c in trainer.callbacks if type(c).__name__ == name)


@pytest.fixture(scope="module", params=list(CALLBACKS))
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def whole(name, tmp_path_factory) -> tuple[Trainer, Path]:
    """Two uninterrupted epochs with the callback, and their folder (one run per callback for all its tests)."""
    folder, threads = tmp_path_factory.mktemp(name), torch.get_num_threads()
    torch.set_num_threads(1)  # the autouse one-thread fixture is per test; this one runs before it
    try:
        trainer = trainer_with(name, folder)
        trainer.fit(tiny_data())
    finally:
        torch.set_num_threads(threads)
    return trainer, folder


def test_callbacks_offer_only_the_trainers_hooks(name, tmp_path):
    callback = the_callback(trainer_with(name, tmp_path), name)
    hooks = [attr for attr in dir(callback) if attr.startswith("on_")]
    assert hooks, f"{name} has no trainer hook"
    for hook in hooks:
        assert hook in HOOKS, f"{name}.{hook} is not a trainer hook (hooks: {', '.join(HOOKS)})"
        inspect.signature(getattr(callback, hook)).bind("trainer", *HOOKS[hook])  # the trainer's call fits


def test_two_epochs_train_and_the_records_are_json(whole):
    trainer, _ = whole
    history = trainer.history
    assert len(history) == 2 and [r["epoch"] for r in history] == [1, 2]
    json.loads(json.dumps(history))  # what MetricsLog writes
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_bf16_training(name, tmp_path):
    """Callbacks that compute on the model (kNN features, the guard's PGD) work under the run's bf16 precision."""
    trainer = trainer_with(name, tmp_path, precision="bf16")
    json.loads(json.dumps(trainer.fit(tiny_data())))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_state_survives_the_checkpoint_format(name, whole, tmp_path):
    trainer, folder = whole
    callback = the_callback(trainer, name)
    if not hasattr(callback, "state_dict"):
        return
    saved = load_state(folder / "last.safetensors")["components"][name]  # what --resume reads
    fresh = the_callback(trainer_with(name, tmp_path / "fresh"), name)
    fresh.load_state_dict(saved)
    assert json.dumps(fresh.state_dict(), default=repr) == json.dumps(callback.state_dict(), default=repr)


def test_resume_ends_as_the_uninterrupted_run(name, whole, tmp_path):
    cut = trainer_with(name, tmp_path / "cut", first=(StopAt(1),))
    with pytest.raises(KeyboardInterrupt):
        cut.fit(tiny_data())
    resumed = trainer_with(name, tmp_path / "cut", seed=1)  # fresh weights and callback, as a new process has
    resumed.load_state_dict(load_state(tmp_path / "cut" / "last.safetensors"))
    resumed.fit(tiny_data())
    assert records(resumed) == records(whole[0])
    assert same_tensors(resumed.model.state_dict(), whole[0].model.state_dict())


def test_make_callbacks_builds_only_listed_callbacks(tmp_path):
    from hydranet.rundir import RunDir

    cfg = Config(train={"tensorboard": True, "early_stopping": {"monitor": "val/loss"}, "ema": {"decay": 0.9}},
                 mtl={"diagnostics_every": 1})  # every callback make_callbacks can add
    built = make_callbacks(cfg, RunDir(tmp_path), progress=True, model=tiny_model(problem()[0]))
    assert {type(c).__name__ for c in built} <= set(CALLBACKS)


def hook_classes() -> set[str]:
    """Names of the classes in hydranet's source that define a trainer hook and are not registered methods
    (nor a base of one: AttackTraining is FGSM's and PGD's)."""
    root = Path(hydranet.__file__).parent
    registered = [registry.get(kind, n) for kind in registry.KINDS for n in registry.names(kind)]
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(f, "name", None) in HOOKS for f in node.body):
                parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
                module = importlib.import_module(".".join(["hydranet", *parts]))
                cls = getattr(module, node.name)
                if not any(isinstance(r, type) and issubclass(r, cls) for r in registered):
                    found.add(node.name)
    return found


def test_every_callback_class_is_in_the_contract():
    missing = hook_classes() - set(CALLBACKS) - NOT_CALLBACKS
    assert not missing, f"add {', '.join(sorted(missing))} to CALLBACKS in tests/contracts/test_callbacks.py"
