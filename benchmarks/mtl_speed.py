"""Per-step time of each gradient method against `equal`, the floor and torchjd, for T = 2, 4, 8, 16 tasks.

Two models: a synthetic multi-head MLP (100 inputs, hidden [256, 128], random data) and multidigits' CNN
([16, 32] → 64 on 12×12 images, the experiment's trunk and its training images), one 10-way head per task
(multidigits' tasks repeat: left, right, left, …). A step is forward, loss terms, the method's backward and one
AdamW step. Rows:

- `equal`: the backward of Σ L_t (one backward);
- `floor`: one forward plus T backward passes through the shared part (one autograd.grad per term, their sum
  written into `.grad`, then the heads' backward): what an exact method must pay with one backward per term;
  `floor-batched`: the same rows from one vectorized backward (`term_gradients(batched=True)`, the default off
  the CPU);
- pcgrad, mgda, cagrad, nash_mtl, gradnorm (exact: `gradients: parameters`; gradnorm's rows end at the last
  shared layer), and `…@rep` (`gradients: representation`, the gradients on the shared features);
- `torchjd-upgrad`, `torchjd-mean`: torchjd's `mtl_backward` + `jac_to_grad` with UPGrad / Mean, the reference.
  UPGrad's default projector needs quadprog, which is not installed here: it gets `ScipyProjector` below (the
  same QP, same normalization and ridge, solved by scipy's L-BFGS-B), a few (T, T) solves per step.

Methods take turns, one block of `--steps` steps each per round; the figure is the median over `--rounds` of
the mean ms per step in a block. `--clock cpu` counts the process's CPU time instead of wall time: on a shared,
oversubscribed machine a long step is preempted more often than a short one, which inflates wall-time ratios
(use it with `--threads 1`). Prints one JSON line per (model, T, method), then a table.

    python benchmarks/mtl_speed.py [--models mlp cnn] [--tasks 2 4 8 16] [--batch-size 256] [--steps 4] [--rounds 5]
                                   [--threads 2] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from hydranet import registry
from hydranet.config import Config, load_config
from hydranet.data import build_dataset
from hydranet.models import HydraNet
from hydranet.models.trunks import CNNOptions, MLPOptions, cnn, mlp
from hydranet.mtl.gradients import backward_private, set_grad
from hydranet.train.gradients import term_gradients

METHODS = {  # row name → (balancer, its options)
    "equal": ("equal", {}),
    "pcgrad": ("pcgrad", {}), "mgda": ("mgda", {"gradients": "parameters"}), "cagrad": ("cagrad", {}),
    "nash_mtl": ("nash_mtl", {}), "gradnorm": ("gradnorm", {}),
    "pcgrad@rep": ("pcgrad", {"gradients": "representation"}), "mgda@rep": ("mgda", {}),
    "cagrad@rep": ("cagrad", {"gradients": "representation"}),
    "nash_mtl@rep": ("nash_mtl", {"gradients": "representation"}),
}
CLASSES = 10
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def build(model_name: str, tasks: int, batch_size: int) -> tuple[HydraNet, dict]:
    """(model, batch): the trunk, one 10-way head per task, and one batch {x, t0 … t(T−1)}."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if model_name == "mlp":
        trunk = mlp(MLPOptions(hidden=[256, 128]), (100,))
        x = torch.randn(batch_size, 100, generator=gen)
        labels = [torch.randint(0, CLASSES, (batch_size,), generator=gen) for _ in range(tasks)]
    else:
        cfg = load_config("multidigits")
        trunk = cnn(CNNOptions(**cfg.model.trunk.options.model_dump()), (1, 12, 12))
        train = build_dataset(cfg).split("train")
        pick = torch.randperm(len(train["x"]), generator=gen)[:batch_size]
        x = train["x"][pick].contiguous(memory_format=torch.channels_last)
        labels = [train[("left", "right")[t % 2]][pick] for t in range(tasks)]
    model = HydraNet(trunk, {f"t{t}": nn.Linear(trunk.out_dim, CLASSES) for t in range(tasks)})
    if x.ndim == 4:
        model = model.to(memory_format=torch.channels_last)
    return model.train(), {"x": x, **{f"t{t}": y for t, y in enumerate(labels)}}


def losses_of(model: HydraNet, batch: dict) -> dict[str, torch.Tensor]:
    out = model(batch["x"])
    return {name: cross_entropy(pred, batch[name]) for name, pred in out.items()}


def balancer_step(name: str, options: dict, model: HydraNet):
    """One step of a registered balancer, made with its validated options as a run makes it."""
    method = Config(mtl={"balancer": {"name": name, **options}}).mtl.balancer
    balancer = registry.get("balancer", name)(method.options, {}, 0)
    if hasattr(balancer, "on_fit_start"):
        balancer.on_fit_start(SimpleNamespace(model=model))
    shared = model.shared_parameters()
    return lambda losses: balancer.backward(losses, shared)


def floor_step(model: HydraNet, batched: bool):
    """The per-term rows on the shared parameters (one backward per term, or one batched), their plain sum written
    into the shared parameters' `.grad`, then the heads' backward. Writing a gradient is part of the floor: every
    method (and `equal`) leaves one for the optimizer, whose step over the trunk it then pays as they do."""
    shared = model.shared_parameters()

    def step(losses):
        rows = term_gradients(list(losses.values()), shared, batched=batched)
        set_grad(shared, rows.sum(0))
        backward_private(losses, {name: 1.0 for name in losses}, shared)
    return step


def scipy_projector():
    """A torchjd dual-cone projector without quadprog: min_v vᵀ G v s.t. v ≥ u per row u of U, on the Gramian
    normalized by its trace plus a 1e-4 ridge, as torchjd's QuadprogProjector prepares it."""
    import numpy as np
    from scipy.optimize import minimize
    from torchjd.linalg import DualConeProjector

    class ScipyProjector(DualConeProjector):
        def __call__(self, U, G):
            g = G.detach().double().cpu().numpy()
            g = g / max(np.trace(g), 1e-4) + 1e-4 * np.eye(len(g))
            u = U.detach().double().cpu().numpy().reshape(-1, len(g))
            w = [minimize(lambda v: (v @ g @ v, 2 * g @ v), row, jac=True, method="L-BFGS-B",
                          bounds=[(lo, None) for lo in row], options={"ftol": 1e-15, "gtol": 1e-12}).x for row in u]
            return torch.as_tensor(np.array(w).reshape(U.shape), dtype=G.dtype, device=G.device)

    return ScipyProjector()


def torchjd_step(aggregator_name: str, model: HydraNet):
    """torchjd's Jacobian descent: the Jacobian of the terms on the shared parameters, aggregated into `.grad`."""
    from torchjd.aggregation import UPGrad, Mean
    from torchjd.autojac import jac_to_grad, mtl_backward

    aggregator = UPGrad(projector=scipy_projector()) if aggregator_name == "upgrad" else Mean()
    shared = model.shared_parameters()

    def step(losses):
        mtl_backward(list(losses.values()), features=model.features, shared_params=shared)
        jac_to_grad(shared, aggregator)
    return step


def runners(model: HydraNet, names: list[str], with_torchjd: bool) -> dict:
    """Row name → backward function of the loss dict (every row shares the model: only the time matters)."""
    rows = {name: balancer_step(*METHODS[name], model) for name in names}
    rows["floor"] = floor_step(model, batched=False)
    rows["floor-batched"] = floor_step(model, batched=True)
    if with_torchjd:
        rows |= {f"torchjd-{agg}": torchjd_step(agg, model) for agg in ("upgrad", "mean")}
    return rows


def block_ms(model: HydraNet, optimizer, backward, batch: dict, steps: int, clock=time.perf_counter) -> float:
    """Mean ms per step (forward, losses, backward, optimizer step) over one block."""
    start = clock()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        backward(losses_of(model, batch))
        optimizer.step()
    return (clock() - start) * 1e3 / steps


def measure(model_name: str, tasks: int, args) -> dict[str, float]:
    model, batch = build(model_name, tasks, args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows = runners(model, args.methods, not args.no_torchjd)
    for backward in rows.values():  # warm-up: allocator, kernels, lazy balancer state
        block_ms(model, optimizer, backward, batch, 1)
    times = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, backward in rows.items():
            times[name].append(block_ms(model, optimizer, backward, batch, args.steps, CLOCKS[args.clock]))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--tasks", nargs="*", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="steps per block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks per method (the median is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-torchjd", action="store_true", help="skip the torchjd rows")
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS), help="cpu: the process's CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for model_name in args.models:
        for tasks in args.tasks:
            medians = measure(model_name, tasks, args)
            results += rows_of(model_name, tasks, medians, args)
            for row in results[-len(medians):]:
                print(json.dumps(row), flush=True)
    print_table(results)


def rows_of(model_name: str, tasks: int, medians: dict[str, float], args) -> list[dict]:
    machine = platform.processor() or platform.machine()
    return [{"model": model_name, "tasks": tasks, "method": name, "ms_per_step": round(ms, 2),
             "x_equal": round(ms / medians["equal"], 2), "x_floor": round(ms / medians["floor"], 2),
             "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds, "clock": args.clock,
             "machine": machine, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "threads": torch.get_num_threads(), "torch": torch.__version__} for name, ms in medians.items()]


def print_table(results: list[dict]) -> None:
    """One line per (model, method): ms/step, then × equal and × floor for each T."""
    counts = sorted({r["tasks"] for r in results})
    print(f"\n{'model':<5} {'method':<15}" + "".join(f" {'T=' + str(t) + ' ms (×eq, ×floor)':>26}" for t in counts))
    for model_name in dict.fromkeys(r["model"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results if r["model"] == model_name):
            cells = {r["tasks"]: r for r in results if r["model"] == model_name and r["method"] == method}
            line = "".join(f" {c['ms_per_step']:>10.1f} ({c['x_equal']:.2f}, {c['x_floor']:.2f})".rjust(27)
                           if (c := cells.get(t)) else " " * 27 for t in counts)
            print(f"{model_name:<5} {method:<15}{line}")


if __name__ == "__main__":
    main()
