"""The micro-batcher without a server or clock: concurrent requests run as one call and each gets its own result;
`max_batch` caps a batch; a failing call fails its requests only, an error returned for one request fails that
request only; `close` answers what was queued."""

import asyncio

import pytest
import torch

from hydranet.serve.batcher import MicroBatcher

FOREVER = 3600.0  # a wait no test reaches: batches close by size, or by close(), never by the clock


class Recorder:
    """A per-batch function that records the rows of each call and answers each request with its own rows' values
    (a request of negative values gets a ValueError of its own)."""

    def __init__(self, fail: bool = False):
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, requests: list[torch.Tensor]) -> list:
        self.calls.append(sum(len(x) for x in requests))
        if self.fail:
            raise RuntimeError("model broke")
        return [ValueError("negative") if (x < 0).any() else {"double": x * 2, "first": x[:, 0]} for x in requests]


def requests(sizes: list[int]) -> list[torch.Tensor]:
    """Request i's rows hold i*100 + row, so a mixed-up answer shows."""
    return [torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2) + 100 * i for i, n in enumerate(sizes)]


async def serve(batcher: MicroBatcher, xs: list[torch.Tensor]) -> list:
    """Submit every request at once, then close: a batch still waiting for rows is ended by the close marker
    (queued after the requests: one turn of the event loop lets each submit enqueue its rows first)."""
    batcher.start()
    pending = [asyncio.ensure_future(batcher.submit(x)) for x in xs]
    await asyncio.sleep(0)
    await batcher.close()
    return await asyncio.gather(*pending, return_exceptions=True)


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    model, xs = Recorder(), requests([3, 1, 4, 2])
    answers = asyncio.run(serve(MicroBatcher(model, max_batch=10, max_wait_s=FOREVER), xs))
    assert model.calls == [10]  # full at 10 rows: run at once, without waiting
    for x, answer in zip(xs, answers):
        assert torch.equal(answer["double"], x * 2) and torch.equal(answer["first"], x[:, 0])


def test_max_batch_caps_a_batch_and_one_means_no_batching():
    sizes = [3, 1, 4, 2]
    model = Recorder()
    asyncio.run(serve(MicroBatcher(model, max_batch=5, max_wait_s=FOREVER), requests(sizes)))
    assert model.calls == [4, 4, 2]  # 3+1, then 4 (adding 2 would pass 5), then 2 (ended by close)
    model = Recorder()
    asyncio.run(serve(MicroBatcher(model, max_batch=1, max_wait_s=FOREVER), requests(sizes)))
    assert model.calls == sizes  # each request alone, even one larger than max_batch


def test_a_failing_call_fails_its_requests_and_the_batcher_goes_on():
    async def scenario():
        model = Recorder(fail=True)
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=FOREVER)
        batcher.start()
        first = await asyncio.gather(*(batcher.submit(x) for x in requests([2, 2])), return_exceptions=True)
        model.fail = False
        second = await asyncio.gather(*(batcher.submit(x) for x in requests([4])))
        await batcher.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) for e in first) and second[0]["double"].shape == (4, 2)


def test_an_error_returned_for_one_request_fails_that_request_alone():
    model, xs = Recorder(), requests([2, 1, 2])
    xs[1] = -xs[1]
    answers = asyncio.run(serve(MicroBatcher(model, max_batch=5, max_wait_s=FOREVER), xs))
    assert model.calls == [5] and isinstance(answers[1], ValueError)
    assert torch.equal(answers[0]["double"], xs[0] * 2) and torch.equal(answers[2]["first"], xs[2][:, 0])


def test_close_answers_every_request_queued_before_it():
    model = Recorder()
    answers = asyncio.run(serve(MicroBatcher(model, max_batch=100, max_wait_s=FOREVER), requests([1, 2])))
    assert model.calls == [3] and [len(a["first"]) for a in answers] == [1, 2]


@pytest.mark.parametrize("max_batch", [2, 3])
def test_batches_fill_up_to_max_batch(max_batch):
    model = Recorder()
    asyncio.run(serve(MicroBatcher(model, max_batch, FOREVER), requests([1, 1, 1])))
    assert model.calls == [max_batch, 3 - max_batch][:1 + (max_batch < 3)]


def test_rows_already_queued_join_the_batch_even_with_no_wait():
    model = Recorder()
    asyncio.run(serve(MicroBatcher(model, max_batch=10, max_wait_s=0.0), requests([1, 1, 1])))
    assert model.calls == [3]  # waiting 0 ms means not waiting for more, not leaving queued rows behind
