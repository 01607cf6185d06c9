"""Ctrl-C during a study: stop the running training at once, but never in the middle of Optuna's bookkeeping.

A KeyboardInterrupt that lands while Optuna records a finished trial leaves that trial "running" and makes
Optuna itself fail (an UnboundLocalError in its `_run_trial`). So outside the training of a trial, Ctrl-C is
only noted; the study then stops after the record is written and the worker raises KeyboardInterrupt itself.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Interrupts:
    def __init__(self):
        self.pending = False  # Ctrl-C arrived while it could not be raised
        self.raising = False  # inside a trial's training: raise at once

    def _handle(self, signum: int, frame: Any) -> None:
        # noted in any case: should the KeyboardInterrupt raised inside a training be swallowed or turned into another
        # error on its way out (raised in a Python callback that C++ code called), the study still stops after it
        self.pending = True
        if self.raising:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Take over SIGINT for the block (signal handlers belong to the main thread: elsewhere, do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def immediate(self) -> Iterator[None]:
        """A block (the training) that Ctrl-C interrupts at once, also when it came just before the block."""
        if self.pending:
            raise KeyboardInterrupt
        self.raising = True
        try:
            yield
        finally:
            self.raising = False

    def stop_study(self, study: Any, trial: Any) -> None:
        """Optuna callback after each recorded trial: end the study's loop when Ctrl-C was noted meanwhile."""
        if self.pending:
            study.stop()
