"""A training run: `fit` an experiment into a new run directory, `resume` an interrupted one, `load_run` a
finished one. The directory's files are rundir.py's; starting, resuming and finishing are lifecycle.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from hydranet import registry
from hydranet.config import Config
from hydranet.data import DataInfo, Dataset
from hydranet.data.tabular import cardinalities
from hydranet.distributed.context import membership
from hydranet.models import HydraNet, build_model
from hydranet.models.weight_init import apply_weight_init
from hydranet.randomness import Purpose, seed_global
from hydranet.rundir import RunDir, check_fits
from hydranet.tasks import Task
from hydranet.train.callbacks import make_callbacks
from hydranet.train.freeze import make_freezer
from hydranet.train.lifecycle import Session, reopen, resolve_device, start
from hydranet.train.surface import RunParts
from hydranet.train.trainer import Trainer


@dataclass
class Run:
    """A finished (or loaded) run: where it lives, what it was, what it scored, and the model."""

    dir: Path
    config: Config
    model: HydraNet
    tasks: dict[str, Task]
    info: DataInfo
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def build_model_for(cfg: Config, info: DataInfo, device: torch.device,
                    new_run: bool = False) -> tuple[HydraNet, dict[str, Task]]:
    """Tasks from the data info and a freshly initialized model, seeded so init is reproducible."""
    tasks = {name: Task(name, cfg.tasks[name], info.tasks[name]) for name in cfg.tasks}
    return fresh_model(cfg, info, tasks, device, new_run), tasks


def fresh_model(cfg: Config, info: DataInfo, tasks: dict[str, Task], device: torch.device,
                new_run: bool = False) -> HydraNet:
    """The seeded model for these tasks on `device`, channels_last for images when the config asks. `new_run`:
    the model of a run that starts now (build_model refuses some settings for new runs only)."""
    seed_global(cfg.seed, Purpose.INIT)
    model = build_model(cfg.model, info.input_shape, tasks, cardinalities(info.encoder), new_run)
    model = apply_weight_init(model, cfg.model.weight_init).to(device)
    if cfg.train.channels_last and len(info.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


def fit(cfg: Config, run_dir: str | Path | None = None, progress: bool = True, callbacks: Sequence = ()) -> Run:
    """Train an experiment into a new run directory (created only once data, model and optimizer are built).

    `callbacks` are extra trainer callbacks (objects with any of the hooks), called before the metrics and the
    checkpoint of each epoch are written, so what they set (a `should_stop`, their state) is saved with it.
    """
    return _train(start(cfg, run_dir, "train", progress, check=_check_parts), callbacks)


def resume(run_dir: str | Path, progress: bool = True, callbacks: Sequence = ()) -> Run:
    """Continue a run that was interrupted (even by SIGKILL mid-epoch) from its last complete epoch."""
    return _train(reopen(run_dir, progress), callbacks)


def _train(session: Session, callbacks: Sequence = ()) -> Run:
    """Train the session's run; under torchrun every rank trains, rank 0 alone writes, and the process group the
    session joined is left at the end, however it ends."""
    with membership():
        return _train_joined(session, callbacks)


def _train_joined(session: Session, callbacks: Sequence) -> Run:
    cfg, data, device = session.cfg, session.data, session.device
    model, tasks = build_model_for(cfg, data.info, device, new_run=session.state is None)
    session.initialize(model)
    balancer = registry.get("balancer", cfg.mtl.balancer.name, "mtl.balancer")(cfg.mtl.balancer.options, tasks, cfg.seed)
    parts = _feature_parts(cfg, tasks, data, session.dir, device)
    for wrap in parts.balancer_wrappers:  # a feature's gradient step after the balancer's (fairness: adversarial)
        balancer = wrap(balancer)
    extra = [*make_freezer(model, cfg), *parts.callbacks, *callbacks]
    hooked = make_callbacks(cfg, session.dir, session.progress, model, extra)
    trainer = Trainer(model, tasks, cfg, balancer, device=device, perturbations=parts.perturbations,
                      extra_losses=parts.extra_losses, callbacks=hooked)
    history = session.run(trainer)
    if not session.main:  # the other ranks computed the same run; rank 0 reports and saves it
        return Run(dir=session.dir.path, config=cfg, model=model, tasks=tasks, info=data.info, history=history)
    from hydranet.train.plots import plot_curves  # lazy: matplotlib takes a second to load; only training draws

    plot_curves(history, session.dir.plots / "curves.png")
    summary = _summary(cfg, trainer, data, model)
    session.finish(session.dir.model, model.state_dict(), summary)
    return Run(dir=session.dir.path, config=cfg, model=model, tasks=tasks, info=data.info, summary=summary, history=history)


def _part_builders() -> list:
    """What features add to a run (adversarial training: its method and guard), registered as `run_parts`, so
    assembling a run imports no feature (train/surface.py `RunParts`)."""
    return [registry.get("run_parts", name) for name in registry.names("run_parts")]


def _feature_parts(cfg: Config, tasks: dict[str, Task], data: Dataset, run: RunDir, device: torch.device) -> RunParts:
    """Every registered feature's parts for this run, merged (all empty when no feature is switched on)."""
    built = [builder.build(cfg, tasks, data, run, device) for builder in _part_builders()]
    return RunParts(*([c for part in built for c in getattr(part, name)] for name in RunParts._fields))


def _check_parts(cfg: Config, data: Dataset) -> None:
    """Refuse what the data cannot serve (adversarial training of a table, a guard without val) before the run
    directory exists."""
    for builder in _part_builders():
        builder.check(cfg, data)


def _summary(cfg: Config, trainer: Trainer, data: Dataset, model: HydraNet) -> dict[str, Any]:
    """summary.json: the numbers a user compares runs by (val from the final weights, and test)."""
    splits = {}
    for name in ("val", "test"):
        if len(data.index[name]):
            splits[name] = trainer.evaluate(trainer.to_device(data.split(name)))[0]
        else:
            splits[name] = {}
    return {"experiment": cfg.name, "epochs": trainer.epoch, "train_seconds": round(trainer.train_seconds, 3),
            "precision": trainer.precision, "params": sum(p.numel() for p in model.parameters()), **splits}


def load_run(run_dir: str | Path, device: str = "cpu", calibrated: bool = True) -> Run:
    """A trained run: config, data info, tasks and the model with its final weights (eval mode).

    With `calibrated`, the temperatures of calibration.json (`hydranet calibrate`) are set on the model, so every
    reader of a run (predict, evaluate, serving, export) gets calibrated outputs; `calibrate` itself loads without
    them, so it can replace a broken file."""
    run = RunDir.open(run_dir)
    cfg = run.read_config()
    run.require(run.data, run.model)
    info = run.read_data_info(DataInfo.from_dict)
    model, tasks = build_model_for(cfg, info, resolve_device(device))
    weights = run.read_weights(run.model)[0]
    check_fits(model, weights, run.model)
    model.load_state_dict(weights)
    model.eval()
    if calibrated:
        model.temperatures = run.read_temperatures([name for name, task in tasks.items() if task.spec.temperature_scaling])
    return Run(dir=run.path, config=cfg, model=model, tasks=tasks, info=info, summary=run.read_summary())
