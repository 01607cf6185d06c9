"""Dynamic batching: concurrent requests' rows gathered into one model call, so many small requests cost about
what one batch does (the model's time per call barely grows with the rows it is given). What is done once per
batch rather than per request (table encoding) is the batcher's `prepare`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Sized

import torch

Outputs = dict[str, torch.Tensor]


@dataclass
class _Job:
    inputs: Sized  # one request's n rows, as `prepare` takes them (model inputs (n, …), checked table rows)
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_STOP: Any = object()  # put on the queue by `close`: the worker finishes what was queued before it, then stops


class MicroBatcher:
    """One worker task takes the first waiting request, then more until `max_batch` rows or `max_wait_s` after the
    first, runs `model` once on all their rows (in a thread, so the event loop keeps accepting requests) and hands
    each request its own rows of the outputs. A request never shares a batch that would exceed `max_batch` rows
    unless it alone has more; `max_batch` 1 runs every request alone, without waiting.

    `prepare(inputs)` turns the gathered requests' inputs into one model input, in the model's thread (default:
    tensors concatenated); it must not fail on inputs the requests checked. `on_batch(rows)` is called for every
    model call (the batch-size histogram).
    """

    def __init__(self, model: Callable[[torch.Tensor], Outputs], max_batch: int, max_wait_s: float,
                 on_batch: Callable[[int], None] = lambda rows: None,
                 prepare: Callable[[Sequence[Any]], torch.Tensor] = torch.cat):
        self.model, self.max_batch, self.max_wait_s, self.on_batch = model, max_batch, max_wait_s, on_batch
        self.prepare = prepare
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._held: _Job | None = None  # taken from the queue but too big for the batch it was taken for
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        """Run every request queued so far, then stop the worker."""
        if self._worker is not None:
            await self.queue.put(_STOP)
            await self._worker

    async def submit(self, inputs: Sized) -> Outputs:
        """The raw outputs for the rows of `inputs`, computed in some batch with other requests' rows."""
        job = _Job(inputs)
        await self.queue.put(job)
        return await job.done

    async def _work(self) -> None:
        while True:
            first = self._held or await self.queue.get()
            self._held = None
            if first is _STOP:
                return
            jobs, stop = await self._gather(first)
            await self._run(jobs)
            if stop:
                return

    async def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and the requests that join it; True when the stop marker came while gathering."""
        loop = asyncio.get_running_loop()
        jobs, rows, deadline = [first], len(first.inputs), loop.time() + self.max_wait_s
        while rows < self.max_batch:
            job = await self._next(deadline - loop.time())
            if job is None:
                break
            if job is _STOP:
                return jobs, True
            if rows + len(job.inputs) > self.max_batch:
                self._held = job
                break
            jobs.append(job)
            rows += len(job.inputs)
        return jobs, False

    async def _next(self, timeout_s: float) -> _Job | None:
        """The next queued job, waiting at most `timeout_s` for one; None when none came. Jobs already queued are
        taken without waiting (`wait_for` with no time left would give up on them)."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout_s <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except asyncio.TimeoutError:
            return None

    async def _run(self, jobs: list[_Job]) -> None:
        """One model call for all `jobs`; each gets its rows' outputs, or the error when the call failed."""
        self.on_batch(sum(len(job.inputs) for job in jobs))
        try:
            outputs = await asyncio.to_thread(self._call, [job.inputs for job in jobs])
        except Exception as err:  # an internal error: every request of the batch answers 500 with it
            for job in jobs:
                if not job.done.cancelled():  # cancelled: its client went away
                    job.done.set_exception(err)
            return
        start = 0
        for job in jobs:
            end = start + len(job.inputs)
            if not job.done.cancelled():
                job.done.set_result({task: values[start:end] for task, values in outputs.items()})
            start = end

    def _call(self, inputs: list[Any]) -> Outputs:
        return self.model(self.prepare(inputs))
