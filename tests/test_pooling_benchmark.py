"""benchmarks/pooling.py at toy size: its other ways to 2×2 max-pooling (NHWC maxima, oneDNN) give max_pool2d's
output and its tensor-op backward autograd's input gradient, on an even and an odd input as the seed CNN's two;
a wrong gradient is caught; every way it times runs and counts at least the bytes it reads."""

import pytest
import torch
from tests.benchmark_scripts import load_benchmark


def channels_last(size: int) -> torch.Tensor:
    x = torch.randn(2, 8, size, size, generator=torch.Generator().manual_seed(0))
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("size", [6, 5])
def test_the_other_ways_pool_as_max_pool2d(size):
    load_benchmark("pooling").check(channels_last(size))  # raises if a way differs


def test_a_wrong_backward_is_caught():
    pooling = load_benchmark("pooling")
    right = pooling.where_backward
    pooling.where_backward = lambda x, y, grad: right(x, y, grad).flip(2)  # right shape, wrong cells
    with pytest.raises(AssertionError):
        pooling.check(channels_last(6))


def test_every_way_runs():
    pooling = load_benchmark("pooling")
    x = channels_last(6)
    for way, (call, nbytes) in pooling.ways(x).items():
        call()
        assert nbytes >= x.numel() * x.element_size(), way
