"""`ServeSettings`: what `hydranet serve`'s options set, checked once, before the run is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hydranet.errors import UserError
from hydranet.serve.backend import BACKENDS


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs. `max_wait_ms` is how long the batcher waits after a request for others to join its
    batch; `max_batch` 1 runs every request alone. `window`: recent rows kept for /drift. `api_key_env` names the
    environment variable holding the key (never the key itself, which would show in `ps` and shell history).
    `workers`: server processes on one port, each with its own batcher, pooling their metrics and drift window."""

    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "torch"
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_body_mb: float = 10.0
    api_key_env: str | None = None
    window: int = 1000
    workers: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"--backend: {self.backend!r} is not a backend (expected {' or '.join(BACKENDS)})")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port: {self.port} is not a TCP port (expected 0..65535)")
        for flag, value in (("--max-batch", self.max_batch), ("--window", self.window)):
            if value < 1:
                raise UserError(f"{flag}: expected at least 1, got {value}")
        for flag, value in (("--max-wait-ms", self.max_wait_ms), ("--max-body-mb", self.max_body_mb)):
            if not value >= 0:  # also refuses NaN
                raise UserError(f"{flag}: expected a number ≥ 0, got {value}")
        if self.workers < 1:
            raise UserError(f"--workers: expected at least 1, got {self.workers}")
        self.api_key()  # a named variable that is unset is an error now, not at the first request

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def api_key(self) -> str | None:
        """The key requests must carry, read from the environment variable `api_key_env`; None: no key."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise UserError(f"--api-key-env: the environment variable {self.api_key_env} is not set or empty "
                            f"(export {self.api_key_env}=<key> before starting the server)")
        return key
