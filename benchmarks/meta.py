"""Meta-learning benchmark: every method at one wall-clock budget of meta-training, then scored on new tasks.

- sinusoid (Finn et al. 2017, section 5.1): post-adaptation MSE on 600 new tasks at K = 5 and K = 10 support
  points (models meta-trained with K = 10), and the pre-adaptation MSE of the same weights for the gradient methods;
- omniglot: 5-way 1-shot accuracy on 600 episodes of Lake's evaluation characters and accuracy over his 20
  official 20-way 1-shot runs, each ± a 95% confidence interval over episodes (runs).

Every method gets the same `--budget` seconds of meta-training (meta-validation excluded); the table says how many
meta-iterations that bought. Prints one JSON line per row and writes <out>/meta.json and <out>/meta.md.

    python benchmarks/meta.py sinusoid --budget 60
    python benchmarks/meta.py omniglot --budget 120 --methods protonet,maml
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hydranet.config import load_config  # noqa: E402
from hydranet.files import write_json, write_text  # noqa: E402
from hydranet.meta import loop  # noqa: E402
from hydranet.meta.evaluate import evaluate_run, read_parameters  # noqa: E402
from hydranet.meta.setup import build  # noqa: E402
from hydranet.randomness import Purpose, stream  # noqa: E402
from hydranet.rundir import RunDir  # noqa: E402

OMNIGLOT = str(ROOT.parent / "shared" / "data" / "omniglot")
GRADIENT = {"maml", "fomaml", "anil", "reptile"}
# Per-method settings on top of the experiment: ProtoNets and the baseline train on 20-way episodes, the gradient
# methods on the 5-way episodes they are tested on (one head output per class); values from the papers where
# they fit this CPU (MAML Omniglot: inner lr 0.4, 1 step in training, 3 at test).
FIVE_WAY = ["meta.train_ways=null", "meta.meta_batch=4"]  # 5-way training episodes, 4 per meta-batch
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
        "maml": ["meta.method={name: maml, inner_lr: 0.4, eval_steps: 3}", *FIVE_WAY],
        "fomaml": ["meta.method={name: fomaml, inner_lr: 0.4, eval_steps: 3}", *FIVE_WAY],
        "anil": ["meta.method={name: anil, inner_lr: 0.4, eval_steps: 3}", *FIVE_WAY],
        "reptile": ["meta.method={name: reptile, inner_steps: 5, inner_lr: 0.1, eval_steps: 10}", *FIVE_WAY],
        "finetune": ["meta.method=finetune", "meta.train_ways=20", "meta.meta_batch=1"],
    },
}


def pre_adaptation_mse(run_dir: Path, shots: int) -> float | None:
    """MSE of the meta-learned weights before any inner step (the gradient methods only)."""
    cfg = RunDir.open(run_dir).read_config()
    if cfg.meta.method.name not in GRADIENT:
        return None
    setup = build(cfg)
    params = read_parameters(RunDir.open(run_dir), setup)
    tasks = setup.sample(None, 600, 0, shots, cfg.meta.queries, stream(cfg.seed, Purpose.META_EVAL))
    with torch.no_grad():
        return setup.problem.score(setup.method.loop.predict(params, tasks, steps=0), tasks.query_y).mean().item()


def row(experiment: str, method: str, budget: float, out: Path, iterations: int) -> dict:
    overrides = [*SETTINGS[experiment][method], f"meta.time_budget={budget}", f"meta.iterations={iterations}",
                 "meta.eval_every=1000000", "train.progress=false"]
    if experiment == "omniglot":
        overrides.append(f"meta.path={OMNIGLOT}")
    run = loop.train(load_config(experiment, overrides), out / method, progress=False)
    result = {"experiment": experiment, "method": method, "iterations": run.summary["iterations"],
              "seconds": run.summary["seconds"]}
    if experiment == "sinusoid":
        for shots in (5, 10):
            scored = evaluate_run(run.dir, 0, shots, 600)
            result[f"mse_k{shots}"] = [scored["mean"], scored["ci95"]]
            result[f"pre_mse_k{shots}"] = pre_adaptation_mse(run.dir, shots)
    else:
        scored = evaluate_run(run.dir, 5, 1, 600)
        result["5way1shot"] = [scored["mean"], scored["ci95"]]
        lake = scored.get("lake_runs")  # a method with a 5-way head cannot take 20-way runs
        result["lake_20way1shot"] = [lake["mean"], lake["ci95"]] if lake else None
    return result


def table(rows: list[dict]) -> str:
    if rows[0]["experiment"] == "sinusoid":
        head = "| method | iterations | seconds | MSE K=5 (pre) | MSE K=10 (pre) |\n| --- | --- | --- | --- | --- |\n"
        cell = lambda r, k: f"{r[f'mse_k{k}'][0]:.3f} ± {r[f'mse_k{k}'][1]:.3f}" + (  # noqa: E731
            f" ({r[f'pre_mse_k{k}']:.2f})" if r[f"pre_mse_k{k}"] is not None else "")
        return head + "".join(f"| {r['method']} | {r['iterations']} | {r['seconds']:.0f} | {cell(r, 5)} | {cell(r, 10)} |\n"
                              for r in rows)
    head = "| method | iterations | seconds | 5-way 1-shot | Lake's 20 runs, 20-way 1-shot |\n| --- | --- | --- | --- | --- |\n"
    pct = lambda pair: f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}%" if pair else "— (5-way head)"  # noqa: E731
    return head + "".join(f"| {r['method']} | {r['iterations']} | {r['seconds']:.0f} | {pct(r['5way1shot'])} | "
                          f"{pct(r['lake_20way1shot'])} |\n" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=sorted(SETTINGS))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of meta-training per method")
    parser.add_argument("--iterations", type=int, default=100000, help="meta-iterations at most per method")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: all of the experiment's)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-meta", help="folder of the runs and results")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else list(SETTINGS[args.experiment])
    out = args.out / args.experiment
    rows = []
    for method in methods:
        rows.append(row(args.experiment, method, args.budget, out, args.iterations))
        print(json.dumps(rows[-1]), flush=True)
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    write_json(out / "meta.json", {"machine": machine, "budget": args.budget, "rows": rows})
    write_text(out / "meta.md", table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
