"""What a study is (`Settings`: the experiment, its search space, objectives, budget, sampler and pruner), built
from a config and the `hydranet tune` options, every option checked before anything is created or trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydranet.config import Config, SearchParam
from hydranet.errors import UserError
from hydranet.randomness import Purpose, purpose_seed
from hydranet.tune.objectives import Objective, parse_objectives
from hydranet.tune.space import grid

SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "asha", "hyperband", "none")


@dataclass
class Settings:
    """Everything a worker needs to join the study (plain values, so it crosses into a worker process as JSON)."""

    base: dict[str, Any]  # the experiment without its search section (`Config.as_experiment`)
    space: dict[str, dict[str, Any]]
    objectives: list[Objective]
    study: str
    dir: str
    storage: str | None  # a database URL; None: the journal file in `dir`
    sampler: str
    pruner: str
    budget: int  # trials the study should end with (finished ones; Ctrl-C'd trials do not count)
    deadline: float | None = None  # time.time() after which no new trial starts
    workers: int = 1

    @property
    def search(self) -> dict[str, SearchParam]:
        return {k: SearchParam.model_validate(v) for k, v in self.space.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        return cls(**{**data, "objectives": [Objective(**o) for o in data["objectives"]]})


def study_settings(cfg: Config, trials: int, workers: int, storage: str | None, study: str | None, sampler: str,
                   pruner: str | None, timeout: float | None, objectives: str | None,
                   dir: str | Path | None) -> Settings:
    """Check every option before anything is created or trained."""
    if not cfg.search:
        raise UserError("search: the experiment has nothing to search; add a `search:` section (see docs/tuning.md)")
    if trials < 1:
        raise UserError(f"--trials: expected at least 1, got {trials}")
    if workers < 1:
        raise UserError(f"--workers: expected at least 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout: expected seconds > 0, got {timeout}")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    goals = parse_objectives(objectives, cfg)
    if pruner is None:
        pruner = "median" if len(goals) == 1 and goals[0].per_epoch else "none"
    if pruner not in PRUNERS:
        raise UserError(f"--pruner: unknown pruner {pruner!r} (known: {', '.join(PRUNERS)})")
    if pruner != "none" and not (len(goals) == 1 and goals[0].per_epoch):
        raise UserError(f"--pruner {pruner}: pruning needs one objective that is a val metric (Optuna prunes single-objective studies only); use --pruner none")
    if sampler == "cmaes" and len(goals) > 1:
        raise UserError("--sampler cmaes: CMA-ES optimizes one objective; use tpe or random for several")
    if sampler == "grid":
        grid(cfg.search)  # refuses a continuous float now rather than in every worker
    name = study or cfg.name
    base = {**cfg.as_experiment(), "search": {}}  # a table default's trunk and encoder chosen per trial, as train does
    return Settings(base=base, space={k: v.model_dump() for k, v in cfg.search.items()}, objectives=goals,
                    study=name, dir=str(Path(dir) if dir is not None else Path("studies") / name), storage=storage,
                    sampler=sampler, pruner=pruner, budget=trials, workers=workers,
                    deadline=None if timeout is None else time.time() + timeout)


def make_sampler(settings: Settings, seed: int | None, optuna: Any) -> Any:
    samplers = optuna.samplers
    if settings.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if settings.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if settings.sampler == "grid":
        return samplers.GridSampler(grid(settings.search), seed=seed)
    return samplers.TPESampler(seed=seed)


def make_pruner(settings: Settings, optuna: Any) -> Any:
    pruners = optuna.pruners
    if settings.pruner == "median":
        return pruners.MedianPruner()
    if settings.pruner == "asha":
        return pruners.SuccessiveHalvingPruner()
    if settings.pruner == "hyperband":
        return pruners.HyperbandPruner(min_resource=1, max_resource=settings.base["train"]["epochs"])
    return pruners.NopPruner()


def sampler_seed(settings: Settings, worker: int, existing: int) -> int | None:
    """A seed from the experiment's seed, the worker and the trials already in the study: a one-worker study is
    reproducible, while workers and resumed sessions do not repeat each other's draws. With a shared database,
    workers on other machines cannot be told apart, so there the sampler draws from the OS."""
    if settings.storage is not None:
        return None
    return purpose_seed(settings.base["seed"], Purpose.TUNE_SAMPLER, worker, existing)
