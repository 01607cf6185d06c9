"""`serve_run`: `hydranet serve` — one uvicorn process on the app of a run, stopped gracefully by SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import uvicorn

from hydranet.serve.app import create_app
from hydranet.serve.settings import ServeSettings
from hydranet.train import load_run

GRACE_S = 30  # how long in-flight requests may take to finish after SIGTERM before they are cancelled


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
    app = create_app(load_run(run_dir), settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            timeout_graceful_shutdown=GRACE_S)
    server = _Server(config, run_dir)
    # uvicorn re-raises the signal it caught once it has shut down; with Python's default SIGTERM action that would
    # kill the process (status -15) after a clean shutdown, so a handled SIGTERM is a normal exit.
    signal.signal(signal.SIGTERM, _exit_normally)
    server.run()


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
