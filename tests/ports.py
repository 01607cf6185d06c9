"""A free loopback port, for the tests that start a server or a process group (serve, tune's PostgreSQL, torchrun
ranks). Its own module, not conftest: spawned ranks import it without conftest's imports."""

import socket


def free_port() -> int:
    """A port the kernel just gave out on 127.0.0.1 and took back: free now, to be bound by whoever asked."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
