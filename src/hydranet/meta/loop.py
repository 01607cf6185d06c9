"""`hydranet meta train`: the outer loop of meta-learning over a normal run directory (config.yaml, run.json,
metrics.jsonl, checkpoint/last.safetensors, model.safetensors, summary.json), beside the trainer, not inside it.

Each meta-iteration draws its tasks from its own stream (Purpose.EPISODES, counter: the iteration), so a run
resumed after SIGKILL from its last checkpoint draws exactly the tasks the uninterrupted run would have drawn.
Under torchrun every rank draws the same meta-batch from that stream and adapts to its contiguous share of the
tasks; the outer gradients are averaged over the ranks, so W ranks take the outer steps of one process.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hydranet.config import Config
from hydranet.distributed.context import is_main, join, membership, rank, synchronize, world_size
from hydranet.distributed.reduce import average_gradients, averaged, from_rank0
from hydranet.errors import UserError
from hydranet.files import write_tensors, write_text
from hydranet.meta.episodes import Episodes
from hydranet.meta.evaluate import score_sampled
from hydranet.meta.learner import Params
from hydranet.meta.setup import MetaSetup, build
from hydranet.randomness import Purpose, stream
from hydranet.rundir import RunDir, RunFinished, RunInterrupted, check_fits
from hydranet.train.checkpoint import save_state
from hydranet.train.lifecycle import apply_process_settings, load_checkpoint, scratch

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
    """A new run: built (data, network, method) before its folder is claimed, so a mistake leaves nothing behind.
    Under torchrun rank 0 alone claims and writes the folder."""
    apply_process_settings(cfg)
    with _ranks(cfg):
        run = RunDir.plan(cfg, run_dir) if is_main() else scratch()
        setup = build(cfg)
        params = setup.initial_parameters()
        optimizer = _optimizer(cfg, params)
        if is_main():
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
    with _ranks(cfg):
        setup = build(cfg)
        if meta.get("data_sha256") != setup.fingerprint():
            raise UserError(f"{run.path}: was started on different data; resuming would mix two data sets: "
                            f"start a new run")
        params = setup.initial_parameters()
        optimizer = _optimizer(cfg, params)
        state = _restore(run, params, optimizer)
        if is_main():
            run.write_status("running")
        return _loop(run, setup, params, optimizer, state, progress)


def _restore(run: RunDir, params: Params, optimizer: torch.optim.Optimizer) -> Progress:
    """Parameters, optimizer and progress from the last checkpoint (every rank reads rank 0's); none yet: the start."""
    if not run.last.exists():
        return Progress()
    saved = load_checkpoint(run.last, run)
    check_fits({k: v.detach() for k, v in params.items()}, saved["params"], run.last)
    with torch.no_grad():
        for name, value in params.items():
            value.copy_(saved["params"][name])
    optimizer.load_state_dict(saved["optimizer"])
    return Progress(saved["iteration"], saved["seconds"], saved["history"])


@contextmanager
def _ranks(cfg: Config):
    """Under torchrun: join the process group (gloo: meta-learning runs on the CPU), refuse a meta-batch the ranks
    cannot share evenly before anything is written, and leave the group when the run ends, however it ends. In one
    process: nothing."""
    join(torch.device("cpu"), cfg.train.distributed_timeout)
    with membership():
        world = world_size()
        if cfg.meta.meta_batch % world:
            raise UserError(f"meta.meta_batch: {cfg.meta.meta_batch} tasks are the global meta-batch and must divide "
                            f"evenly among the {world} processes (a multiple of {world})")
        yield
        synchronize("the end of meta-training")  # no rank leaves while another still sends


def own_tasks(episodes: Episodes) -> Episodes:
    """This rank's contiguous share of a meta-batch's tasks (all of them in one process). Every rank draws the whole
    meta-batch from the one seeded stream and keeps its share, so W ranks adapt to exactly the tasks of one process,
    and every method's outer gradient, a mean over equally sized tasks, is the mean of the ranks' gradients."""
    share = episodes.tasks // world_size()
    return episodes.slice(rank() * share, (rank() + 1) * share)


def _optimizer(cfg: Config, params: Params) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if cfg.meta.outer_optimizer == "adam" else torch.optim.SGD
    return kind(list(params.values()), lr=cfg.meta.outer_lr)


def _loop(run: RunDir, setup: MetaSetup, params: Params, optimizer: torch.optim.Optimizer, state: Progress,
          progress: bool) -> MetaRun:
    """Meta-iterations until `iterations` or the time budget; Ctrl-C marks the run interrupted."""
    try:
        _iterate(run, setup, params, optimizer, state, progress)
    except KeyboardInterrupt:
        if is_main():
            run.write_status("interrupted")
        raise RunInterrupted(run.path, KIND) from None
    summary = {"method": setup.cfg.meta.method.model_dump(), "iterations": state.iteration,
               "seconds": round(state.seconds, 1), **{k: v for k, v in state.history[-1].items() if k.startswith("val")}}
    if is_main():
        write_tensors(run.model, {name: value.detach() for name, value in params.items()}, run.stamp())
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
        losses.append(_step(setup, params, optimizer, state.iteration))
        state.iteration += 1
        state.seconds += clock() - started
        if meta.time_budget is not None:  # every rank stops at the iteration rank 0's clock says
            state.seconds = from_rank0(state.seconds, "the time budget's seconds")
        if state.iteration % meta.eval_every == 0 or state.iteration == meta.iterations:
            _record(run, setup, params, optimizer, state, losses, progress)
            losses = []
    if losses or not state.history:  # stopped by the time budget between two records
        _record(run, setup, params, optimizer, state, losses, progress)


def _step(setup: MetaSetup, params: Params, optimizer: torch.optim.Optimizer, iteration: int) -> float:
    """One outer step on meta-iteration `iteration`'s tasks: this rank's share of them, the outer gradient averaged
    over the ranks in one flat all-reduce (Reptile's mean task delta alike); returns this rank's meta-loss."""
    meta = setup.cfg.meta
    episodes = setup.sample(setup.train, meta.meta_batch, meta.train_ways or meta.ways, meta.shots, meta.queries,
                            stream(setup.cfg.seed, Purpose.EPISODES, iteration))
    loss, grads = setup.method.meta_gradient({k: v.detach() for k, v in params.items()}, own_tasks(episodes))
    for name, value in params.items():
        value.grad = grads[name]
    average_gradients(params.values())
    optimizer.step()
    return loss.item()


def _mean_loss(losses: list[float]) -> float | None:
    """The mean meta-loss since the last record, over every rank's tasks (each rank's loss is its share's mean)."""
    if not losses:
        return None
    return float(averaged(torch.tensor(sum(losses), dtype=torch.float64), "the training losses")) / len(losses)


def _record(run: RunDir, setup: MetaSetup, params: Params, optimizer: torch.optim.Optimizer, state: Progress,
            losses: list[float], progress: bool) -> None:
    """Meta-validate (every rank alike, on the same episodes), append a metrics.jsonl line and checkpoint (rank 0): a
    resume continues from here. The training loss is the mean over every rank's tasks."""
    meta = setup.cfg.meta
    weights = {name: value.detach() for name, value in params.items()}
    val = score_sampled(setup, weights, setup.val, meta.eval_episodes, meta.ways, meta.shots, meta.queries)
    record = {"iteration": state.iteration, "seconds": round(state.seconds, 2), "train/loss": _mean_loss(losses),
              f"val/{setup.problem.metric}": val["mean"], f"val/{setup.problem.metric}_ci95": val["ci95"]}
    state.history.append(record)
    if not is_main():
        return
    write_text(run.metrics, "".join(json.dumps(r) + "\n" for r in state.history))
    save_state(run.last, {"params": weights, "optimizer": optimizer.state_dict(), "iteration": state.iteration,
                          "seconds": state.seconds, "history": state.history}, run.stamp())
    if progress:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), file=sys.stderr)
