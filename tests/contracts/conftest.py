"""Shared tiny fixtures of the contract suites: one task per kind, image and table batches, a stand-in trainer.

Each suite in this folder runs over `registry.names(kind)` (or the list of built-in callbacks), so a new or
plugin method gets it for free. What the methods are checked against is here, small enough (batches of
6, 8×8 images, one thread) that the whole folder takes seconds.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hydranet import registry
from hydranet.config import AdversarialConfig, NoOptions, TaskConfig
from hydranet.data.info import DataInfo
from hydranet.data.targets import encode_target
from hydranet.kinds import get_kind
from hydranet.models.hydranet import HydraNet
from hydranet.models.trunks import CNNOptions, MLPOptions, cnn, mlp
from hydranet.robust.space import PixelSpace
from hydranet.tasks import Task
from hydranet.train.checkpoint import load_state, save_state
from hydranet.train.surface import SURFACE

# One task of every kind, named as the quickstart-like problems name them; the raw values repeat every 6 rows.
RAW = {
    "digit": ("classification", ["a", "b", None, "c", "a", "b"]),
    "even": ("binary", ["no", "yes", "yes", None, "no", "yes"]),
    "tags": ("multilabel", ["x|y", "y", "x", None, "y", "x|y"]),
    "ink": ("regression", [0.5, None, 1.5, 2.0, -1.0, 3.0]),
}
HOOKS = {  # the trainer's optional lifecycle hooks (train/surface.py) and what each gets after the trainer
    "on_fit_start": (), "on_epoch_start": (), "on_losses": ("losses",), "on_step_end": ("losses",),
    "on_epoch_end": ("record",), "on_fit_end": (),
}
IMAGE_SHAPE = (1, 8, 8)
TABLE_SHAPE = (5,)
MEAN, STD = 0.4, 0.3  # the pixel statistics the normalized image batches were made with


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors are fastest on one thread, and the shared machine's other core stays free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_problem(n: int = 6, names=tuple(RAW)) -> tuple[dict[str, Task], dict[str, torch.Tensor]]:
    """(tasks, targets) of n examples, encoded as `data.build` encodes them; every task misses one label."""
    tasks, targets = {}, {}
    for name in names:
        kind, values = RAW[name]
        column = np.array([values[i % len(values)] for i in range(n)], dtype=object)
        cfg = TaskConfig(kind=kind)
        target, info = encode_target(column, cfg, name)
        get_kind(kind).fit(info, target)
        tasks[name], targets[name] = Task(name, cfg, info), target
    return tasks, targets


def image_inputs(n: int, seed: int = 0) -> torch.Tensor:
    """Normalized images (n, 1, 8, 8) whose raw pixels fill [0, 1], edges included (clamping matters there)."""
    gen = torch.Generator().manual_seed(seed)
    raw = torch.rand(n, *IMAGE_SHAPE, generator=gen)
    raw[:, :, 0, 0], raw[:, :, 0, 1] = 0.0, 1.0
    return (raw - MEAN) / STD


@pytest.fixture
def problem():
    """tasks and targets of 6 examples (one task per kind)."""
    return make_problem()


@pytest.fixture
def tasks(problem) -> dict[str, Task]:
    return problem[0]


@pytest.fixture
def image_batch(problem) -> dict[str, torch.Tensor]:
    """{"x": (6, 1, 8, 8) normalized images, task: target}."""
    return {"x": image_inputs(6), **problem[1]}


@pytest.fixture
def table_batch(problem) -> dict[str, torch.Tensor]:
    """{"x": (6, 5) encoded features, task: target}."""
    return {"x": torch.randn(6, *TABLE_SHAPE, generator=torch.Generator().manual_seed(1)), **problem[1]}


@pytest.fixture
def space() -> PixelSpace:
    """The raw-pixel space of the image batches."""
    return PixelSpace(torch.full((1, 1, 1, 1), MEAN), torch.full((1, 1, 1, 1), STD))


@pytest.fixture
def image_info() -> DataInfo:
    """What `data.build` records about an image set like the batches (a run's `data.json`)."""
    return DataInfo(kind="image", input_shape=IMAGE_SHAPE, mean=[MEAN], std=[STD], scale=1.0)


@pytest.fixture
def table_info() -> DataInfo:
    return DataInfo(kind="table", input_shape=TABLE_SHAPE)


def tiny_model(tasks: dict[str, Task], shape=IMAGE_SHAPE, seed: int = 0) -> HydraNet:
    """A small HydraNet with BatchNorm (its running statistics must survive attacks), in train mode."""
    torch.manual_seed(seed)
    if len(shape) == 3:
        trunk = cnn(CNNOptions(channels=[4], dense=[8], batch_norm=True), shape)
    else:
        trunk = mlp(MLPOptions(hidden=[8], batch_norm=True), shape)
    return HydraNet(trunk, {name: task.head(trunk.out_dim) for name, task in tasks.items()}).train()


@pytest.fixture
def make_model(tasks):
    """make_model(shape=(1, 8, 8), seed=0) → a fresh tiny HydraNet on the fixture's tasks."""
    return lambda shape=IMAGE_SHAPE, seed=0: tiny_model(tasks, shape, seed)


def default_options(kind: str, name: str):
    """A method's options with every default (NoOptions for a method that declares none)."""
    declared = registry.options(kind, name)
    return declared() if declared is not None else NoOptions()


def make_adversarial(kind: str, name: str, tasks: dict[str, Task], space: PixelSpace, **adversarial):
    """An adversarial method (a perturbation or an extra loss) with its default options, made as a run makes it."""
    cfg = AdversarialConfig(**{"eps": 0.1, **adversarial})
    return registry.get(kind, name)(default_options(kind, name), cfg, tasks, space)


def start_epoch(component, trainer) -> None:
    """Call the component's optional `on_epoch_start` hook, as the trainer does."""
    hook = getattr(component, "on_epoch_start", None)
    if hook is not None:
        hook(trainer)


def fake_trainer(model=None, epoch: int = 0, seed: int = 0, **more) -> SimpleNamespace:
    """The trainer as components see it (`TrainerView`, train/surface.py) and nothing more, so a component that
    reads anything else fails here too: counters, the run's seed, device and precision, model, eval model,
    shared parameters, history and stop flag (no `state_dict`: only the Checkpointer, tested in a real
    Trainer, asks for the whole state)."""
    surface = {"epoch": epoch, "step": 0, "total_steps": 4, "epochs": 2, "seed": seed, "device": torch.device("cpu"),
               "precision": "fp32", "model": model, "eval_model": model, "history": [], "should_stop": False,
               "shared": model.shared_parameters() if model is not None else [], **more}
    assert set(surface) <= SURFACE, f"not on the trainer's surface: {', '.join(sorted(set(surface) - SURFACE))}"
    return SimpleNamespace(**surface)


def through_checkpoint(state, path):
    """A component state as `--resume` reads it back: written with the checkpoint's own format."""
    save_state(path, {"state": state})
    return load_state(path)["state"]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (BatchNorm statistics), cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN (a missing label) equal to NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
