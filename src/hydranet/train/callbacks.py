"""Callbacks of the trainer: early stopping, checkpoints, metrics.jsonl, TensorBoard and the progress bar.

Each implements only the hooks it needs; state that must survive a resume goes through `state_dict`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from hydranet.distributed.context import is_main
from hydranet.errors import UserError
from hydranet.files import read_tensors, write_tensors, write_text
from hydranet.rundir import RunDir
from hydranet.tasks import higher_is_better
from hydranet.train.checkpoint import save_state
from hydranet.train.diagnostics import GradientDiagnostics
from hydranet.train.ema import make_ema


def monitored_value(record: dict, monitor: str) -> float | None:
    """The value of `val/loss` or `val/<task>/<metric>` in an epoch record (None if absent)."""
    if monitor == "val/loss":
        return record.get("val_loss")
    _, task, metric = monitor.split("/")
    return record.get("val", {}).get(task, {}).get(metric)


class EarlyStopping:
    """Stop when the monitored metric has not improved for `patience` epochs; keep the best weights."""

    def __init__(self, monitor: str, mode: str = "auto", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True, best_path: Path | None = None, metadata: dict[str, str] | None = None):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.maximize = higher_is_better(monitor.split("/")[-1]) if mode == "auto" else mode == "max"
        self.restore_best, self.best_path, self.metadata = restore_best, best_path, metadata
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.maximize else value < self.best - self.min_delta

    def on_epoch_end(self, trainer, record: dict) -> None:
        value = monitored_value(record, self.monitor)
        if value is None or math.isnan(value):
            return
        if self._improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
            if self.restore_best and self.best_path is not None:
                write_tensors(self.best_path, trainer.eval_model.state_dict(), self.metadata)
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True

    def on_fit_end(self, trainer) -> None:
        if self.restore_best and self.best_path is not None and self.best_path.exists():
            trainer.model.load_state_dict(read_tensors(self.best_path)[0])

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


class Checkpointer:
    """Write the whole training state atomically after every epoch (what `--resume` reads), stamped with
    `metadata` (the run's id)."""

    def __init__(self, path: Path, metadata: dict[str, str] | None = None):
        self.path, self.metadata = path, metadata

    def on_epoch_end(self, trainer, record: dict) -> None:
        save_state(self.path, trainer.state_dict(), self.metadata)


class MetricsLog:
    """`metrics.jsonl`: one JSON object per epoch, rewritten from the history so a resume never duplicates lines.

    Rewriting the whole (small) file atomically each epoch, rather than appending a line, also means a crash
    mid-write never leaves a torn last line."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, trainer, record: dict) -> None:
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in trainer.history))


class TensorBoardLog:
    """Scalars of every epoch record as TensorBoard events (needs the `tensorboard` package).

    The writer (which makes its folder at once) is opened when training starts: a run's folder is created only
    after everything has been built."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: optional dependency
        except ImportError:
            raise UserError("train.tensorboard: needs the tensorboard package (pip install 'hydranet[tensorboard]')") from None

        self.log_dir, self.open_writer = log_dir, SummaryWriter

    def on_fit_start(self, trainer) -> None:
        self.writer = self.open_writer(str(self.log_dir))

    def on_epoch_end(self, trainer, record: dict) -> None:
        for key, value in _flatten(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        self.writer.close()


def _flatten(record: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in record.items():
        if key == "epoch":
            continue
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)):
            flat[f"{prefix}{key}"] = value
    return flat


class ProgressBar:
    """A rich progress bar per epoch with running per-task losses, and one summary line per epoch."""

    def __init__(self, console: Console | None = None, refreshes_per_epoch: int = 20):
        self.console = console or Console(stderr=True)
        self.refreshes = refreshes_per_epoch
        self.progress: Progress | None = None

    def on_fit_start(self, trainer) -> None:
        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.progress.start()

    def on_epoch_start(self, trainer) -> None:
        steps = trainer.total_steps // trainer.epochs
        self.every = max(1, steps // self.refreshes)
        self.bar = self.progress.add_task("train", total=steps, epoch=f"{trainer.epoch + 1}/{trainer.epochs}", losses="")
        self.count = 0

    def on_step_end(self, trainer, losses: dict) -> None:
        self.count += 1
        if self.count % self.every == 0:  # reading a loss is a device sync: only every few steps
            text = "  ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items())
            self.progress.update(self.bar, completed=self.count, losses=text)

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.progress.remove_task(self.bar)
        self.console.print(epoch_line(record, trainer.epochs))

    def on_fit_end(self, trainer) -> None:
        self.progress.stop()


def epoch_line(record: dict, epochs: int) -> str:
    """`epoch 3/10  loss 0.412  val digit accuracy 0.981 …  4.1s`"""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['train']['loss']:.4f}"]
    for task, metrics in record.get("val", {}).items():
        shown = [(k, v) for k, v in metrics.items() if k != "loss"][:2]
        parts.append(f"val {task} " + " ".join(f"{k} {v:.4f}" for k, v in shown))
    for task, metrics in record.get("knn", {}).items():  # self-supervised pretraining's progress meter
        parts.append(f"kNN {task} accuracy {metrics['accuracy']:.4f}")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


def make_callbacks(cfg: Any, run: RunDir, progress: bool, model: nn.Module, extra: Sequence = ()) -> list:
    """The callbacks of a run in the order their hooks must fire: the weight average first (it loads the average
    at fit end, before early stopping may restore its best weights), then whatever changes the epoch record or
    `should_stop` (diagnostics, early stopping, the user's `extra`) before the record and state are saved.

    Under torchrun every rank decides alike (early stopping reads metrics that are equal on every rank, and keeps
    its best weights in the rank's own run folder: the other ranks' is a private scratch folder, so after a resume
    they have no best file and keep their last weights, which nothing reads), but only rank 0 gets the callbacks
    that log, checkpoint or show something."""
    stop, main = cfg.train.early_stopping, is_main()
    callbacks: list = make_ema(model, cfg.train.ema)
    if cfg.mtl.diagnostics_every:  # writes into the epoch record before MetricsLog and Checkpointer save it
        callbacks.append(GradientDiagnostics(cfg.mtl.diagnostics_every))
    if stop.monitor:
        callbacks.append(EarlyStopping(stop.monitor, stop.mode, stop.patience, stop.min_delta, stop.restore_best,
                                       run.best, run.stamp()))
    callbacks += extra
    if not main:
        return callbacks
    callbacks += [MetricsLog(run.metrics), Checkpointer(run.last, run.stamp())]
    if cfg.train.tensorboard:
        callbacks.append(TensorBoardLog(run.tensorboard))
    if progress:
        callbacks.append(ProgressBar())
    return callbacks
