"""Where a study lives: the journal file in the study directory, SQLite or PostgreSQL; creating the study, or
loading it to resume after checking it optimizes the same objectives; counting the trials that use up the budget.

The default storage is Optuna's JournalStorage on a file in the study directory: an append-only log whose appends
take a lock file and whose readers never wait, safe for concurrent processes, also on NFS where SQLite's fcntl()
locks are unreliable. `--storage postgresql://…` lets workers on many machines join.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hydranet.errors import UserError
from hydranet.files import make_dir
from hydranet.tune.settings import Settings

JOURNAL = "journal.log"


def load_optuna():
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


def make_storage(settings: Settings, optuna: Any) -> Any:
    """The journal file in the study directory, or a database (with heartbeats, so the trial of a worker
    that died on another machine is marked failed rather than left running forever)."""
    if settings.storage is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        make_dir(settings.dir)
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


def open_study(settings: Settings, optuna: Any) -> Any:
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
