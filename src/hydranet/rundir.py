"""A run directory, the unit users share: its file names and the code that creates, reads and writes it, so
training, pretraining, `hn.load`, evaluate, predict, attack, probe and `init_from` agree on one layout.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

import hydranet
from hydranet.config import Config, to_yaml, validate
from hydranet.errors import UserError
from hydranet.files import make_dir, unwritable_as_user_error, write_json, write_text

MODEL_FILE = "model.safetensors"
TRUNK_FILE = "trunk.safetensors"


class RunDir:
    """The named paths of one run directory, and its reads and writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"  # the resolved config: what a resume continues and a reader rebuilds
        self.run_json = self.path / "run.json"  # provenance, kind (train | pretrain) and status (running | finished)
        self.data = self.path / "data.json"  # DataInfo.to_dict(): preprocessing fitted on train, what each task predicts
        self.metrics = self.path / "metrics.jsonl"  # one line per epoch
        self.model = self.path / MODEL_FILE  # the final weights of a training run
        self.trunk = self.path / TRUNK_FILE  # the final trunk of a pretraining run
        self.checkpoint_dir = self.path / "checkpoint"
        self.last = self.checkpoint_dir / "last.safetensors"  # the whole training state after the last epoch
        self.best = self.checkpoint_dir / "best.safetensors"  # early stopping's best weights
        self.best_robust = self.checkpoint_dir / "best_robust.safetensors"  # the robustness guard's best weights
        self.summary = self.path / "summary.json"
        self.plots = self.path / "plots"
        self.init = self.path / "init.json"  # what `model.init_from` loaded
        self.tensorboard = self.path / "tensorboard"

    def eval_file(self, split: str) -> Path:
        return self.path / f"eval-{split}.json"

    def attack_file(self, attack: str, sweep: bool = False) -> Path:
        return self.path / f"attack-{attack}{'-sweep' if sweep else ''}.json"

    def probe_file(self, mode: str) -> Path:
        return self.path / f"probe-{mode}.json"

    # --- a new run --------------------------------------------------------------------------------

    @classmethod
    def create(cls, cfg: Config, path: str | Path | None, kind: str) -> RunDir:
        """Claim a new run directory (default runs/<name>-<time>) and write config.yaml and run.json (running).

        One that already holds a run is refused, so nothing saved is overwritten."""
        if path is None:
            stem = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            path, n = stem, 1
            while path.exists():  # two runs started in the same second
                path, n = stem.with_name(f"{stem.name}-{n}"), n + 1
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"{run.path}: exists and is not a folder")
        if run.config.exists():
            raise UserError(f"{run.path}: already holds a run (use --resume {run.path} to continue it, or another --run-dir)")
        make_dir(run.path)
        with run._claimed():
            run.checkpoint_dir.mkdir()
            write_text(run.config, to_yaml(cfg))
            run.write_status("running", kind)
        return run

    @contextmanager
    def _claimed(self) -> Iterator[None]:
        """Hold the folder by exclusively creating a claim file, and refuse one that holds anything else: a user's
        own files are never overwritten, and of two runs started in one folder at once, one is refused."""
        claim = self.path / ".claiming"
        with unwritable_as_user_error(self.path, "a folder you can write"):
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise UserError(f"{self.path}: another run is being started in this folder; use another --run-dir") from None
        try:
            held = sorted(p.name for p in self.path.iterdir() if p != claim)
            if held:
                shown = ", ".join(held[:3]) + (", …" if len(held) > 3 else "")
                raise UserError(f"{self.path}: is not empty ({shown}); a new run needs a missing or empty folder, "
                                f"so nothing in it is overwritten (or --resume a run)")
            yield
        finally:
            claim.unlink(missing_ok=True)

    def write_status(self, status: str, kind: str = "train", reason: str | None = None) -> None:
        """run.json: provenance (hydranet version, git commit, torch, machine), written when the run is created so
        a result can be traced and repeated, and the status; `kind` tells a training from a pretraining run, and
        `reason` says why a failed run failed (any other status drops it)."""
        meta = json.loads(self.run_json.read_text()) if self.run_json.exists() else {
            "kind": kind, "hydranet": hydranet.__version__, "git_commit": _git_commit(), "torch": torch.__version__,
            "python": platform.python_version(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": torch.get_num_threads(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        meta["status"] = status
        meta.pop("reason", None)
        if reason is not None:
            meta["reason"] = reason
        write_json(self.run_json, meta)

    def write_data_info(self, info: dict[str, Any]) -> None:
        write_json(self.data, info, indent=None)  # read by programs, and large for tables with many categories

    def write_init_report(self, report: dict[str, Any]) -> None:
        write_json(self.init, report)

    def finish(self, summary: dict[str, Any]) -> None:
        """summary.json, then run.json marked finished: the last two writes of a complete run."""
        write_json(self.summary, summary)
        self.write_status("finished")

    # --- reading a run ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory; a folder that is not a run is a clear error."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path}: not a folder (expected a run directory)")
        if not run.config.exists():
            raise UserError(f"{run.path}: not a hydranet run directory (no config.yaml)")
        return run

    def read_config(self) -> Config:
        """The run's resolved config, validated as a new experiment would be."""
        return validate(yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}, stored=True)  # an older layout is upgraded

    def require(self, *paths: Path) -> None:
        """Refuse a run whose training never wrote these files, saying how to finish it."""
        for needed in paths:
            if not needed.exists():
                raise UserError(f"{self.path}: run has no {needed.name} (did training finish? `hydranet train --resume {self.path}`)")

    def read_data_info(self) -> dict[str, Any]:
        return json.loads(self.data.read_text())

    def read_summary(self) -> dict[str, Any]:
        """summary.json, or {} for a run that has not finished."""
        return json.loads(self.summary.read_text()) if self.summary.exists() else {}

    def weights(self) -> Path | None:
        """The weights another run starts from (`model.init_from`): the pretrained trunk, else the whole model."""
        return next((p for p in (self.trunk, self.model) if p.exists()), None)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
