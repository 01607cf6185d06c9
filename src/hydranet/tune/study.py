"""`hydranet tune`: one Optuna study over an experiment's `search:` space. Each trial is an ordinary training
run in `<study dir>/trials/<number>`; W worker processes share one storage; re-running resumes the study.

The default storage is Optuna's JournalStorage on a file in the study directory: an append-only log whose appends
take a lock file and whose readers never wait, safe for concurrent processes, also on NFS where SQLite's fcntl()
locks are unreliable. `--storage postgresql://…` lets workers on many machines join.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydranet.config import Config, SearchParam
from hydranet.errors import UserError
from hydranet.files import write_text
from hydranet.randomness import Purpose, purpose_seed
from hydranet.train import fit
from hydranet.train.callbacks import monitored_value
from hydranet.tune.interrupts import Interrupts
from hydranet.tune.objectives import (
    Objective,
    model_latency_ms,
    parse_objectives,
    summary_value,
)
from hydranet.tune.report import TuneResult, write_report
from hydranet.tune.space import grid, plain_experiment, suggest, trial_config

SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "asha", "hyperband", "none")
JOURNAL = "journal.log"


@dataclass
class Settings:
    """Everything a worker needs to join the study (plain values, so it crosses into a worker process as JSON)."""

    base: dict[str, Any]  # the experiment without its search section
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


def tune(cfg: Config, trials: int = 20, workers: int = 1, storage: str | None = None, study: str | None = None,
         sampler: str = "tpe", pruner: str | None = None, timeout: float | None = None, objectives: str | None = None,
         dir: str | Path | None = None, echo: Callable[[str], None] = print) -> TuneResult:
    """Run (or resume) a study until it holds `trials` finished trials; write trials.csv, best.yaml and plots."""
    settings = _settings(cfg, trials, workers, storage, study, sampler, pruner, timeout, objectives, dir)
    optuna = _optuna()
    study_obj = _open_study(settings, optuna)
    remaining = settings.budget - counted(study_obj.get_trials(deepcopy=False))
    echo(f"study {settings.study!r} in {settings.dir}: {settings.budget - max(remaining, 0)} of {settings.budget} trials done"
         + (f", running {remaining} on {min(workers, remaining)} worker(s)" if remaining > 0 else ""))
    try:
        if remaining > 0 and workers == 1:
            run_worker(settings, 0, remaining, echo)
        elif remaining > 0:
            _run_processes(settings, remaining)
    except KeyboardInterrupt:
        write_report(study_obj, settings, echo)
        raise
    return write_report(study_obj, settings, echo)


def _settings(cfg: Config, trials: int, workers: int, storage: str | None, study: str | None, sampler: str,
              pruner: str | None, timeout: float | None, objectives: str | None, dir: str | Path | None) -> Settings:
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
    return Settings(base=plain_experiment(cfg), space={k: v.model_dump() for k, v in cfg.search.items()}, objectives=goals,
                    study=name, dir=str(Path(dir) if dir is not None else Path("studies") / name), storage=storage,
                    sampler=sampler, pruner=pruner, budget=trials, workers=workers,
                    deadline=None if timeout is None else time.time() + timeout)


def _optuna():
    try:
        import optuna  # lazy: an optional dependency
    except ImportError:
        raise UserError("tune: needs the optuna package (pip install 'hydranet[tune]')") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trial lines come from here, failures name their error
    return optuna


def counted(trials: list) -> int:
    """Finished trials that use up the budget: complete, pruned and failed, but not those stopped by Ctrl-C."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(t.state in done and not t.user_attrs.get("interrupted") for t in trials)


# --- storage and study ----------------------------------------------------------------------


def make_storage(settings: Settings, optuna: Any) -> Any:
    """The journal file in the study directory, or a database (with heartbeats, so the trial of a worker
    that died on another machine is marked failed rather than left running forever)."""
    if settings.storage is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(settings.dir).mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(Path(settings.dir) / JOURNAL)))
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(settings.storage, heartbeat_interval=30, grace_period=120)
    except (SQLAlchemyError, ValueError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "; pip install 'hydranet[postgres]' for PostgreSQL" if "import" in first.lower() else ""
        raise UserError(f"--storage: cannot open {settings.storage!r} ({first}{hint})") from None


def _open_study(settings: Settings, optuna: Any) -> Any:
    """Create the study, or load it when it exists (the resume path) after checking it optimizes the same things."""
    path = Path(settings.dir)
    storage = make_storage(settings, optuna)
    names = [o.name for o in settings.objectives]
    if settings.study in optuna.get_all_study_names(storage):
        old = optuna.load_study(study_name=settings.study, storage=storage)
        wanted = [o.direction for o in settings.objectives]
        have = [d.name.lower() for d in old.directions]
        if (old.metric_names or names) != names or have != wanted:
            raise UserError(f"--objectives: study {settings.study!r} optimizes {_goals(old.metric_names, have)}, not "
                            f"{_goals(names, wanted)}; use the same objectives or another --study")
        return old
    if (path / "trials").exists() and any((path / "trials").iterdir()):
        raise UserError(f"{path}: holds the trials of another study; choose another --dir (or --study to resume it)")
    study = optuna.create_study(study_name=settings.study, storage=storage, load_if_exists=True,  # another machine may race us
                                directions=[o.direction for o in settings.objectives])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)  # shown by optuna-dashboard and kept for the resume check above
    return study


def _goals(names: list[str] | None, directions: list[str]) -> str:
    return ", ".join(f"{n}:{d[:3]}" for n, d in zip(names or ["?"] * len(directions), directions))


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


# --- workers --------------------------------------------------------------------------------


def run_worker(settings: Settings, worker: int, n_trials: int, echo: Callable[[str], None] = print) -> None:
    """Run up to `n_trials` trials in this process; stop early when the study as a whole reaches its budget."""
    optuna = _optuna()
    study = optuna.load_study(study_name=settings.study, storage=make_storage(settings, optuna))
    study.sampler = make_sampler(settings, sampler_seed(settings, worker, len(study.trials)), optuna)
    study.pruner = make_pruner(settings, optuna)
    timeout = None if settings.deadline is None else settings.deadline - time.time()
    if timeout is not None and timeout <= 0:
        return

    def stop_at_budget(study: Any, trial: Any) -> None:
        if counted(study.get_trials(deepcopy=False)) >= settings.budget:
            study.stop()

    interrupts = Interrupts()
    with interrupts.installed():
        study.optimize(TrialRunner(settings, echo, optuna, interrupts), n_trials=n_trials, timeout=timeout,
                       catch=(Exception,), callbacks=[stop_at_budget, interrupts.stop_study])
    if interrupts.pending:
        raise KeyboardInterrupt


def _run_processes(settings: Settings, remaining: int) -> None:
    """Start the workers as fresh `python -m hydranet.tune.worker` processes (not forks: a forked torch can
    deadlock; not multiprocessing's spawn: it re-runs the caller's script) with near-equal shares of the trials.
    On Ctrl-C each worker records its running trial as failed and exits; the parent forwards the signal to a
    worker that did not get it (a `kill -INT` of the parent alone) and waits for all of them."""
    shares = [remaining // settings.workers + (i < remaining % settings.workers) for i in range(settings.workers)]
    package_root = str(Path(__file__).resolve().parents[2])  # so the workers import this hydranet
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    processes = []
    for i, n in enumerate(shares):
        if n:
            process = subprocess.Popen([sys.executable, "-m", "hydranet.tune.worker", str(i), str(n)],
                                       stdin=subprocess.PIPE, text=True, env=env)
            process.stdin.write(settings.to_json())
            process.stdin.close()
            processes.append(process)
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        _stop(processes)
        raise
    if any(code not in (0, 130) for code in codes):
        raise RuntimeError(f"tune: worker processes exited with codes {codes}")
    if 130 in codes:  # a worker was interrupted on its own (kill -INT): the study is unfinished, as after Ctrl-C
        raise KeyboardInterrupt


def _stop(processes: list[subprocess.Popen], grace: float = 3.0) -> None:
    deadline = time.time() + grace  # workers that got the terminal's Ctrl-C themselves stop within this
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.time()))
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


# --- one trial ------------------------------------------------------------------------------


class PruningReporter:
    """Trainer callback: report the objective's val metric to the trial each epoch, and stop training
    (as early stopping does, so the epoch's metrics and checkpoint are still written) when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_epoch_end(self, trainer: Any, record: dict) -> None:
        value = monitored_value(record, self.metric)
        if value is None:
            return
        self.trial.report(value, record["epoch"])
        if self.trial.should_prune():
            self.pruned_at = record["epoch"]
            trainer.should_stop = True


class TrialRunner:
    """The objective Optuna calls: sample a config, train it into trials/<number>, return the objectives."""

    def __init__(self, settings: Settings, echo: Callable[[str], None], optuna: Any, interrupts: Interrupts):
        self.settings, self.echo, self.optuna, self.interrupts = settings, echo, optuna, interrupts
        self.search = settings.search
        self.prune = settings.pruner != "none"

    def __call__(self, trial: Any) -> float | list[float]:
        run_dir = Path(self.settings.dir) / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        try:
            cfg = trial_config(self.settings.base, suggest(trial, self.search))
            trial.set_user_attr("config", cfg.model_dump(mode="json"))
            reporter = PruningReporter(trial, self.settings.objectives[0].name) if self.prune else None
            with self.interrupts.immediate():  # Ctrl-C stops the training at once
                run = fit(cfg, run_dir, progress=False, callbacks=[reporter] if reporter else [])
                values = self._measure(run)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as err:
            self._failed(trial, run_dir, err)
            raise
        trial.set_user_attr("epochs", run.summary["epochs"])
        if reporter is not None and reporter.pruned_at is not None:
            self.echo(f"trial {trial.number} pruned at epoch {reporter.pruned_at}  {_params(trial.params)}")
            raise self.optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at}")
        shown = "  ".join(f"{o.name} {v:.4g}" for o, v in zip(self.settings.objectives, values))
        self.echo(f"trial {trial.number} {shown}  ({run.summary['epochs']} epochs)  {_params(trial.params)}")
        return values[0] if len(values) == 1 else values

    def _measure(self, run: Any) -> list[float]:
        values = []
        for objective in self.settings.objectives:
            if objective.name == "params":
                values.append(float(run.summary["params"]))
            elif objective.name == "latency":
                values.append(model_latency_ms(run.model, run.info.input_shape, run.config.train.precision))
            else:
                value = summary_value(run.summary, objective.name)
                if value is None:
                    raise UserError(f"--objectives: {objective.name} needs a val split (data.split.val is 0)")
                values.append(float(value))
        return values

    def _failed(self, trial: Any, run_dir: Path, err: Exception) -> None:
        """Keep why the trial failed: one line in the study (and on screen), the traceback in its run directory."""
        trial.set_user_attr("error", f"{type(err).__name__}: {err}")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "error.txt", "".join(traceback.format_exception(err)))
        self.echo(f"trial {trial.number} failed: {err}  {_params(trial.params)}")


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
