"""`serve_run`: `hydranet serve` — uvicorn on the app of a run, one process or `--workers N` processes sharing one
listening socket, stopped gracefully by SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType

import torch
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors.multiprocess import Multiprocess

from hydranet.files import make_dir
from hydranet.serve.app import create_app, refuse_unservable
from hydranet.serve.backend import BACKENDS
from hydranet.serve.metrics import MULTIPROC_ENV, metrics_folder
from hydranet.serve.settings import ServeSettings
from hydranet.train import load_run

GRACE_S = 30  # how long in-flight requests may take to finish after SIGTERM before they are cancelled
READY_S = 600  # how long a worker may take to load the run before the server gives up on it
# uvicorn's supervisor kills and restarts a worker that does not answer its ping within this many seconds; its
# default, 5 s, killed busy workers (and their requests) on two cores shared with other jobs.
HEALTHCHECK_S = 60


class _Server(uvicorn.Server):
    """uvicorn's server, printing one line once it listens (scripts wait for it; uvicorn's own log is off), with the
    port it got (`--port 0` picks a free one)."""

    def __init__(self, config: uvicorn.Config, run_dir: str | Path):
        super().__init__(config)
        self.run_dir = run_dir

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"serving {self.run_dir} on http://{host}:{port}", flush=True)


def serve_run(run_dir: str | Path, settings: ServeSettings) -> None:
    """Load the run, build the app and serve until SIGTERM/SIGINT. On the signal uvicorn stops accepting, lets
    in-flight requests finish (up to GRACE_S), then the batcher answers what it still holds; exit status 0."""
    if settings.workers > 1:
        return serve_workers(run_dir, settings)
    app = create_app(load_run(run_dir), settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=GRACE_S)
    server = _Server(config, run_dir)
    # uvicorn re-raises the signal it caught once it has shut down; with Python's default SIGTERM action that would
    # kill the process (status -15) after a clean shutdown, so a handled SIGTERM is a normal exit.
    signal.signal(signal.SIGTERM, _exit_normally)
    server.run()


def serve_workers(run_dir: str | Path, settings: ServeSettings) -> None:
    """`--workers N`: this process binds the socket and starts N fresh worker processes (uvicorn's supervisor,
    which restarts one that dies); each accepts on the socket and runs the whole app with its own batcher. They
    pool their metrics and drift windows in a private temporary folder, removed when the server stops. SIGTERM
    reaches every worker, which finishes its in-flight requests as one server does.

    The run is checked here first (a user error ends the command before any worker starts) and an ONNX export
    made here once, so the workers do not race to write it."""
    run = load_run(run_dir)
    refuse_unservable(run)
    BACKENDS[settings.backend].prepare(run)
    shared = Path(tempfile.mkdtemp(prefix="hydranet-serve-"))
    try:
        make_dir(metrics_folder(shared))
        os.environ[MULTIPROC_ENV] = str(metrics_folder(shared))  # inherited by the workers (spawned, not forked)
        config = uvicorn.Config(functools.partial(worker_app, str(run_dir), settings, shared), factory=True,
                                host=settings.host, port=settings.port, workers=settings.workers,
                                log_level="warning", access_log=False, timeout_graceful_shutdown=GRACE_S,
                                timeout_worker_healthcheck=HEALTHCHECK_S)
        socket = config.bind_socket()
        _Workers(config, [socket], run_dir).run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def worker_app(run_dir: str, settings: ServeSettings, shared: Path) -> FastAPI:
    """The app of one worker (called in the worker), on its share of the cores."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    return create_app(load_run(run_dir), settings, shared)


class _Workers(Multiprocess):
    """uvicorn's supervisor of worker processes, printing the line `_Server` prints once every worker listens."""

    def __init__(self, config: uvicorn.Config, sockets: list, run_dir: str | Path):
        super().__init__(config, sockets)
        self.run_dir = run_dir

    def init_processes(self) -> None:
        super().init_processes()
        if all(process.wait_until_ready(READY_S, self.should_exit) for process in self.processes):
            host, port = self.sockets[0].getsockname()[:2]
            print(f"serving {self.run_dir} on http://{host}:{port} ({len(self.processes)} workers)", flush=True)


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
