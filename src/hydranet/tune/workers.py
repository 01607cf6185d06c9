"""Running a study's trials: in this process (`run_worker`), or in W worker processes that share the storage
(`run_processes`), and stopping those workers on Ctrl-C without leaving a trial marked running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydranet.tune.interrupts import Interrupts
from hydranet.tune.settings import Settings, make_pruner, make_sampler, sampler_seed
from hydranet.tune.storage import counted, load_optuna, make_storage
from hydranet.tune.trial import TrialRunner


def run_worker(settings: Settings, worker: int, n_trials: int, echo: Callable[[str], None] = print) -> None:
    """Run up to `n_trials` trials in this process; stop early when the study as a whole reaches its budget."""
    optuna = load_optuna()
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


def run_processes(settings: Settings, remaining: int) -> None:
    """Start the workers as fresh `python -m hydranet.tune.worker` processes (not forks: a forked torch can
    deadlock; not multiprocessing's spawn: it re-runs the caller's script) with near-equal shares of the trials.
    On Ctrl-C each worker records its running trial as failed and exits; the parent forwards the signal to a
    worker that did not get it (a `kill -INT` of the parent alone) and waits for all of them."""
    shares = [remaining // settings.workers + (i < remaining % settings.workers) for i in range(settings.workers)]
    env = {**os.environ, "PYTHONPATH": worker_import_path()}
    processes = []
    for i, n in enumerate(shares):
        if n:
            # -P: the working folder is not put first on the import path, so a `yaml.py` there never runs
            process = subprocess.Popen([sys.executable, "-P", "-m", "hydranet.tune.worker", str(i), str(n)],
                                       stdin=subprocess.PIPE, text=True, env=env)
            process.stdin.write(settings.to_json())
            process.stdin.close()
            processes.append(process)
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        stop_workers(processes)
        raise
    if any(code not in (0, 130) for code in codes):
        raise RuntimeError(f"tune: worker processes exited with codes {codes}")
    if 130 in codes:  # a worker was interrupted on its own (kill -INT): the study is unfinished, as after Ctrl-C
        raise KeyboardInterrupt


def worker_import_path() -> str:
    """The workers' PYTHONPATH: the folder holding this hydranet first (an installed package or a checkout's
    src/), then the caller's own PYTHONPATH entries made absolute. Empty entries are dropped: an empty entry (as in
    `PYTHONPATH=:/x`, a common slip of `export PYTHONPATH=$PYTHONPATH:/x`) means "the working folder", which -P
    keeps out on purpose."""
    package_root = Path(__file__).resolve().parents[2]
    entries = [package_root, *(Path(e).absolute() for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e)]
    return os.pathsep.join(dict.fromkeys(str(e) for e in entries))


def stop_workers(processes: list[subprocess.Popen], grace: float = 3.0) -> None:
    """Wait `grace` seconds for workers that got the terminal's Ctrl-C themselves, then SIGINT the rest."""
    deadline = time.time() + grace
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
