"""The files of `hydranet bench mtl`: bench.json (everything), bench.md (the table) and bench.png (Δm per method).

Only formatting lives here; the numbers come from `mtl.bench.summarize`.
"""

from __future__ import annotations

import math
from pathlib import Path

from hydranet.files import write_figure, write_json, write_text


def write_report(results: dict, out: Path) -> None:
    write_json(out / "bench.json", results)
    write_text(out / "bench.md", markdown(results))
    plot_delta_m(results, out / "bench.png")


def _pm(stat: dict, digits: int = 4) -> str:
    """`0.9812 ± 0.0031` (the std only when there is more than one seed)."""
    if stat is None or math.isnan(stat["mean"]):
        return "—"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if len(stat["values"]) > 1 else "")


def markdown(results: dict) -> str:
    """The comparison table, with the command, seeds and machine it was measured with."""
    tasks = results["tasks"]
    heads = [f"{t} {v['metric']}" + (" ↓" if v["lower_is_better"] else "") for t, v in tasks.items()]
    lines = [
        f"# MTL benchmark: {results['experiment']}", "",
        f"`{results['command']}`", "",
        f"- seeds: {', '.join(map(str, results['seeds']))}; metrics on the {results['split']} split, mean ± std over seeds",
        f"- machine: {results['machine']}; {results['created']}",
        "- single-task: each task alone (hard sharing, equal); Δm: mean relative change against it over tasks, in %, "
        "sign flipped where lower is better (↓), paired by seed; higher is better",
        "- splits are not stratified, so every run of a seed sees the same train/val/test examples",
        "", "| method | sharing | " + " | ".join(heads) + " | Δm % | time/epoch vs equal |",
        "|---|---|" + "---|" * len(heads) + "---|---|",
        "| single-task | hard | " + " | ".join(_pm(results["baseline"][t]) for t in tasks) + " | 0 | — |",
    ]
    for m in results["methods"]:
        relative = f"{m['time_vs_equal']:.2f}×" if m["time_vs_equal"] else "—"
        cells = [_pm(m["metrics"][t]) for t in tasks] + [_pm(m["delta_m"], 2), relative]
        lines.append(f"| {m['balancer']} | {m['sharing']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_delta_m(results: dict, path: Path) -> None:
    """Horizontal bars of Δm per method with ±std error bars and a line at 0 (the single-task baselines)."""
    import matplotlib

    matplotlib.use("Agg")  # no screen on servers
    import matplotlib.pyplot as plt

    methods = results["methods"]
    labels = [f"{m['balancer']} / {m['sharing']}" for m in methods]
    means = [m["delta_m"]["mean"] for m in methods]
    stds = [m["delta_m"]["std"] for m in methods]
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.4 * len(methods)))
    ax.barh(range(len(methods)), means, xerr=stds, color=["C2" if v >= 0 else "C3" for v in means], capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(methods)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("Δm vs single-task (%, higher is better)")
    ax.set_title(f"{results['experiment']} — {len(results['seeds'])} seed(s), {results['split']} split")
    fig.tight_layout()
    write_figure(path, fig)
    plt.close(fig)
