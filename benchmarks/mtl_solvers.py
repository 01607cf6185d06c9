"""The fixed cost of each gradient method's small (T, T) solve, per step, for T = 2, 4, 8, 16 tasks.

What an exact gradient method pays above the floor (`benchmarks/mtl_speed.py`) is its Gram matrix and its solve on
it: MGDA's min-norm point, CAGrad's dual, Nash-MTL's bargaining equation, PCGrad's projection rounds. This times
each solve on the Gram matrix of real task gradients (the synthetic MLP of `mtl_speed.py`, one 10-way head per
task, batch 256), right after that step's backward, as it runs in training: the first small numpy call after a
backward is several times slower than the same call repeated (its code and data are out of cache), so timing a
solve in a loop of its own would flatter it (the `np.sum` and `np.linalg.solve` rows measure that: one call right
after the backward, then the same call again, `… again`). Prints one JSON line per (T, method), then a table of
microseconds.

    python benchmarks/mtl_solvers.py [--tasks 2 4 8 16] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from hydranet.mtl.cagrad import cagrad_coefficients
from hydranet.mtl.gram import cpu_gram
from hydranet.mtl.min_norm import min_norm_weights
from hydranet.mtl.nash_mtl import nash_alpha
from hydranet.mtl.pcgrad import pcgrad_coefficients
from hydranet.train.gradients import term_gradients
from mtl_speed import build, losses_of


def solvers(tasks: int) -> dict:
    """Method → its solve on a float64 Gram matrix, as its balancer calls it (Nash-MTL: cold start, its first step)."""
    gen = torch.Generator().manual_seed(0)

    def pcgrad(gram):
        orders = [[j for j in torch.randperm(tasks, generator=gen).tolist() if j != i] for i in range(tasks)]
        return pcgrad_coefficients(gram, orders)

    return {"gram": None, "pcgrad": pcgrad, "mgda": min_norm_weights,
            "cagrad": lambda gram: cagrad_coefficients(gram, 0.4),
            "nash_mtl": lambda gram: nash_alpha(gram / np.linalg.norm(gram)),
            # references: one numpy call, and one small LAPACK call (both timed again at once: `… again`)
            "np.sum": np.sum, "np.linalg.solve": lambda gram: np.linalg.solve(gram + np.eye(tasks), np.ones(tasks))}


REPEATED = ("np.sum", "np.linalg.solve")


def measure(tasks: int, steps: int) -> dict[str, float]:
    """Median µs of each solve, each timed after a fresh backward (methods take turns); `gram`: J Jᵀ to the CPU."""
    model, batch = build("mlp", tasks, 256)
    shared = model.shared_parameters()
    methods = solvers(tasks)
    times = {name: [] for name in [*methods, *(f"{name} again" for name in REPEATED)]}
    for step in range(steps):
        for name, solve in methods.items():
            rows = term_gradients(list(losses_of(model, batch).values()), shared)
            start = time.perf_counter()
            gram = cpu_gram(rows)
            if solve is not None:
                start = time.perf_counter()
                solve(gram)
            took = time.perf_counter() - start
            if name in REPEATED:
                start = time.perf_counter()
                solve(gram)
                if step >= 5:
                    times[f"{name} again"].append((time.perf_counter() - start) * 1e6)
            if step >= 5:  # warm-up
                times[name].append(took * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for tasks in args.tasks:
        for name, us in measure(tasks, args.steps).items():
            rows.append({"benchmark": "mtl_solvers", "tasks": tasks, "method": name, "us_per_step": round(us, 1),
                         "steps": args.steps, "threads": args.threads, "machine": platform.machine(),
                         "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "torch": torch.__version__})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'method':<22}" + "".join(f"{'T=' + str(t) + ' µs':>12}" for t in args.tasks))
    for name in dict.fromkeys(r["method"] for r in rows):
        print(f"{name:<22}" + "".join(f"{r['us_per_step']:>12.1f}" for r in rows if r["method"] == name))


if __name__ == "__main__":
    main()
