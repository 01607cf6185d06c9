"""Scoring a meta-learner on episodes: mean accuracy (or MSE) with a 95% confidence interval over episodes, as
the papers report, and `hydranet meta eval` over a finished run directory (Omniglot: plus Lake's 20 runs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from hydranet.errors import UserError
from hydranet.files import write_json
from hydranet.meta.episodes import ClassPool, Episodes
from hydranet.meta.learner import Params
from hydranet.meta.omniglot import RUN_WAYS, official_runs
from hydranet.meta.setup import MetaSetup, build
from hydranet.randomness import Purpose, stream
from hydranet.rundir import RunDir, check_fits


def mean_ci(scores: torch.Tensor) -> dict[str, float]:
    """Mean and the half-width of its normal 95% confidence interval, 1.96·s/√n."""
    n = scores.numel()
    spread = scores.std().item() if n > 1 else 0.0
    return {"mean": scores.mean().item(), "ci95": 1.96 * spread / math.sqrt(n), "episodes": n}


EVAL_CHUNK = 100  # episodes scored per batched call: few Python round trips, small enough for any memory


def score_episodes(setup: MetaSetup, params: Params, episodes: Episodes) -> dict[str, float]:
    """Per-episode scores of the method's adapted query predictions, EVAL_CHUNK episodes at a time."""
    chunk = EVAL_CHUNK
    scores = [setup.problem.score(setup.method.predict(params, part), part.query_y).detach()
              for part in (episodes.slice(i, i + chunk) for i in range(0, episodes.tasks, chunk))]
    return mean_ci(torch.cat(scores))


def score_sampled(setup: MetaSetup, params: Params, pool: ClassPool | None, count: int, ways: int, shots: int,
                  queries: int) -> dict[str, float]:
    """`count` episodes drawn by the run's seed (Purpose.META_EVAL: the same episodes every time)."""
    episodes = setup.sample(pool, count, ways, shots, queries, stream(setup.cfg.seed, Purpose.META_EVAL))
    return score_episodes(setup, params, episodes)


def read_parameters(run: RunDir, setup: MetaSetup) -> Params:
    """The meta-learned weights of a finished run, checked against the network its config builds."""
    run.require(run.model)
    tensors, _ = run.read_weights(run.model)
    check_fits(setup.initial_parameters(), tensors, run.model)
    return tensors


def evaluate_run(run_dir: str | Path, ways: int, shots: int, episodes: int) -> dict[str, Any]:
    """`hydranet meta eval`: adapt to `episodes` new N-way K-shot tasks of held-out classes (Omniglot: Lake's
    evaluation characters; sinusoid: new tasks) and report the mean score ± 95% CI; written to
    meta-eval-<N>way-<K>shot.json in the run."""
    run = RunDir.open(run_dir)
    setup = build(run.read_config())
    params = read_parameters(run, setup)
    pool = setup.test_pool()
    queries = setup.cfg.meta.queries if pool is None else min(pool.per_class - shots, setup.cfg.meta.queries)
    if pool is not None and shots >= pool.per_class:
        raise UserError(f"--shots: the evaluation classes have {pool.per_class} examples each, so at most "
                        f"{pool.per_class - 1} shots leave a query; got {shots}")
    if pool is not None and ways > pool.classes:
        raise UserError(f"--ways: the evaluation pool has {pool.classes} classes; got {ways}")
    if setup.fixed_ways not in (None, ways) and pool is not None:
        raise UserError(f"--ways: {setup.cfg.meta.method.name} was meta-trained with one head output per class of "
                        f"{setup.fixed_ways}-way episodes; evaluate it with --ways {setup.fixed_ways}, got {ways}")
    result: dict[str, Any] = {"metric": setup.problem.metric, "ways": ways, "shots": shots, "queries": queries,
                              **score_sampled(setup, params, pool, episodes, ways, shots, queries)}
    if setup.omniglot and setup.fixed_ways in (None, RUN_WAYS):
        result["lake_runs"] = score_episodes(setup, params, official_runs(pool))  # 20-way 1-shot, 20 runs
    name = f"meta-eval-{ways}way-{shots}shot.json" if pool is not None else f"meta-eval-{shots}shot.json"
    write_json(run.path / name, result)
    return result
