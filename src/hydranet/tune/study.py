"""`hydranet tune`: one Optuna study over an experiment's `search:` space. Each trial is an ordinary training
run in `<study dir>/trials/<number>`; W worker processes share one storage; re-running resumes the study.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hydranet.config import Config
from hydranet.tune.report import TuneResult, write_report
from hydranet.tune.settings import study_settings
from hydranet.tune.storage import counted, load_optuna, open_study
from hydranet.tune.workers import run_processes, run_worker


def tune(cfg: Config, trials: int = 20, workers: int = 1, storage: str | None = None, study: str | None = None,
         sampler: str = "tpe", pruner: str | None = None, timeout: float | None = None, objectives: str | None = None,
         dir: str | Path | None = None, echo: Callable[[str], None] = print) -> TuneResult:
    """Run (or resume) a study until it holds `trials` finished trials; write trials.csv, best.yaml and plots."""
    settings = study_settings(cfg, trials, workers, storage, study, sampler, pruner, timeout, objectives, dir)
    study_obj = open_study(settings, load_optuna())
    remaining = settings.budget - counted(study_obj.get_trials(deepcopy=False))
    echo(f"study {settings.study!r} in {settings.dir}: {settings.budget - max(remaining, 0)} of {settings.budget} trials done"
         + (f", running {remaining} on {min(workers, remaining)} worker(s)" if remaining > 0 else ""))
    try:
        if remaining > 0 and workers == 1:
            run_worker(settings, 0, remaining, echo)
        elif remaining > 0:
            run_processes(settings, remaining)
    except KeyboardInterrupt:
        write_report(study_obj, settings, echo)
        raise
    return write_report(study_obj, settings, echo)
