"""`hydranet pretrain`: train a trunk without labels, into a run directory with `trunk.safetensors`.

The ordinary trainer does the work: a HydraNet without heads, the `ssl.method` as its only loss term,
a kNN monitor as a callback; so checkpoints, exact `--resume`, metrics.jsonl, progress, schedules and bf16
behave as in supervised training. Labels are never used for training; where the experiment has
classification or binary tasks, the kNN monitor reports how well the features separate them each epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from hydranet import registry
from hydranet.config import Config, NoOptions
from hydranet.data import Dataset
from hydranet.data.split import random_rows
from hydranet.distributed.context import membership
from hydranet.errors import UserError
from hydranet.models import HydraNet
from hydranet.ssl.knn import KNNMonitor
from hydranet.ssl.views import ViewMaker
from hydranet.tasks import Task
from hydranet.train.callbacks import make_callbacks
from hydranet.train.lifecycle import Session, reopen, start
from hydranet.train.run import Run, fresh_model
from hydranet.train.trainer import Trainer


def pretrain(cfg: Config, run_dir: str | Path | None = None, progress: bool = True, callbacks: Sequence = ()) -> Run:
    """Self-supervised pretraining of `cfg.model.trunk` on the experiment's train split."""
    _check(cfg)
    return _pretrain(start(cfg, run_dir, "pretrain", progress, labels_required=False), callbacks)


def resume_pretrain(run_dir: str | Path, progress: bool = True, callbacks: Sequence = ()) -> Run:
    """Continue an interrupted pretraining run from its last complete epoch."""
    return _pretrain(reopen(run_dir, progress, labels_required=False), callbacks)


def _check(cfg: Config) -> None:
    if cfg.model.sharing.name != "hard":
        raise UserError(f"model.sharing: pretraining learns one trunk; {cfg.model.sharing.name!r} has one per task (use hard)")
    if cfg.adversarial.method.name != "none":
        raise UserError("adversarial.method: pretraining has no task loss to attack (set it to none)")
    if cfg.train.freeze != "none":
        raise UserError("train.freeze: pretraining trains the trunk (set it to none)")
    if cfg.model.ensemble > 1:
        raise UserError("model.ensemble: pretraining feeds the trunk alone, which holds one member's rows, not an "
                        "ensemble's (set it to 1)")


def _pretrain(session: Session, callbacks: Sequence) -> Run:
    """Pretrain the session's run; under torchrun every rank trains, rank 0 alone writes, and the process group the
    session joined is left at the end, however it ends."""
    with membership():
        return _pretrain_joined(session, callbacks)


def _pretrain_joined(session: Session, callbacks: Sequence) -> Run:
    cfg, data, device = session.cfg, session.data, session.device
    model = fresh_model(cfg, data.info, {}, device)  # the trunk, no heads
    session.initialize(model)
    views = ViewMaker(cfg.ssl, cfg.seed, cfg.train.precision, data.info)
    method = registry.get("ssl", cfg.ssl.method.name, "ssl.method")(cfg.ssl.method.options, model.trunk, views)
    balancer = registry.get("balancer", "equal")(NoOptions(), {}, cfg.seed)
    tasks = {t: Task(t, cfg.tasks[t], info) for t, info in data.info.tasks.items()}  # the labeled ones
    monitor = _knn_monitor(cfg, tasks, data, device)
    trainer = Trainer(model, {}, cfg, balancer, device=device, extra_losses=[method],
                      callbacks=make_callbacks(cfg, session.dir, session.progress, model, [*monitor, *callbacks]))
    history = session.run(trainer)
    summary = _summary(cfg, trainer, model)
    session.finish(session.dir.trunk, {f"trunk.{k}": v for k, v in model.trunk.state_dict().items()}, summary)
    return Run(dir=session.dir.path, config=cfg, model=model, tasks=tasks, info=data.info, summary=summary, history=history)


def _knn_monitor(cfg: Config, tasks: dict[str, Task], data: Dataset, device: torch.device) -> list[KNNMonitor]:
    """A kNN monitor: a seeded random sample of labeled train examples (bank) and of val, else test, examples
    (queries); random, because sources often list examples class by class."""
    if not any(t.spec.single_label for t in tasks.values()):
        return []
    held_out = "val" if len(data.index["val"]) else "test"
    if not len(data.index[held_out]):
        return []
    bank = _on(random_rows(data.split("train"), cfg.ssl.knn_bank, cfg.seed), device)
    queries = _on(random_rows(data.split(held_out), cfg.ssl.knn_queries, cfg.seed), device)
    return [KNNMonitor(tasks, bank, queries, cfg.ssl.knn_k, cfg.train.eval_batch_size)]


def _on(arrays: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in arrays.items()}


def _summary(cfg: Config, trainer: Trainer, model: HydraNet) -> dict:
    last = trainer.history[-1] if trainer.history else {}
    return {"experiment": cfg.name, "method": cfg.ssl.method.name, "epochs": trainer.epoch,
            "train_seconds": round(trainer.train_seconds, 3), "params": sum(p.numel() for p in model.trunk.parameters()),
            "loss": last.get("train", {}).get("loss"), "knn": last.get("knn", {})}
