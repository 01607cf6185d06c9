"""The life of a run that trains (start or resume, train, finish), written once for training and pretraining,
so settings, data, run directory and checkpoint are handled alike; what is trained in between is theirs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from hydranet.config import Config
from hydranet.data import Dataset, build_dataset
from hydranet.errors import UserError
from hydranet.files import write_tensors
from hydranet.models.pretrained import init_from, weights_file
from hydranet.rundir import RunDir
from hydranet.train.allocator import keep_freed_memory
from hydranet.train.checkpoint import load_state
from hydranet.train.ema import upgrade_state
from hydranet.train.trainer import TrainingDiverged


def apply_process_settings(cfg: Config) -> None:
    """Process-wide settings of a run: intra-op threads and how freed CPU memory is kept (allocator.py)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.cpu_memory == "keep":
        keep_freed_memory()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device: {name!r} is not a device (expected auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: {name!r} requested but CUDA is not available here")
    return device


def load_checkpoint(path: Path) -> dict:
    """The trainer state a resumed run continues from, in this version's layout (older checkpoints upgraded)."""
    try:
        return upgrade_state(load_state(path))
    except (UserError, KeyError, ValueError) as err:
        raise UserError(f"{path}: checkpoint is unreadable ({err}); start a new run") from None


@dataclass
class Session:
    """One start or resume of a run: what it trains on, where it writes, and the state it continues from."""

    cfg: Config
    dir: RunDir
    data: Dataset
    device: torch.device
    progress: bool  # the caller asked for a progress bar and train.progress allows it
    state: dict | None = None  # the checkpoint a resumed run continues from; None: a new run

    def initialize(self, model: torch.nn.Module) -> None:
        """A new run's `model.init_from`: load it, print the report and keep it as init.json."""
        if self.state is not None or self.cfg.model.init_from is None:  # a resumed run has its weights in the state
            return
        cfg = self.cfg.model
        report = init_from(model, cfg.init_from, cfg.init_map, cfg.init_heads)
        print(report, file=sys.stderr)
        self.dir.write_init_report(report.to_dict())

    def train(self, trainer: Any) -> list[dict]:
        """Train to the last epoch, continuing a resumed run exactly where its checkpoint left off.

        A diverged run is marked failed in run.json, with the reason; its last good checkpoint stays as it was."""
        if self.state is not None:
            trainer.load_state_dict(self.state)
        try:
            return trainer.fit(self.data)
        except TrainingDiverged as err:
            kept = (f"keeps its last good checkpoint, epoch {err.epoch - 1} (--resume would continue from it with the "
                    f"same settings and diverge again)" if self.dir.last.exists() else "has no checkpoint yet")
            failed = UserError(f"{err}, in a new run; {self.dir.path} is marked failed and {kept}")
            self.dir.write_status("failed", reason=str(failed))
            raise failed from None

    def finish(self, weights: Path, tensors: dict[str, torch.Tensor], summary: dict[str, Any]) -> None:
        """The final weights, summary.json, and run.json marked finished."""
        write_tensors(weights, tensors)
        self.dir.finish(summary)


def start(cfg: Config, run_dir: str | Path | None, kind: str, progress: bool, *, labels_required: bool = True,
          check: Callable[[Config, Dataset], None] | None = None) -> Session:
    """A new run: settings applied, data loaded and `check`ed, and only then the run directory created, so a
    mistake in the config or the data leaves nothing behind."""
    apply_process_settings(cfg)
    if cfg.model.init_from is not None:
        weights_file(cfg.model.init_from)  # a wrong path fails before the run directory exists
    data = build_dataset(cfg, labels_required=labels_required)
    if check is not None:
        check(cfg, data)
    return _session(cfg, RunDir.create(cfg, run_dir, kind), data, progress, state=None)


def reopen(run_dir: str | Path, progress: bool, *, labels_required: bool = True) -> Session:
    """An interrupted run (even by SIGKILL mid-epoch), with its own config, from its last complete epoch."""
    run = RunDir.open(run_dir)
    cfg = run.read_config()
    apply_process_settings(cfg)
    state = load_checkpoint(run.last) if run.last.exists() else None
    return _session(cfg, run, build_dataset(cfg, labels_required=labels_required), progress, state)


def _session(cfg: Config, run: RunDir, data: Dataset, progress: bool, state: dict | None) -> Session:
    device = resolve_device(cfg.train.device)
    run.write_data_info(data.info.to_dict())
    return Session(cfg, run, data, device, progress and cfg.train.progress, state)
