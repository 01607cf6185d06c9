"""Report sections read from the run's own files: config and provenance, data summary, training curves, metrics,
baselines (baselines.json), multi-task balancing (loss weights, gradient agreement) and adversarial evaluations
(attack-*.json).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hydranet.baseline import by_model
from hydranet.kinds import get_kind, higher_is_better
from hydranet.kinds.info import TaskInfo
from hydranet.report.context import RunContext, read_json, section
from hydranet.report.page import epoch_axis, escape, figure, figures, new_figure, note, series, table
from hydranet.rundir import read_file

SPLITS = ("train", "val", "test")
MAX_CLASS_COLUMNS = 20  # a class-balance table wider than this is unreadable; show the extremes instead


@section("overview", "Run and config", order=10)
def overview(ctx: RunContext) -> str:
    """Where the run came from (run.json) and its resolved config, the file that repeats it."""
    facts: list[tuple[str, Any]] = [("folder", str(ctx.path))]
    if ctx.run.run_json.exists():
        info = ctx.run.read_run_json()
        facts += [(key, info[key]) for key in ("status", "kind", "created", "hydranet", "git_commit", "torch", "machine")
                  if info.get(key) is not None]
    facts += [(key, ctx.summary[key]) for key in ("epochs", "train_seconds", "params", "precision") if key in ctx.summary]
    text = read_file(ctx.run.config, "the run's config as YAML", str)
    return (table(("", ""), facts, show_header=False) + "<details><summary class='sub'>config.yaml (the resolved config)</summary>"
            f"<pre>{escape(text.strip())}</pre></details>")


@section("data", "Data", order=20)
def data_summary(ctx: RunContext) -> str:
    """Examples per split, then per task: labels present and missing per split and, for class tasks, how the
    classes are balanced (a skewed test split changes what accuracy means)."""
    data = ctx.dataset
    parts = [table(("split", "examples"), [(split, len(data.index[split])) for split in SPLITS])]
    for name, info in data.info.tasks.items():
        parts.append(f"<h3>{escape(name)} · {escape(info.kind)}</h3>" + _label_table(ctx, name, info))
    return "".join(parts)


def _label_table(ctx: RunContext, name: str, info: TaskInfo) -> str:
    """labeled | missing | examples per class (as the kind counts classes; none for regression, multilabel)."""
    kind, data = get_kind(info.kind), ctx.dataset
    classes = info.classes if hasattr(kind, "class_index") and info.classes else []
    wide = len(classes) > MAX_CLASS_COLUMNS
    rows = []
    for split in SPLITS:
        target = data.targets[name][data.index[split]]
        labeled = kind.labeled(target)
        labeled = labeled if labeled.ndim == 1 else labeled.any(-1)  # multilabel: a row with any label
        row: list[Any] = [split, int(labeled.sum()), int((~labeled).sum())]
        if classes:
            counts = np.bincount(kind.class_index(target)[labeled].numpy(), minlength=len(classes))
            share = counts / max(1, counts.sum())
            row += ([f"{share.min():.1%} … {share.max():.1%}"] if wide else [f"{c} · {s:.0%}" for c, s in zip(counts, share)])
        rows.append(row)
    header = ["split", "labeled", "missing"] + (["class share (min … max)"] if wide else list(classes))
    return table(header, rows)


@section("curves", "Training curves", order=30)
def curves(ctx: RunContext) -> str | None:
    """Loss per epoch (train and val) and each task's validation metrics: where it over-fit or stalled."""
    history = ctx.history
    if not history:
        return note(f"{ctx.run.metrics}: no epoch recorded yet")
    epochs = [row.get("epoch") for row in history]
    fig, ax = new_figure()
    ax.plot(epochs, series(row.get("train", {}).get("loss") for row in history), marker="o", ms=3, label="train")
    ax.plot(epochs, series(row.get("val_loss") for row in history), marker="o", ms=3, label="val")
    ax.set(ylabel="loss (sum over tasks)", title="loss")
    epoch_axis(ax)
    ax.legend(frameon=False)
    panels = [figure(fig, "summed loss per epoch")]
    for task in history[-1].get("val", {}):
        panels.append(_task_curve(history, epochs, task))
    return figures(panels)


def _task_curve(history: list[dict], epochs: list, task: str) -> str:
    """One task's validation metrics per epoch (loss on its own axis, since its scale differs)."""
    fig, ax = new_figure()
    names = [m for m in history[-1]["val"][task] if m != "loss"]
    for metric in names:
        ax.plot(epochs, series(row.get("val", {}).get(task, {}).get(metric) for row in history), marker="o", ms=3, label=metric)
    ax.set(title=f"{task} · val")
    epoch_axis(ax)
    loss_axis = ax.twinx()
    loss_axis.plot(epochs, series(row.get("val", {}).get(task, {}).get("loss") for row in history), color="0.55",
                   ls="--", label="loss")
    loss_axis.set_ylabel("loss", color="0.45")
    if names:
        ax.legend(frameon=False, fontsize=9)
    return figure(fig, f"{task}: validation metrics (dashed: loss)")


@section("metrics", "Metrics", order=40)
def metrics(ctx: RunContext) -> str:
    """val and test metrics per task from summary.json (the final weights), arrows saying which way is better."""
    summary = ctx.run.read_summary(required=True)
    rows = []
    for task in dict.fromkeys([*summary.get("val", {}), *summary.get("test", {})]):
        names = dict.fromkeys([*summary.get("val", {}).get(task, {}), *summary.get("test", {}).get(task, {})])
        for metric in names:
            arrow = "↑" if higher_is_better(metric) else "↓"
            rows.append((task, f"{metric} {arrow}", *(summary.get(s, {}).get(task, {}).get(metric) for s in ("val", "test"))))
    return table(("task", "metric", "val", "test"), rows)


@section("baselines", "Baselines (test)", order=45)
def baselines(ctx: RunContext) -> str | None:
    """`hydranet baseline`'s boosted trees and linear models beside the run's own test metrics, fitted on the run's
    rows and scored on its test rows (baselines.json): what a table model is judged against first."""
    path = ctx.run.baselines
    if not path.exists():
        return None
    result = read_json(path, "a result of `hydranet baseline` as a JSON object")
    try:
        return _baseline_table(result)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return note(f"{path}: not a result of `hydranet baseline` ({type(err).__name__}: {err}); skipped")


def _baseline_table(result: dict) -> str:
    """One row per task and metric and one of fitting seconds, one column per model (the run first)."""
    models = by_model(result)
    rows = []
    for task in result["tasks"]:
        scores = [fitted.get(task, {}) for fitted in models.values()]
        for metric in dict.fromkeys(m for score in scores for m in score if m != "fit_seconds"):
            arrow = "↑" if higher_is_better(metric) else "↓"
            rows.append((task, f"{metric} {arrow}", *(score.get(metric) for score in scores)))
        rows.append((task, "fit seconds", *(score.get("fit_seconds") for score in scores)))
    skipped = "".join(note(f"{task}: {why}") for task, why in result.get("skipped", {}).items())
    return (table(("task", "metric", *models), rows) +
            f"<p class='muted'>scored on the run's own {len(result['test_rows'])} test rows</p>" + skipped)


@section("balancing", "Multi-task balancing", order=100)
def balancing(ctx: RunContext) -> str | None:
    """The balancer's loss weights and the gradient agreement between tasks per epoch (multi-task runs only):
    a negative cosine is a conflict, the case gradient-surgery balancers exist for."""
    history = ctx.history
    weights = [row.get("weights") or {} for row in history]
    if len({task for w in weights for task in w}) < 2:
        return None
    epochs = [row.get("epoch") for row in history]
    fig, ax = new_figure()
    for task in weights[-1]:
        ax.plot(epochs, series(w.get(task) for w in weights), marker="o", ms=3, label=task)
    ax.set(ylabel="weight", title="loss weights")
    epoch_axis(ax)
    ax.legend(frameon=False, fontsize=9)
    panels = [figure(fig, f"balancer weights ({ctx.config.mtl.balancer.name})")]
    gradients = [row.get("gradients") for row in history]
    if any(gradients):
        panels.append(_gradient_figure(epochs, gradients))
    else:
        panels.append(note("no gradient diagnostics in metrics.jsonl (mtl.diagnostics_every is off)"))
    return figures(panels)


def _gradient_figure(epochs: list, gradients: list[dict | None]) -> str:
    fig, (cosine, conflict) = new_figure(columns=2)
    pairs = next(g for g in gradients if g)["cosine"]
    for pair in pairs:
        label = pair.replace("|", " · ")
        cosine.plot(epochs, series(g["cosine"].get(pair) if g else None for g in gradients), marker="o", ms=3, label=label)
        conflict.plot(epochs, series(g["conflict_rate"].get(pair) if g else None for g in gradients), marker="o", ms=3, label=label)
    cosine.axhline(0, color="0.6", lw=0.8)
    cosine.set(ylabel="mean cosine", title="gradient cosine")
    conflict.set(ylabel="share of steps", title="conflict rate (cosine < 0)", ylim=(-0.02, 1.02))
    for ax in (cosine, conflict):
        epoch_axis(ax)
    cosine.legend(frameon=False, fontsize=8)
    return figure(fig, "agreement of task gradients on the shared parameters, per pair")


@section("attacks", "Adversarial robustness", order=110)
def attacks(ctx: RunContext) -> str | None:
    """Each `hydranet attack` result (attack-<name>.json) as clean vs robust metrics, and each sweep
    (attack-<name>-sweep.json) as robust accuracy against the budget."""
    files = sorted(ctx.path.glob("attack-*.json"))
    if not files:
        return None
    return "".join(_attack_file(path) for path in files)


def _attack_file(path: Any) -> str:
    result = read_json(path, "a result of `hydranet attack` as a JSON object")
    try:
        return _sweep(path.name, result) if "points" in result else _single_attack(path.name, result)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return note(f"{path}: not a result of `hydranet attack` ({type(err).__name__}: {err}); skipped")


def _single_attack(name: str, result: dict) -> str:
    title = (f"{name}: {result['attack']} ε={budget(result['eps'], result['norm'])} ({result['norm']}), {result['steps']} steps, "
             f"{result['examples']} {result['split']} examples")
    rows = []
    for task, clean in result["clean"].items():
        robust = result["robust"].get(task, {})
        rows += [(task, metric, value, robust.get(metric)) for metric, value in clean.items()]
    success = result.get("success_rate")
    text = f"<p class='muted'>attack success rate: {success:.1%}</p>" if isinstance(success, float) else ""
    return f"<h3>{escape(title)}</h3>" + table(("task", "metric", "clean", "under attack"), rows) + text


def budget(eps: float, norm: str) -> str:
    """An L∞ budget in pixel levels as users give it (8/255); any other as a short number."""
    levels = eps * 255
    if norm == "linf" and abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255" if levels else "0"
    return f"{eps:.4g}"


def _sweep(name: str, result: dict) -> str:
    points = result["points"]
    eps = [budget(p["eps"], result["norm"]) for p in points]
    fig, ax = new_figure()
    ax.plot(range(len(eps)), series(p["robust_accuracy"] for p in points), marker="o", label="robust accuracy")
    if result.get("chance") is not None:
        ax.axhline(result["chance"], color="0.6", ls="--", label="chance")
    ax.set_xticks(range(len(eps)), eps)
    ax.set(xlabel=f"ε ({result['norm']})", ylabel="accuracy", title=f"{result['attack']} sweep", ylim=(-0.02, 1.02))
    ax.legend(frameon=False)
    warnings = "".join(note(w) for w in result.get("warnings") or [])
    rows = [(label, p["robust_accuracy"], p.get("success_rate")) for label, p in zip(eps, points)]
    return (f"<h3>{escape(name)}</h3>" + figures([figure(fig, f"{result['examples']} {result['split']} examples"),
                                                  table(("ε", "robust accuracy", "success rate"), rows)]) + warnings)
