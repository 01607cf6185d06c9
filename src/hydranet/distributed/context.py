"""Which process of a data-parallel run this is, and joining or leaving torchrun's process group.

torchrun (or `hydranet train --nproc N`, which calls it) starts one process per rank with WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its environment; `join` reads them. In one process nothing is joined
and every helper answers as rank 0 of 1, so single-process runs do not change by one bit.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from hydranet.errors import UserError


_JOINED: list = []  # the group `join` created in this process, which `leave` alone destroys


class PeerLost(UserError):
    """Another process of the run died, or waited longer than the timeout, during a collective operation.

    A UserError so it ends the process with one line and exit code 2 rather than a gloo or NCCL traceback: what
    to do about it (restart with --resume) is the same whatever the backend's message."""


def active() -> bool:
    """Whether this process belongs to a process group of more than itself."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this is rank 0, which alone writes the run directory, checkpoints, plots and TensorBoard events and
    prints results; torchrun's RANK answers before the group is joined and after it was left."""
    if active():
        return rank() == 0
    return not launched() or int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """Whether torchrun started this process as one of several (WORLD_SIZE > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes: torch's fastest backend for each."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: `cuda` (no index) means this node's GPU number LOCAL_RANK; any other device stays."""
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def join(device: torch.device, timeout_s: float) -> torch.device:
    """Join torchrun's process group (once per process) and return this rank's device; in a single process,
    `device` unchanged.

    `timeout_s` bounds every collective operation: a rank that died or hangs ends the others with `PeerLost`
    instead of leaving them waiting forever."""
    device = rank_device(device)
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend(device), timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:  # the rendezvous failed: another rank never came, a port is taken
        raise PeerLost(f"distributed: rank {os.environ.get('RANK', '?')} could not join the other processes "
                       f"({first_line(err)})") from None
    _JOINED.append(dist.group.WORLD)
    return device


def leave() -> None:
    """Leave the process group that `join` created, at the end of a run. A group the caller made itself (a script or
    test that called `init_process_group` before running hydranet) stays: the caller still uses it and destroys it."""
    if _JOINED and dist.is_initialized():
        dist.destroy_process_group()
    _JOINED.clear()


@contextmanager
def membership():
    """Leave the joined process group when the block ends, however it ends."""
    try:
        yield
    finally:
        leave()


def synchronize(what: str) -> None:
    """Wait until every rank got here: after the last collective of a run, so no rank tears its transport down
    while another still sends (gloo can abort on that), and rank 0's writing afterwards keeps no rank waiting."""
    if active():
        with exchanging(what):
            dist.barrier()


@contextmanager
def exchanging(what: str):
    """Run a collective: a dead or silent peer (the backend's RuntimeError: a closed connection, a timeout) becomes
    one clear `PeerLost` line, whichever collective met it."""
    try:
        yield
    except RuntimeError as err:
        raise PeerLost(f"distributed: rank {rank()} of {world_size()} lost the other processes while exchanging "
                       f"{what} ({first_line(err)}); a process died or stopped answering for "
                       f"train.distributed_timeout seconds: restart with --resume RUN_DIR") from None


def first_line(err: BaseException) -> str:
    """The first line of a backend's message (gloo and NCCL append a C++ stack)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
