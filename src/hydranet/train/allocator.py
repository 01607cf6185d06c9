"""Keep freed CPU memory in the process, so training steps do not page-fault (`train.cpu_memory: keep`).

PyTorch allocates CPU tensors with the C library's malloc. glibc serves blocks above its mmap threshold
(128 KiB at start, adjusted upwards as they are freed, up to 32 MiB) with fresh `mmap`s and unmaps them on
free, and trims the heap's free top back to the kernel. A training step allocates and frees the same
activations and gradients every time, so every step maps new pages and touches each one for the first
time: a page fault per 4 KiB. On the seed CNN (CIFAR-10, bf16, two threads) that was about 1,600 faults per
step at batch 32 and a fifth of the process's CPU time in the kernel; a bare PyTorch loop trained 3,600
images/s at batch 32 and 5,400 at 256 with glibc's defaults, 5,500 and 8,200 with freed memory kept
(docs/training.md). TensorFlow's allocator and PyTorch's own CUDA allocator keep freed memory the same way.

`keep` raises the mmap threshold to 64 MiB (larger blocks, such as a decoded data set, are still mapped and
returned) and the trim threshold to 1 GiB. These are process-wide settings of glibc (`mallopt`); on other C
libraries (macOS, musl) this does nothing. The cost: memory freed after a peak stays with the process, so
resident memory can stay near the peak after training until the process ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks up to 64 MiB for reuse; True where it applied (Linux with glibc)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
