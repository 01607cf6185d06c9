"""Dynamic batching: concurrent requests gathered into one call of a per-batch function, so many small requests
cost about what one batch does (the model's time per call barely grows with the rows it is given, and what is
done once per batch — decoding answers, the drift window, the metrics — is vectorized over its rows).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sized

Process = Callable[[list[Any]], list[Any]]  # the gathered requests' inputs → one result per request


@dataclass
class _Job:
    inputs: Sized  # one request's n rows, as `process` takes them
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class MicroBatcher:
    """One worker task waits for a first request, then up to `max_wait_s` for others until `max_batch` rows are
    queued, and runs `process` once on the requests it takes (in a thread, so the event loop keeps accepting
    requests); each request gets its own result, or its own error when `process` returns an exception in its
    place. A request never shares a batch that would exceed `max_batch` rows unless it alone has more; `max_batch`
    1 runs every request alone, without waiting.

    Submitting only appends to a queue: the worker wakes when the first request arrives and when the queue fills
    (`max_batch` rows), and starts one timer per batch, so the cost of batching does not grow with the requests.
    """

    def __init__(self, process: Process, max_batch: int, max_wait_s: float):
        self.process, self.max_batch, self.max_wait_s = process, max_batch, max_wait_s
        self._queue: deque[_Job] = deque()
        self._rows = 0  # rows queued
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        """Run every request queued so far (without waiting for more), then stop the worker."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._worker is not None:
            await self._worker

    async def submit(self, inputs: Sized) -> Any:
        """The result for `inputs`, computed in some batch with other requests' rows."""
        job = _Job(inputs)
        self._queue.append(job)
        self._rows += len(inputs)
        self._arrived.set()
        if self._rows >= self.max_batch:
            self._full.set()
        return await job.done

    async def _work(self) -> None:
        while True:
            await self._arrived.wait()
            if not self._queue:  # woken by close with nothing left
                return
            if not self._full.is_set():
                try:
                    async with asyncio.timeout(self.max_wait_s):
                        await self._full.wait()
                except TimeoutError:
                    pass
            await self._run(self._take())

    def _take(self) -> list[_Job]:
        """The first queued request and those after it that fit in `max_batch` rows."""
        jobs = [self._queue.popleft()]
        rows = len(jobs[0].inputs)
        while self._queue and rows + len(self._queue[0].inputs) <= self.max_batch:
            jobs.append(self._queue.popleft())
            rows += len(jobs[-1].inputs)
        self._rows -= rows
        if not self._queue and not self._closing:
            self._arrived.clear()
        if self._rows < self.max_batch and not self._closing:
            self._full.clear()
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        """One `process` call for all `jobs`; each gets its result, or the error when the call itself failed."""
        try:
            results = await asyncio.to_thread(self.process, [job.inputs for job in jobs])
        except Exception as err:  # an internal error: every request of the batch answers 500 with it
            results = [err] * len(jobs)
        for job, result in zip(jobs, results):
            if job.done.cancelled():  # its client went away
                continue
            if isinstance(result, Exception):
                job.done.set_exception(result)
            else:
                job.done.set_result(result)
