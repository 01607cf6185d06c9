"""`hydranet meta train`: the outer loop of meta-learning over a normal run directory (config.yaml, run.json,
metrics.jsonl, checkpoint/last.safetensors, model.safetensors, summary.json), beside the trainer, not inside it.

Each meta-iteration draws its tasks from its own stream (Purpose.EPISODES, counter: the iteration), so a run
resumed after SIGKILL from its last checkpoint draws exactly the tasks the uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hydranet.config import Config
from hydranet.errors import UserError
from hydranet.files import write_tensors, write_text
from hydranet.meta.evaluate import score_sampled
from hydranet.meta.learner import Params
from hydranet.meta.setup import MetaSetup, build
from hydranet.randomness import Purpose, stream
from hydranet.rundir import RunDir, RunFinished, RunInterrupted, check_fits
from hydranet.train.checkpoint import save_state
from hydranet.train.lifecycle import apply_process_settings, load_checkpoint

KIND = "meta train"  # run.json's kind: the command that continues the run


@dataclass
class MetaRun:
    """A finished meta-training run: its folder and summary (what the CLI shows)."""

    dir: Path
    summary: dict[str, Any]


@dataclass
class Progress:
    """Where a run stands: what the checkpoint holds besides parameters and optimizer state."""

    iteration: int = 0
    seconds: float = 0.0  # meta-training time so far on meta.budget_clock, meta-validation excluded (what time_budget limits)
    history: list[dict[str, Any]] = field(default_factory=list)


def train(cfg: Config, run_dir: str | Path | None = None, progress: bool = True) -> MetaRun:
    """A new run: built (data, network, method) before its folder is claimed, so a mistake leaves nothing behind."""
    apply_process_settings(cfg)
    run = RunDir.plan(cfg, run_dir)
    setup = build(cfg)
    params = setup.initial_parameters()
    optimizer = _optimizer(cfg, params)
    run.claim(cfg, KIND, setup.fingerprint())
    if setup.info is not None:  # what `meta adapt` turns a user's files into model inputs with
        run.write_data_info(setup.info.to_dict())
    return _loop(run, setup, params, optimizer, Progress(), progress)


def resume(run_dir: str | Path, progress: bool = True) -> MetaRun:
    """Continue an interrupted run (even by SIGKILL) from its last checkpoint, with its own config."""
    run = RunDir.open(run_dir)
    meta = run.read_run_json()
    if meta.get("kind") != KIND:
        raise UserError(f"{run.path}: is a {meta.get('kind')} run, not a meta-learning run (resume it with its own command)")
    if meta.get("status") == "finished":
        raise RunFinished(run.path, run.read_summary(required=True))
    cfg = run.read_config()
    apply_process_settings(cfg)
    setup = build(cfg)
    if meta.get("data_sha256") != setup.fingerprint():
        raise UserError(f"{run.path}: was started on different data; resuming would mix two data sets: start a new run")
    params = setup.initial_parameters()
    optimizer = _optimizer(cfg, params)
    state = Progress()
    if run.last.exists():
        saved = load_checkpoint(run.last, run)
        check_fits({k: v.detach() for k, v in params.items()}, saved["params"], run.last)
        with torch.no_grad():
            for name, value in params.items():
                value.copy_(saved["params"][name])
        optimizer.load_state_dict(saved["optimizer"])
        state = Progress(saved["iteration"], saved["seconds"], saved["history"])
    run.write_status("running")
    return _loop(run, setup, params, optimizer, state, progress)


def _optimizer(cfg: Config, params: Params) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if cfg.meta.outer_optimizer == "adam" else torch.optim.SGD
    return kind(list(params.values()), lr=cfg.meta.outer_lr)


def _loop(run: RunDir, setup: MetaSetup, params: Params, optimizer: torch.optim.Optimizer, state: Progress,
          progress: bool) -> MetaRun:
    """Meta-iterations until `iterations` or the time budget; Ctrl-C marks the run interrupted."""
    try:
        _iterate(run, setup, params, optimizer, state, progress)
    except KeyboardInterrupt:
        run.write_status("interrupted")
        raise RunInterrupted(run.path, KIND) from None
    weights = {name: value.detach() for name, value in params.items()}
    write_tensors(run.model, weights, run.stamp())
    summary = {"method": setup.cfg.meta.method.model_dump(), "iterations": state.iteration,
               "seconds": round(state.seconds, 1), **{k: v for k, v in state.history[-1].items() if k.startswith("val")}}
    run.finish(summary)
    return MetaRun(run.path, summary)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # meta.budget_clock → the clock it reads


def _iterate(run: RunDir, setup: MetaSetup, params: Params, optimizer: torch.optim.Optimizer, state: Progress,
             progress: bool) -> None:
    meta = setup.cfg.meta
    clock = CLOCKS[meta.budget_clock]
    losses: list[float] = []
    while state.iteration < meta.iterations:
        if meta.time_budget is not None and state.seconds >= meta.time_budget:
            break
        started = clock()
        episodes = setup.sample(setup.train, meta.meta_batch, meta.train_ways or meta.ways, meta.shots, meta.queries,
                                stream(setup.cfg.seed, Purpose.EPISODES, state.iteration))
        loss, grads = setup.method.meta_gradient({k: v.detach() for k, v in params.items()}, episodes)
        for name, value in params.items():
            value.grad = grads[name]
        optimizer.step()
        losses.append(loss.item())
        state.iteration += 1
        state.seconds += clock() - started
        if state.iteration % meta.eval_every == 0 or state.iteration == meta.iterations:
            _record(run, setup, params, optimizer, state, losses, progress)
            losses = []
    if losses or not state.history:  # stopped by the time budget between two records
        _record(run, setup, params, optimizer, state, losses, progress)


def _record(run: RunDir, setup: MetaSetup, params: Params, optimizer: torch.optim.Optimizer, state: Progress,
            losses: list[float], progress: bool) -> None:
    """Meta-validate, append a metrics.jsonl line and checkpoint: a resume continues from here."""
    meta = setup.cfg.meta
    weights = {name: value.detach() for name, value in params.items()}
    val = score_sampled(setup, weights, setup.val, meta.eval_episodes, meta.ways, meta.shots, meta.queries)
    record = {"iteration": state.iteration, "seconds": round(state.seconds, 2),
              "train/loss": sum(losses) / len(losses) if losses else None,
              f"val/{setup.problem.metric}": val["mean"], f"val/{setup.problem.metric}_ci95": val["ci95"]}
    state.history.append(record)
    write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in state.history))
    save_state(run.last, {"params": weights, "optimizer": optimizer.state_dict(), "iteration": state.iteration,
                          "seconds": state.seconds, "history": state.history}, run.stamp())
    if progress:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), file=sys.stderr)
