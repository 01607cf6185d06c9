"""benchmarks/pooling.py at toy size: its other ways to 2×2 max-pooling give max_pool2d's output and input
gradient (an even and an odd input, as the seed CNN's two), and every way it times runs."""

import pytest
import torch
from tests.benchmark_scripts import load_benchmark


@pytest.mark.parametrize("size", [6, 5])
def test_the_other_ways_pool_as_max_pool2d(size):
    pooling = load_benchmark("pooling")
    x = torch.randn(2, 8, size, size, generator=torch.Generator().manual_seed(0))
    pooling.check(x.contiguous(memory_format=torch.channels_last))  # raises if a way differs


def test_a_wrong_backward_is_caught():
    pooling = load_benchmark("pooling")
    pooling.where_backward = lambda x, y, grad: torch.zeros(1)  # the check must not pass a wrong gradient
    with pytest.raises((AssertionError, RuntimeError)):
        pooling.check(torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last))


def test_every_way_runs():
    pooling = load_benchmark("pooling")
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    for way, (call, nbytes) in pooling.ways(x).items():
        call()
        assert nbytes > x.numel(), way
