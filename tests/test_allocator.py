"""train.cpu_memory: keep makes repeated allocation of step-sized tensors stop page-faulting (glibc only)."""

import platform
import subprocess
import sys

import pytest

import hydranet as hn

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Allocate and free a 40 MiB tensor (10,240 pages) 20 times; print the minor page faults of the loop. glibc
# always maps blocks above 32 MiB afresh (its dynamic mmap threshold stops there); kept memory is reused.
LOOP = """
import resource, sys, torch
torch.set_num_threads(1)  # one thread allocates and fills: no second malloc arena
if sys.argv[1] == "keep":
    from hydranet.train.allocator import keep_freed_memory
    assert keep_freed_memory()
for _ in range(3):  # warm-up: the first blocks are new either way
    torch.empty(10 << 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(10 << 20).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 10_240


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_kept_memory_is_reused_without_page_faults():
    kept, default = faults("keep"), faults("release")
    assert default > 15 * PAGES  # every block mapped and touched afresh
    # reused: at most two of the 20 blocks faulted again (once, under load, exactly one did; the claim is
    # "stops page-faulting every step", which 2 of 20 still contradicts by a factor of 8 against default)
    assert kept <= 2 * PAGES


def test_runs_keep_memory_by_default_and_can_opt_out():
    assert hn.Experiment("quickstart").config.train.cpu_memory == "keep"
    assert hn.Experiment("quickstart", {"train.cpu_memory": "release"}).config.train.cpu_memory == "release"
