"""What the seed CNN's 2×2 max-pooling costs, set against what moving its bytes costs on this machine.

At batch 32 max-pooling and its gradient buffer's zero fill take about a third of a `seed-cnn` step
(`profile_seed_cnn.py`). This times, on the step's two pooling inputs (channels_last, N × 32 × 30 × 30 and
N × 64 × 13 × 13), PyTorch's max_pool2d forward, with indices (what training runs), forward plus backward
under autograd, and two other ways to the same forward: three `torch.maximum` of the NHWC view's slices, and
oneDNN's pooling on an oneDNN tensor (the conversions left out), and a backward for the first of them written
with tensor ops (`nhwc_where_backward`: the output gradient where the input equals its window's maximum, one
`torch.where` over the broadcast NHWC views; ties would get it twice). Beside them, `clone` of the same input: one
read and one write of it, this machine's speed at moving those bytes. Each time is the median of
`--repeats` blocks of `--calls` calls; GB/s counts the bytes each call must move at least (input read plus
output written; with indices, their int64s too; forward plus backward, also the gradient read and the input
gradient written). Prints one JSON line per (shape, dtype, way), then a table.

    python benchmarks/pooling.py [--batch-size 32] [--threads 1] [--calls 200] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from hydranet.train.allocator import keep_freed_memory


def windows(x: torch.Tensor) -> torch.Tensor:
    """The 2×2 windows of a channels_last (N, C, H, W) as its NHWC view (N, H/2, 2, W/2, 2, C), a view, not a copy
    (an odd last row or column is in no window, as max_pool2d leaves it)."""
    n, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].permute(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c)


def nhwc_max(x: torch.Tensor) -> torch.Tensor:
    """2×2 max-pooling of a channels_last (N, C, H, W) as three maxima of its windows' strided slices."""
    v = windows(x)
    return torch.maximum(torch.maximum(v[:, :, 0, :, 0], v[:, :, 0, :, 1]),
                         torch.maximum(v[:, :, 1, :, 0], v[:, :, 1, :, 1])).permute(0, 3, 1, 2)


def where_backward(x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The input gradient of `nhwc_max` (its windows: an odd last row or column gets none) in the NHWC view's
    shape (N, H/2, 2, W/2, 2, C), by one broadcast `torch.where`."""
    def spread(t):
        return t.permute(0, 2, 3, 1)[:, :, None, :, None]
    return torch.where(windows(x) == spread(y), spread(grad), 0)


def ways(x: torch.Tensor) -> dict[str, tuple]:
    """way → (call, bytes it must move at least)."""
    item, size = x.element_size(), x.numel()
    out = size // 4
    grad_in = x.detach().clone().requires_grad_()
    grad_out = torch.randn_like(F.max_pool2d(x, 2))
    onednn, pooled = x.to_mkldnn(), nhwc_max(x)
    return {
        "clone": (lambda: x.clone(), 2 * size * item),
        "max_pool2d": (lambda: F.max_pool2d(x, 2), (size + out) * item),
        "with_indices": (lambda: torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2]), (size + out) * item + 8 * out),
        "forward+backward": (lambda: torch.autograd.grad(F.max_pool2d(grad_in, 2), grad_in, grad_out),
                             (2 * size + 2 * out) * item),
        "nhwc_maximum": (lambda: nhwc_max(x), (size + out) * item),
        "onednn": (lambda: torch.mkldnn_max_pool2d(onednn, [2, 2], [2, 2]), (size + out) * item),
        "nhwc_where_backward": (lambda: where_backward(x, pooled, grad_out), (2 * size + 2 * out) * item),
    }


def check(x: torch.Tensor) -> None:
    """The other ways give max_pool2d's output, and (without ties: checked in float32) its input gradient."""
    expected_out = F.max_pool2d(x, 2)
    assert torch.equal(nhwc_max(x), expected_out)
    assert torch.equal(torch.mkldnn_max_pool2d(x.to_mkldnn(), [2, 2], [2, 2]).to_dense(), expected_out)
    if x.dtype == torch.float32:
        leaf = x.detach().clone().requires_grad_()
        grad = torch.randn_like(F.max_pool2d(x, 2))
        (expected,) = torch.autograd.grad(F.max_pool2d(leaf, 2), leaf, grad)
        n, c, h, w = x.shape
        ours = where_backward(x, nhwc_max(x), grad).reshape(n, h // 2 * 2, w // 2 * 2, c).permute(0, 3, 1, 2)
        assert torch.equal(ours, expected[:, :, :h // 2 * 2, :w // 2 * 2])


def median_us(call, calls: int, repeats: int) -> float:
    """µs per call: the median over `repeats` blocks of each block's mean over `calls` calls, as
    profile_seed_cnn.py's --blocks times steps (the raw lines were measured so; `median_ms` of
    hydranet.compress.profile takes the median of single calls instead)."""
    for _ in range(10):
        call()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        blocks.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as training runs (train.cpu_memory: keep): no page faults per call
    rows = []
    for shape in [(args.batch_size, 32, 30, 30), (args.batch_size, 64, 13, 13)]:
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
            check(x)
            for way, (call, nbytes) in ways(x).items():
                us = median_us(call, args.calls, args.repeats)
                rows.append({"benchmark": "pooling", "shape": list(shape), "dtype": str(dtype).split(".")[-1],
                             "way": way, "us": round(us, 1), "gb_per_s": round(nbytes / us / 1e3, 2),
                             "threads": args.threads, "machine": platform.machine(), "torch": torch.__version__,
                             "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| input | dtype | " + " | ".join(dict.fromkeys(r["way"] for r in rows)) + " |")
    print("|---|---|" + "---|" * len(dict.fromkeys(r["way"] for r in rows)))
    for key in dict.fromkeys((tuple(r["shape"]), r["dtype"]) for r in rows):
        cells = [f"{r['us']:.0f} µs · {r['gb_per_s']:.1f} GB/s" for r in rows if (tuple(r["shape"]), r["dtype"]) == key]
        print(f"| {'×'.join(map(str, key[0]))} | {key[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
