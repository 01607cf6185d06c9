"""`hydranet bench mtl`: every task alone, then every balancer × sharing over seeds, compared by Δm.

`run_bench` trains the runs into `<out>/runs/`, prints one line per run and writes bench.json, bench.md, bench.png.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hydranet import registry
from hydranet.config import Config, load_config, validate
from hydranet.errors import UserError
from hydranet.files import make_dir
from hydranet.kinds import get_kind, higher_is_better
from hydranet.mtl.bench_report import write_report
from hydranet.train import fit

# Timing is part of the comparison, so the per-step gradient diagnostics are off unless --set turns them on.
BENCH_DEFAULTS = ("mtl.diagnostics_every=0",)


def delta_m(metrics: dict[str, float], baseline: dict[str, float], lower_is_better: dict[str, bool]) -> float:
    """Δm in %: the mean over tasks of (M_t − B_t)/B_t, negated where lower is better (Maninis et al., 2019;
    LibMTL, Nash-MTL); positive means better than the single-task baselines."""
    terms = [(-1 if lower_is_better[t] else 1) * (metrics[t] - baseline[t]) / baseline[t] if baseline[t] else float("nan")
             for t in baseline]
    return 100 * float(np.mean(terms))


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds (std 0 for one seed)."""
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def run_bench(experiment: Any, balancers: Sequence[str] | None = None, sharings: Sequence[str] | None = None,
              seeds: int = 3, overrides: Sequence[str] = (), out: str | Path | None = None, *,
              command: str | None = None, echo: Callable[[str], None] = print) -> dict:
    """Train the single-task baselines and each method, and write the comparison into `out`; returns bench.json."""
    base = load_config(experiment, [*BENCH_DEFAULTS, *overrides])
    balancers = _registered("balancer", balancers, "--balancers")
    sharings = _registered("sharing", sharings or ["hard"], "--sharings")
    if seeds < 1:
        raise UserError(f"--seeds: expected at least 1, got {seeds}")
    out = _new_out_dir(out, base.name)
    plan = _plan(base, balancers, sharings, seeds)
    runs = [{"role": role, **_train(cfg, out / "runs" / label, f"[{i}/{len(plan)}] {label}", echo)}
            for i, (label, role, cfg) in enumerate(plan, 1)]
    results = summarize(base, runs, balancers, sharings, seeds)
    results.update(command=command or _python_call(experiment, balancers, sharings, seeds, overrides, out),
                   machine=machine(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), out=str(out))
    write_report(results, out)
    echo(f"wrote {out / 'bench.md'}, bench.json, bench.png")
    return results


def _registered(kind: str, names: Sequence[str] | None, option: str) -> list[str]:
    """The names asked for (all registered when None), each checked now rather than after an hour of runs."""
    if names is None:
        return registry.names(kind)
    if not names:
        raise UserError(f"{option}: expected at least one {kind} name")
    for name in names:
        registry.get(kind, name, option)
    return list(dict.fromkeys(names))


def _new_out_dir(out: str | Path | None, name: str) -> Path:
    path = Path(out) if out is not None else Path("runs") / f"bench-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path}: already exists and is not an empty folder (choose another --out)")
    make_dir(path / "runs")
    return path


def _plan(base: Config, balancers: list[str], sharings: list[str], seeds: int) -> list[tuple[str, str, Config]]:
    """(run label, role, config) of every run: each task alone, then balancer × sharing, each over the seeds."""
    plan = []
    for i in range(seeds):
        for task in base.tasks:
            plan.append((f"single-{task}-s{i}", "single", _variant(base, base.seed + i, [task], "equal", "hard")))
    for sharing in sharings:
        for balancer in balancers:
            for i in range(seeds):
                plan.append((f"{balancer}-{sharing}-s{i}", "method", _variant(base, base.seed + i, list(base.tasks), balancer, sharing)))
    return plan


def _variant(base: Config, seed: int, tasks: list[str], balancer: str, sharing: str) -> Config:
    """The experiment with some of its tasks, one balancer, one sharing and one seed.

    Splits are never stratified here: a baseline without the stratifying task would otherwise split
    differently, and every run of one seed must be scored on the same test examples.
    """
    data = base.as_experiment()  # a table default chooses its trunk from the data in every run, as train does
    data["seed"] = seed
    data["tasks"] = {t: data["tasks"][t] for t in tasks}
    # a method named as in the experiment keeps its options there; another one starts from its defaults
    if base.model.sharing.name != sharing:
        data["model"]["sharing"] = sharing
    if base.mtl.balancer.name != balancer:
        data["mtl"]["balancer"] = balancer
    if len(base.tasks) > 1:
        data["data"]["split"]["stratify"] = None
    stop = data["train"]["early_stopping"]
    if stop["monitor"] and stop["monitor"] != "val/loss" and stop["monitor"].split("/")[1] not in tasks:
        stop["monitor"] = f"val/{tasks[0]}/{get_kind(base.tasks[tasks[0]].kind).main_metric}"  # a baseline watches its own task
    return validate(data)


def _train(cfg: Config, run_dir: Path, label: str, echo: Callable[[str], None]) -> dict:
    """One run; returns what the comparison needs and prints one line."""
    run = fit(cfg, run_dir, progress=False)
    split = "test" if run.summary.get("test") else "val"
    main = {t: get_kind(c.kind).main_metric for t, c in cfg.tasks.items()}  # the metric each task is compared by
    scores = {t: run.summary[split][t][main[t]] for t in cfg.tasks}
    seconds = run.summary["train_seconds"] / max(run.summary["epochs"], 1)
    shown = "  ".join(f"{t} {main[t]} {v:.4f}" for t, v in scores.items())
    echo(f"{label}: {shown}  {seconds:.2f}s/epoch")
    return {"balancer": cfg.mtl.balancer.name, "sharing": cfg.model.sharing.name, "tasks": list(cfg.tasks), "seed": cfg.seed,
            "scores": scores, "epoch_seconds": seconds, "split": split, "dir": str(run_dir)}


def summarize(base: Config, runs: list[dict], balancers: list[str], sharings: list[str], seeds: int) -> dict:
    """Baselines and methods as mean ± std over seeds; Δm is paired by seed (same split, same test examples)."""
    main = {t: get_kind(c.kind).main_metric for t, c in base.tasks.items()}
    tasks = {t: {"metric": main[t], "lower_is_better": not higher_is_better(main[t])} for t in base.tasks}
    lower = {t: v["lower_is_better"] for t, v in tasks.items()}
    single = {(r["tasks"][0], r["seed"]): r for r in runs if r["role"] == "single"}
    seed_list = [base.seed + i for i in range(seeds)]
    baseline_by_seed = {s: {t: single[(t, s)]["scores"][t] for t in base.tasks} for s in seed_list}
    methods = []
    for sharing in sharings:
        for balancer in balancers:
            mine = [r for r in runs if r["role"] == "method" and r["balancer"] == balancer and r["sharing"] == sharing]
            methods.append({"balancer": balancer, "sharing": sharing,
                            "metrics": {t: stats([r["scores"][t] for r in mine]) for t in base.tasks},
                            "delta_m": stats([delta_m(r["scores"], baseline_by_seed[r["seed"]], lower) for r in mine]),
                            "epoch_seconds": stats([r["epoch_seconds"] for r in mine]), "runs": [r["dir"] for r in mine]})
    _relative_times(methods)
    return {"experiment": base.name, "seeds": seed_list, "split": runs[0]["split"], "tasks": tasks,
            "baseline": {t: stats([baseline_by_seed[s][t] for s in seed_list]) for t in base.tasks},
            "baseline_epoch_seconds": {t: stats([single[(t, s)]["epoch_seconds"] for s in seed_list]) for t in base.tasks},
            "baseline_runs": {t: [single[(t, s)]["dir"] for s in seed_list] for t in base.tasks}, "methods": methods}


def _relative_times(methods: list[dict]) -> None:
    """Time per epoch over that of `equal` with the same sharing (None when equal was not run)."""
    equal = {m["sharing"]: m["epoch_seconds"]["mean"] for m in methods if m["balancer"] == "equal"}
    for m in methods:
        ref = equal.get(m["sharing"])
        m["time_vs_equal"] = m["epoch_seconds"]["mean"] / ref if ref else None


def machine() -> str:
    """CPU model and count, torch version and GPU if any: the context the timings were measured in."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} × {cpu}{gpu}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"


def _python_call(experiment, balancers, sharings, seeds, overrides, out) -> str:
    return f"run_bench({str(experiment)!r}, {balancers}, {sharings}, seeds={seeds}, overrides={list(overrides)}, out={str(out)!r})"
