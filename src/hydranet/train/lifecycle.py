"""The life of a run that trains (start or resume, train, finish), written once for training and pretraining,
so settings, data, run directory and checkpoint are handled alike; what is trained in between is theirs.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from hydranet.config import Config
from hydranet.data import Dataset, build_dataset
from hydranet.data.build import load_raw
from hydranet.data.batches import check_global_batch
from hydranet.distributed.context import is_main, join, rank, synchronize, world_size
from hydranet.errors import UserError
from hydranet.files import read_tensors, tensor_digest, write_tensors
from hydranet.models.pretrained import LoadReport, init_from, weights_file
from hydranet.rundir import RunDir, RunFinished, RunInterrupted, check_fits, sized
from hydranet.train.allocator import keep_freed_memory
from hydranet.train.checkpoint import state_from
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


def load_checkpoint(path: Path, owner: RunDir | None = None) -> dict:
    """The trainer state a resumed run continues from, in this version's layout (older checkpoints upgraded);
    a damaged file, or one another run than `owner` wrote, is refused (read_tensors, RunDir.read_weights)."""
    read = read_tensors if owner is None else owner.read_weights
    try:
        return upgrade_state(state_from(*read(path)))
    except (KeyError, ValueError) as err:
        raise UserError(f"{path}: checkpoint is unreadable ({err}); start a new run") from None


def data_fingerprint(data: Dataset) -> str:
    """SHA-256 of the encoded data a run trains on (inputs, targets, example weights, the split of every example):
    what `--resume` compares, so a run never continues on other data. Encoded tensors rather than source files
    cover every source alike and a change in preprocessing too (150 MB of images hash in about 0.5 s)."""
    return tensor_digest({"x": data.x, **{f"target/{k}": v for k, v in data.targets.items()},
                          **{f"index/{k}": v for k, v in data.index.items()},
                          **{f"weight/{k}": v for k, v in data.weights.items()},  # none: as before weights
                          **{f"extra/{k}": v for k, v in data.extras.items()}})


@dataclass
class Session:
    """One start or resume of a run: what it trains on, where it writes, and the state it continues from."""

    cfg: Config
    dir: RunDir
    data: Dataset
    device: torch.device
    progress: bool  # the caller asked for a progress bar and train.progress allows it
    state: dict | None = None  # the checkpoint a resumed run continues from; None: a new run
    kind: str = "train"  # train | pretrain: the command that continues the run
    new: bool = True  # the folder is only planned: `run` claims it once everything has been built
    fingerprint: str | None = None  # data_fingerprint(data), recorded in a new run's run.json
    init_report: LoadReport | None = None  # what `initialize` loaded, kept as init.json

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory: always in one process, rank 0 alone under torchrun
        (every rank trains the same steps; the others only compute)."""
        return is_main()

    def initialize(self, model: torch.nn.Module) -> None:
        """A new run's `model.init_from`: load it and print the report (written as init.json by `run`)."""
        if self.state is not None or self.cfg.model.init_from is None:  # a resumed run has its weights in the state
            return
        cfg = self.cfg.model
        self.init_report = init_from(model, cfg.init_from, cfg.init_map, cfg.init_heads)
        if self.main:
            print(self.init_report, file=sys.stderr)

    def run(self, trainer: Any) -> list[dict]:
        """Claim the folder of a new run (everything that can be refused has been built by now), then train. Ctrl-C
        marks run.json interrupted and raises RunInterrupted, which says how to continue."""
        if self.state is not None:
            check_fits(trainer.model, self.state["model"], self.dir.last)
        check_global_batch(self.cfg.train.batch_size, world_size())
        self._begin()
        try:
            history = self.train(trainer)
        except KeyboardInterrupt:
            if self.main:
                self.dir.write_status("interrupted")
            raise RunInterrupted(self.dir.path, self.kind) from None
        synchronize("the end of training")  # the last collective: rank 0's writing after it keeps no rank waiting
        return history

    def _begin(self) -> None:
        if not self.main:
            return
        if not self.new:
            self.dir.write_status("running")
            return
        self.dir.claim(self.cfg, self.kind, self.fingerprint)
        self.dir.write_data_info(self.data.info.to_dict())
        if self.init_report is not None:
            self.dir.write_init_report(self.init_report.to_dict())

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
            if self.main:
                self.dir.write_status("failed", reason=str(failed))
            raise failed from None

    def finish(self, weights: Path, tensors: dict[str, torch.Tensor], summary: dict[str, Any]) -> None:
        """The final weights (stamped with the run's id), summary.json, and run.json marked finished (rank 0)."""
        if not self.main:
            return
        write_tensors(weights, tensors, self.dir.stamp())
        self.dir.finish(summary)


def start(cfg: Config, run_dir: str | Path | None, kind: str, progress: bool, *, labels_required: bool = True,
          check: Callable[[Config, Dataset], None] | None = None) -> Session:
    """A new run: settings applied, data loaded and `check`ed, the folder planned but not created: the caller
    builds model, optimizer and `init_from` first and `Session.run` claims it, so a mistake anywhere leaves
    nothing behind and the same --run-dir works once it is fixed."""
    apply_process_settings(cfg)
    device = join(resolve_device(cfg.train.device), cfg.train.distributed_timeout)
    run = RunDir.plan(cfg, run_dir) if is_main() else scratch()
    if cfg.model.init_from is not None:
        weights_file(cfg.model.init_from)  # a wrong path fails before the data is loaded
    raw = load_raw(cfg)
    cfg = sized(cfg, len(raw), cfg.model.init_from)  # a table default's trunk and encoder: by size, or init_from's
    data = build_dataset(cfg, labels_required=labels_required, raw=raw)
    if check is not None:
        check(cfg, data)
    return Session(cfg, run, data, device, progress and cfg.train.progress, kind=kind, fingerprint=data_fingerprint(data))


def scratch() -> RunDir:
    """The run directory of a rank other than 0: a private temporary folder, removed when the process ends. Rank 0
    alone writes the user's run; whatever a feature writes on another rank (early stopping's best weights, which it
    restores as rank 0 does, a drift reference) lands here, never beside or over rank 0's files."""
    path = Path(tempfile.mkdtemp(prefix=f"hydranet-rank{rank()}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return RunDir(path / "run")


def reopen(run_dir: str | Path, progress: bool, *, labels_required: bool = True) -> Session:
    """An interrupted run (even by SIGKILL mid-epoch), with its own config, from its last complete epoch.

    Refused before anything is written: a finished run (RunFinished, with its stored summary), a checkpoint
    that is damaged or from another run, and data that differ from those the run was started on."""
    run = RunDir.open(run_dir)
    meta = run.read_run_json()
    kind = meta.get("kind", "train")
    if kind not in ("train", "pretrain"):  # another loop's run (`meta train`): its own command continues it
        raise UserError(f"{run.path}: is a {kind} run; continue it with hydranet {kind} --resume {run.path}")
    if meta.get("status") == "finished":
        raise RunFinished(run.path, run.read_summary(required=True))
    cfg = run.read_config()
    apply_process_settings(cfg)
    device = join(resolve_device(cfg.train.device), cfg.train.distributed_timeout)
    if run.checkpoint_dir.exists() and not run.checkpoint_dir.is_dir():
        raise UserError(f"{run.checkpoint_dir}: is a file (expected the run's checkpoint folder)")
    state = load_checkpoint(run.last, run) if run.last.exists() else None
    data = build_dataset(cfg, labels_required=labels_required)
    _check_same_data(run, meta.get("data_sha256"), data_fingerprint(data))
    run = run if is_main() else scratch()  # every rank read the checkpoint; rank 0 alone writes on
    return Session(cfg, run, data, device, progress and cfg.train.progress, state, kind=kind, new=False)


def _check_same_data(run: RunDir, recorded: str | None, now: str) -> None:
    """Runs from before fingerprints were recorded have none to compare."""
    if recorded is not None and recorded != now:
        raise UserError(f"{run.path}: was started on different data (fingerprint {recorded[:12]}…, the data now "
                        f"{now[:12]}…); resuming would mix two data sets: start a new run")
