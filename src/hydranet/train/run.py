"""A training run and its directory: config.yaml, data.json, metrics.jsonl, model.safetensors, checkpoint/,
summary.json, plots/. Everything after training (evaluate, predict, …) starts from such a directory.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

import hydranet
from hydranet import registry
from hydranet.config import Config, to_yaml, validate
from hydranet.data import Dataset, build_dataset
from hydranet.errors import UserError
from hydranet.models import HydraNet, build_model
from hydranet.models.init import init_from, weights_file
from hydranet.models.weight_init import apply_weight_init
from hydranet.randomness import Purpose, seed_global
from hydranet.tasks import Task, TaskInfo
from hydranet.train.allocator import keep_freed_memory
from hydranet.train.callbacks import make_callbacks
from hydranet.files import read_tensors, write_json, write_tensors, write_text
from hydranet.train.checkpoint import load_state
from hydranet.train.freeze import make_freezer
from hydranet.train.trainer import Trainer

CHECKPOINT = Path("checkpoint") / "last.safetensors"


@dataclass
class Run:
    """A finished (or loaded) run: where it lives, what it was, what it scored, and the model."""

    dir: Path
    config: Config
    model: HydraNet
    tasks: dict[str, Task]
    info: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


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


def new_run_dir(cfg: Config, run_dir: str | Path | None) -> Path:
    """Create the run directory; refuse one that already holds a run, so nothing saved is overwritten."""
    if run_dir is None:
        stem = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = stem, 1
        while path.exists():  # two runs started in the same second
            path, n = stem.with_name(f"{stem.name}-{n}"), n + 1
    else:
        path = Path(run_dir)
    if (path / "config.yaml").exists():
        raise UserError(f"{path}: already holds a run (use --resume {path} to continue it, or another --run-dir)")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    (path / "checkpoint").mkdir(parents=True, exist_ok=True)
    return path


def build_model_for(cfg: Config, info: dict[str, Any], device: torch.device) -> tuple[HydraNet, dict[str, Task]]:
    """Tasks from the data info and a freshly initialized model, seeded so init is reproducible."""
    tasks = {name: Task(name, cfg.tasks[name], TaskInfo.from_dict(info["tasks"][name])) for name in cfg.tasks}
    return fresh_model(cfg, info, tasks, device), tasks


def fresh_model(cfg: Config, info: dict[str, Any], tasks: dict[str, Task], device: torch.device) -> HydraNet:
    """The seeded model for these tasks on `device`, channels_last for images when the config asks."""
    seed_global(cfg.seed, Purpose.INIT)
    model = apply_weight_init(build_model(cfg.model, tuple(info["input_shape"]), tasks), cfg.model.weight_init).to(device)
    if cfg.train.channels_last and len(info["input_shape"]) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


def fit(cfg: Config, run_dir: str | Path | None = None, progress: bool = True, callbacks: Sequence = ()) -> Run:
    """Train an experiment into a new run directory (created only once the data has loaded).

    `callbacks` are extra trainer callbacks (objects with any of the hooks), called before the metrics and the
    checkpoint of each epoch are written, so what they set (a `should_stop`, their state) is saved with it.
    """
    apply_process_settings(cfg)
    if cfg.model.init_from is not None:
        weights_file(cfg.model.init_from)  # a wrong path fails before the run directory exists
    data = build_dataset(cfg)
    _check_adversarial(cfg, data)
    path = new_run_dir(cfg, run_dir)
    write_text(path / "config.yaml", to_yaml(cfg))
    write_run_json(path, status="running")
    return _train(cfg, path, progress and cfg.train.progress, state=None, data=data, callbacks=callbacks)


def resume(run_dir: str | Path, progress: bool = True, callbacks: Sequence = ()) -> Run:
    """Continue a run that was interrupted (even by SIGKILL mid-epoch) from its last complete epoch."""
    path = Path(run_dir)
    cfg = read_config(path)
    apply_process_settings(cfg)
    checkpoint = path / CHECKPOINT
    state = load_checkpoint(checkpoint) if checkpoint.exists() else None
    return _train(cfg, path, progress and cfg.train.progress, state, build_dataset(cfg), callbacks)


def apply_process_settings(cfg: Config) -> None:
    """Process-wide settings of a run: intra-op threads and how freed CPU memory is kept (allocator.py)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.cpu_memory == "keep":
        keep_freed_memory()


def load_checkpoint(path: Path) -> dict:
    try:
        return load_state(path)
    except (UserError, KeyError, ValueError) as err:
        raise UserError(f"{path}: checkpoint is unreadable ({err}); start a new run") from None


def _train(cfg: Config, path: Path, progress: bool, state: dict | None, data: Dataset, callbacks: Sequence = ()) -> Run:
    device = resolve_device(cfg.train.device)
    write_json(path / "data.json", data.info, indent=None)  # machine-read, can be large
    model, tasks = build_model_for(cfg, data.info, device)
    if state is None:
        initialize(model, cfg, path)
    balancer = registry.get("balancer", cfg.mtl.balancer, "mtl.balancer")(cfg, tasks)
    perturbations, objectives, guard = _adversarial(cfg, tasks, data, path, device)
    trainer = Trainer(model, tasks, cfg, balancer, device=device, perturbations=perturbations, objectives=objectives,
                      callbacks=make_callbacks(cfg, path, progress, [*make_freezer(model, cfg), *guard, *callbacks]))
    if state is not None:
        trainer.load_state_dict(state)
    history = trainer.fit(data)
    write_tensors(path / "model.safetensors", model.state_dict())
    summary = _summary(cfg, trainer, data, model)
    write_json(path / "summary.json", summary)
    from hydranet.train.plots import plot_curves

    plot_curves(history, path / "plots" / "curves.png")
    write_run_json(path, status="finished")
    return Run(dir=path, config=cfg, model=model, tasks=tasks, info=data.info, summary=summary, history=history)


def initialize(model: torch.nn.Module, cfg: Config, path: Path) -> None:
    """Apply `model.init_from` to a fresh model: print the load report and keep it as init.json."""
    if cfg.model.init_from is None:
        return
    report = init_from(model, cfg.model.init_from, cfg.model.init_map, cfg.model.init_heads)
    print(report, file=sys.stderr)
    write_json(path / "init.json", report.to_dict())


def _check_adversarial(cfg: Config, data: Dataset) -> None:
    """Refuse an `adversarial:` section the data cannot serve (a table, no val for the guard), creating nothing."""
    from hydranet.robust.training import check_data

    check_data(cfg, data.info, len(data.index["val"]))


def _adversarial(cfg: Config, tasks: dict[str, Task], data: Dataset, path: Path, device: torch.device) -> tuple[list, list, list]:
    """Perturbations, objectives and the robustness guard of `adversarial:` (all empty for method none)."""
    from hydranet.robust.guard import RobustGuard
    from hydranet.robust.training import build_adversarial

    _check_adversarial(cfg, data)  # fit checked it already; a resumed run's data may have changed since
    perturbations, objectives = build_adversarial(cfg, tasks, data.info, device)
    adv = cfg.adversarial
    if adv.method == "none" or not adv.guard_every:
        return perturbations, objectives, []
    val = {k: v.to(device) for k, v in data.split("val").items()}  # the guard draws its examples from it
    space = (perturbations + objectives)[0].space
    return perturbations, objectives, [RobustGuard(adv, tasks, space, val, path / "checkpoint" / "best_robust.safetensors", cfg.seed)]


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


def write_run_json(path: Path, status: str, kind: str = "train") -> None:
    """Provenance: hydranet version, git commit, torch, machine, so a result can be traced and repeated;
    `kind` tells a training run from a pretraining run."""
    meta_path = path / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {
        "kind": kind, "hydranet": hydranet.__version__, "git_commit": _git_commit(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": torch.get_num_threads(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta["status"] = status
    write_json(meta_path, meta)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# --- reading a run directory -------------------------------------------------------------------


def read_config(path: Path) -> Config:
    """The resolved config of a run directory; a folder that is not a run is a clear error."""
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (expected a run directory)")
    config_file = path / "config.yaml"
    if not config_file.exists():
        raise UserError(f"{path}: not a hydranet run directory (no config.yaml)")
    return validate(yaml.safe_load(config_file.read_text()) or {})


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """A trained run: config, data info, tasks and the model with its final weights (eval mode)."""
    path = Path(run_dir)
    cfg = read_config(path)
    for needed in ("data.json", "model.safetensors"):
        if not (path / needed).exists():
            raise UserError(f"{path}: run has no {needed} (did training finish? `hydranet train --resume {path}`)")
    info = json.loads((path / "data.json").read_text())
    model, tasks = build_model_for(cfg, info, resolve_device(device))
    model.load_state_dict(read_tensors(path / "model.safetensors")[0])
    model.eval()
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").exists() else {}
    return Run(dir=path, config=cfg, model=model, tasks=tasks, info=info, summary=summary)
