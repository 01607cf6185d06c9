"""`hydranet train EXP --nproc N`: the same command started again as N processes by torchrun's own entry point
(torch.distributed.run), so the shortcut and `torchrun --nproc-per-node N -m hydranet train EXP` are one path."""

from __future__ import annotations

import sys
from typing import Sequence

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run


def torchrun_args(nproc: int, command: Sequence[str]) -> list[str]:
    """torchrun's arguments for one machine: a rendezvous on a free local port (`--standalone`), N workers, each
    `python -m hydranet <command>`."""
    return ["--standalone", "--nproc-per-node", str(nproc), "-m", "hydranet", *command]


def relaunch(nproc: int, command: Sequence[str]) -> int:
    """Run `hydranet <command>` as `nproc` processes and return the exit code: 0, or the first failed worker's (2
    for a user error, whose one line the worker printed; torchrun's report of the failure is not repeated)."""
    try:
        run(get_args_parser().parse_args(torchrun_args(nproc, command)))
    except ChildFailedError as failed:
        codes = [f.exitcode for f in failed.failures.values()]
        return next((c for c in codes if c > 0), 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
