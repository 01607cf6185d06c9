"""Meta-learning benchmark: every method at one wall-clock budget of meta-training, then scored on new tasks.

- sinusoid (Finn et al. 2017, section 5.1): one model per K = 5 and K = 10 support points, as the paper trains;
  post-adaptation MSE on 600 new tasks at that K, and the pre-adaptation MSE of the same weights (gradient methods);
- omniglot: 5-way 1-shot accuracy on 600 episodes of Lake's evaluation characters and accuracy over his 20
  official 20-way 1-shot runs;
- cifar-fewshot: 5-way 1-shot and 5-shot accuracy on 600 episodes of the five held-out CIFAR-10 classes;
each ± a 95% confidence interval over episodes (runs).

Every method gets the same `--budget` seconds of meta-training (meta-validation excluded); the table says how many
meta-iterations that bought. `--clock cpu` counts the budget in this process's CPU seconds instead of wall-clock
seconds: on a machine other jobs share, every method then gets the same compute however the load varies. Prints one JSON line per row and writes <out>/meta.json and <out>/meta.md.

    python benchmarks/meta.py sinusoid --budget 60
    python benchmarks/meta.py omniglot --budget 120 --methods protonet,maml
    python benchmarks/meta.py omniglot --budget 60 --clock cpu
    python benchmarks/meta.py cifar-fewshot --budget 120 --methods protonet,finetune
    python benchmarks/meta.py inner-step     # MAML's first inner step at initialisation, with and without BatchNorm
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.func import grad

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hydranet.config import load_config  # noqa: E402
from hydranet.files import write_json, write_text  # noqa: E402
from hydranet.meta import loop  # noqa: E402
from hydranet.meta.evaluate import evaluate_run, read_parameters  # noqa: E402
from hydranet.meta.learner import call  # noqa: E402
from hydranet.meta.setup import build  # noqa: E402
from hydranet.randomness import Purpose, stream  # noqa: E402
from hydranet.rundir import RunDir  # noqa: E402

OMNIGLOT = str(ROOT.parent / "shared" / "data" / "omniglot")
CIFAR = str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz")
DATA_PATHS = {"omniglot": f"meta.path={OMNIGLOT}", "cifar-fewshot": f"data.path={CIFAR}"}
GRADIENT = {"maml", "fomaml", "anil", "reptile"}
# Per-method settings on top of the experiment: ProtoNets and the baseline train on 20-way episodes, the gradient
# methods on the 5-way episodes they are tested on (one head output per class), 1 inner step in training, 3 at
# test as in the papers, but on the papers' BatchNorm network and with inner lr 0.1: without BatchNorm one step
# of the papers' 0.4 barely moves the loss at initialisation, with it 0.4 overshoots (`inner-step` below).
FIVE_WAY = ["meta.train_ways=null", "meta.meta_batch=4"]  # 5-way training episodes, 4 per meta-batch
BATCH_NORM = "model.trunk.batch_norm=true"
SETTINGS = {
    "sinusoid": {
        "maml": ["meta.method={name: maml, inner_lr: 0.01, eval_steps: 10}"],
        "fomaml": ["meta.method={name: fomaml, inner_lr: 0.01, eval_steps: 10}"],
        "anil": ["meta.method={name: anil, inner_lr: 0.01, eval_steps: 10}"],
        "reptile": ["meta.method={name: reptile, inner_steps: 5, inner_lr: 0.02, eval_steps: 10}"],
        "finetune": ["meta.method=finetune"],
    },
    "omniglot": {
        "protonet": ["meta.method=protonet", "meta.train_ways=20", "meta.meta_batch=1"],
        "maml": ["meta.method={name: maml, inner_lr: 0.1, eval_steps: 3}", BATCH_NORM, *FIVE_WAY],
        "fomaml": ["meta.method={name: fomaml, inner_lr: 0.1, eval_steps: 3}", BATCH_NORM, *FIVE_WAY],
        "anil": ["meta.method={name: anil, inner_lr: 0.1, eval_steps: 3}", BATCH_NORM, *FIVE_WAY],
        "reptile": ["meta.method={name: reptile, inner_steps: 5, inner_lr: 0.1, eval_steps: 10}", *FIVE_WAY],
        "finetune": ["meta.method=finetune", "meta.train_ways=20", "meta.meta_batch=1"],
    },
    "cifar-fewshot": {  # 5 meta-train classes: every method trains on 5-way episodes
        "protonet": ["meta.method=protonet"],
        "finetune": ["meta.method=finetune"],
        "anil": ["meta.method={name: anil, inner_lr: 0.1, inner_steps: 5, eval_steps: 10}", "meta.meta_batch=4"],
    },
}
SHOTS = {"sinusoid": (5, 10), "omniglot": (1,), "cifar-fewshot": (1, 5)}  # sinusoid: one model trained per K


def mse_after_steps(run_dir: Path, shots: int, steps: int) -> float | None:
    """MSE of the meta-learned weights after `steps` inner steps (0: before adaptation; the gradient methods only),
    on the 600 evaluation tasks of `meta eval`."""
    cfg = RunDir.open(run_dir).read_config()
    if cfg.meta.method.name not in GRADIENT:
        return None
    setup = build(cfg)
    params = read_parameters(RunDir.open(run_dir), setup)
    tasks = setup.sample(None, 600, 0, shots, cfg.meta.queries, stream(cfg.seed, Purpose.META_EVAL))
    return setup.problem.score(setup.method.loop.predict(params, tasks, steps=steps), tasks.query_y).mean().item()


def row(experiment: str, method: str, budget: float, clock: str, out: Path, iterations: int, shots: int) -> dict:
    """Meta-train one method for `budget` seconds on `clock` and score it; sinusoid models are trained and tested
    at K = shots."""
    overrides = [*SETTINGS[experiment][method], f"meta.time_budget={budget}", f"meta.budget_clock={clock}",
                 f"meta.iterations={iterations}", "meta.eval_every=1000000", "train.progress=false"]
    overrides += [DATA_PATHS[experiment]] if experiment in DATA_PATHS else [f"meta.shots={shots}"]
    name = method if experiment != "sinusoid" else f"{method}-k{shots}"
    started = time.perf_counter()
    run = loop.train(load_config(experiment, overrides), out / name, progress=False)
    result = {"experiment": experiment, "method": method, "iterations": run.summary["iterations"],
              "seconds": run.summary["seconds"], "clock": clock, "wall_seconds": round(time.perf_counter() - started, 1)}
    if experiment == "sinusoid":
        scored = evaluate_run(run.dir, 0, shots, 600)
        result.update(shots=shots, mse=[scored["mean"], scored["ci95"]], pre_mse=mse_after_steps(run.dir, shots, 0),
                      one_step_mse=mse_after_steps(run.dir, shots, 1))  # Meta-SGD's Table 1 adapts in one step
    elif experiment == "omniglot":
        scored = evaluate_run(run.dir, 5, 1, 600)
        result["5way1shot"] = [scored["mean"], scored["ci95"]]
        lake = scored.get("lake_runs")  # a method with a 5-way head cannot take 20-way runs
        result["lake_20way1shot"] = [lake["mean"], lake["ci95"]] if lake else None
    else:
        for k in SHOTS[experiment]:
            scored = evaluate_run(run.dir, 5, k, 600)
            result[f"5way{k}shot"] = [scored["mean"], scored["ci95"]]
    return result


def inner_step(out: Path) -> None:
    """Why MAML at the papers' inner rate stays at chance on the BatchNorm-free Omniglot net: at initialisation
    (seed 0), the support and query loss of 16 5-way 1-shot meta-train tasks before and after one inner SGD step,
    the support gradient's norm and the embedding's spread, with and without BatchNorm, at three inner rates."""
    lines = ["| BatchNorm | embedding std | ‖∇ support loss‖ | inner lr | support loss before → after | query loss after |",
             "| --- | --- | --- | --- | --- | --- |"]
    for batch_norm in (False, True):
        cfg = load_config("omniglot", [f"meta.path={OMNIGLOT}", "meta.method=maml", *FIVE_WAY,
                                       f"model.trunk.batch_norm={str(batch_norm).lower()}"])
        setup = build(cfg)
        params = {k: v.detach() for k, v in setup.initial_parameters().items()}
        tasks = setup.sample(setup.train, 16, 5, 1, 5, stream(cfg.seed, Purpose.EPISODES, 0))
        loss = lambda w, x, y: setup.problem.loss(call(setup.net, w, x), y)  # noqa: E731
        grads = [grad(loss)(params, tasks.support_x[t], tasks.support_y[t]) for t in range(tasks.tasks)]
        norm = sum(torch.sqrt(sum(g.pow(2).sum() for g in task.values())) for task in grads) / tasks.tasks
        spread = call(setup.net, params, tasks.support_x[0], embed=True).std().item()
        for lr in (0.4, 0.1, 0.01):
            stats = torch.tensor([[loss(params, tasks.support_x[t], tasks.support_y[t]),
                                   loss(fast, tasks.support_x[t], tasks.support_y[t]),
                                   loss(fast, tasks.query_x[t], tasks.query_y[t])]
                                  for t in range(tasks.tasks)
                                  for fast in [{k: params[k] - lr * grads[t][k] for k in params}]]).mean(0)
            lines.append(f"| {'yes' if batch_norm else 'no'} | {spread:.3f} | {norm:.2f} | {lr} | "
                         f"{stats[0]:.3f} → {stats[1]:.3f} | {stats[2]:.3f} |")
    text = "\n".join(lines) + "\n"
    write_text(out / "inner-step.md", text)
    print(text)


def table(rows: list[dict]) -> str:
    pct = lambda pair: f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}%" if pair else "— (5-way head)"  # noqa: E731
    experiment = rows[0]["experiment"]
    if experiment == "sinusoid":
        head = ("| method | K | iterations | seconds | MSE after adaptation (after one step; before) |\n"
                "| --- | --- | --- | --- | --- |\n")
        before = lambda r: f" ({r['one_step_mse']:.2f}; {r['pre_mse']:.2f})" if r["pre_mse"] is not None else ""  # noqa: E731
        return head + "".join(f"| {r['method']} | {r['shots']} | {r['iterations']} | {r['seconds']:.0f} | "
                              f"{r['mse'][0]:.3f} ± {r['mse'][1]:.3f}{before(r)} |\n" for r in rows)
    if experiment == "omniglot":
        head = "| method | iterations | seconds | 5-way 1-shot | Lake's 20 runs, 20-way 1-shot |\n| --- | --- | --- | --- | --- |\n"
        return head + "".join(f"| {r['method']} | {r['iterations']} | {r['seconds']:.0f} | {pct(r['5way1shot'])} | "
                              f"{pct(r['lake_20way1shot'])} |\n" for r in rows)
    head = "| method | iterations | seconds | 5-way 1-shot | 5-way 5-shot |\n| --- | --- | --- | --- | --- |\n"
    return head + "".join(f"| {r['method']} | {r['iterations']} | {r['seconds']:.0f} | {pct(r['5way1shot'])} | "
                          f"{pct(r['5way5shot'])} |\n" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*sorted(SETTINGS), "inner-step"])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of meta-training per method")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="what the budget counts: wall-clock or this process's CPU seconds")
    parser.add_argument("--iterations", type=int, default=100000, help="meta-iterations at most per method")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: all of the experiment's)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-meta", help="folder of the runs and results")
    args = parser.parse_args()
    if args.experiment == "inner-step":
        return inner_step(args.out)
    methods = args.methods.split(",") if args.methods else list(SETTINGS[args.experiment])
    out = args.out / args.experiment
    rows = []
    runs = [(m, k) for m in methods for k in SHOTS[args.experiment]] if args.experiment == "sinusoid" else \
        [(m, SHOTS[args.experiment][0]) for m in methods]
    for method, shots in runs:
        rows.append(row(args.experiment, method, args.budget, args.clock, out, args.iterations, shots))
        print(json.dumps(rows[-1]), flush=True)
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    write_json(out / "meta.json", {"machine": machine, "budget": args.budget, "clock": args.clock, "rows": rows})
    write_text(out / "meta.md", table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
