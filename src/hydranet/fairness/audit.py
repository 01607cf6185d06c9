"""`hydranet audit`: a trained run's predictions on one split, compared across the groups of its sensitive columns,
per task; written as audit.json, audit.md and audit.png.

Per-group metrics come from Fairlearn's `MetricFrame`, summary numbers from Fairlearn's own functions on the same
predictions; their 95% intervals from bootstrap resamples of the split (seeded by Purpose.AUDIT; metrics.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.fairness.groups import check_groups, group_table, sensitive_columns
from hydranet.fairness.metrics import Scored, audit_for, bootstrap
from hydranet.fairness.threshold import split_decisions
from hydranet.files import make_dir, write_figure, write_json, write_text
from hydranet.randomness import Purpose, numpy_stream
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.run import Run
from hydranet.tasks import refuse_dense

SPLITS = ("train", "val", "test")


def audit_run(run: Run, sensitive: list[str] | None = None, split: str = "test",
              out_dir: str | Path | None = None) -> dict[str, Any]:
    """The audit of every task of `run` on `split` across the groups of `sensitive` (default: the run's
    `fairness.sensitive`); writes audit.json, audit.md and audit.png to `out_dir` when given."""
    refuse_dense(run.tasks, "hydranet audit")
    cfg, fairness = run.config, run.config.fairness
    if split not in SPLITS:
        raise UserError(f"--split: {split!r} is not a split (expected {', '.join(SPLITS)})")
    columns = sensitive_columns(cfg, sensitive)
    data = build_dataset(cfg)
    index = data.index[split].numpy()
    if len(index) == 0:
        raise UserError(f"--split: the {split} split of this run is empty")
    chosen = list(columns)
    groups = group_table(fairness, {k: v[index] for k, v in columns.items()}, chosen)
    warnings = [w for attribute, labels in groups.items()
                for w in check_groups(attribute, labels, f"the {split} split", fairness.min_group_size)]
    x = data.split(split)["x"]
    outputs = predict_batches(run.model, x, *eval_settings(cfg.train))
    decisions, constraint = split_decisions(run, data, split, outputs)
    trained = [] if fairness.mitigation.name in ("none", "threshold") else (fairness.tasks or list(run.tasks))
    mitigated = list(dict.fromkeys([*trained, *decisions]))
    rng = numpy_stream(cfg.seed, Purpose.AUDIT)
    tasks: dict[str, Any] = {}
    for name, task in run.tasks.items():
        audit = audit_for(task.spec)
        if audit is None:
            warnings.append(f"task {name!r} ({task.kind}) is not audited: the audit knows binary, classification "
                            f"and regression tasks")
            continue
        target = data.targets[name][index]
        labelled = task.spec.labeled(target).numpy()
        scored = audit.scored(task, target[labelled].numpy(), outputs[name].cpu()[labelled])
        if name in decisions:  # the thresholds' decision replaces logit > 0; ROC-AUC still ranks the scores
            scored.y_pred = decisions[name][labelled]
        tasks[name] = {"kind": task.kind, "examples": int(labelled.sum()), "unlabelled": int((~labelled).sum()),
                       "mitigated": name in mitigated, "plotted": list(audit.plotted),
                       "attributes": {a: audit_attribute(audit, scored, labels[labelled], fairness.bootstrap, rng)
                                      for a, labels in groups.items()}}
    report = {"run": str(run.dir), "split": split, "examples": len(index), "sensitive": chosen,
              "mitigation": cfg.fairness.mitigation.model_dump(), "mitigated_tasks": mitigated,
              "thresholds": constraint,
              "bootstrap": fairness.bootstrap, "seed": cfg.seed, "warnings": warnings, "tasks": tasks}
    if out_dir is not None:
        out = make_dir(out_dir)
        write_json(out / "audit.json", report)
        write_text(out / "audit.md", audit_markdown(report))
        plot_audit(report, out / "audit.png")
    return report


def audit_attribute(audit: type, scored: Scored, labels: np.ndarray, resamples: int,
                    rng: np.random.Generator) -> dict[str, Any]:
    """Per-group metrics (Fairlearn's MetricFrame) and summaries (Fairlearn's functions) with bootstrap intervals."""
    import fairlearn.metrics as fl  # lazy: fairlearn loads pandas' plotting stack; only the audit needs it

    metrics = audit.frame_metrics(fl)
    extra = {"roc_auc": {"score": scored.score}} if "roc_auc" in metrics else None
    frame = fl.MetricFrame(metrics=metrics, y_true=scored.y_true, y_pred=scored.y_pred, sensitive_features=labels,
                           sample_params=extra)
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    drawn = bootstrap(audit, scored, codes, len(names), resamples, rng)
    summary = {}
    for name, value in audit.fairlearn_summary(fl, scored, labels, frame).items():
        low, high = (np.nanpercentile(drawn[name], [2.5, 97.5]) if resamples and np.isfinite(drawn[name]).any()
                     else (math.nan, math.nan))
        summary[name] = {"value": number(value), "low": number(low), "high": number(high)}
    groups = {str(g): {m: number(v) for m, v in row.items()} for g, row in frame.by_group.iterrows()}
    return {"overall": {m: number(v) for m, v in frame.overall.items()}, "groups": groups, "summary": summary}


def number(value: Any) -> float | int | None:
    """A metric as JSON: counts as int, NaN (undefined, e.g. ROC-AUC of a one-label group) as null."""
    value = float(value)
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def audit_markdown(report: dict[str, Any]) -> str:
    """audit.md: per task and attribute, the summary with intervals and the per-group table."""
    mitigation = report["mitigation"]["name"]
    lines = [f"# Fairness audit of {report['run']}", "",
             f"Split {report['split']} ({report['examples']} examples); sensitive: {', '.join(report['sensitive'])}; "
             f"mitigation: {mitigation}"
             + (f", thresholds ({report['thresholds']})" if report["thresholds"] else "")
             + (f" on {', '.join(report['mitigated_tasks'])}" if report["mitigated_tasks"] else "")
             + f"; 95% intervals from {report['bootstrap']} bootstrap resamples (seed {report['seed']}).", ""]
    lines += [f"- warning: {w}" for w in report["warnings"]] + ([""] if report["warnings"] else [])
    for task, result in report["tasks"].items():
        state = "mitigated" if result["mitigated"] else "not mitigated"
        lines += [f"## {task} ({result['kind']}, {state}, {result['examples']} labelled examples)", ""]
        for attribute, found in result["attributes"].items():
            lines += [f"### {attribute}", "", "| summary | value | 95% interval |", "| --- | --- | --- |"]
            lines += [f"| {name} | {fmt(s['value'])} | {fmt(s['low'])} – {fmt(s['high'])} |"
                      for name, s in found["summary"].items()]
            metrics = list(found["overall"])
            lines += ["", "| group | " + " | ".join(metrics) + " |", "| --- " * (len(metrics) + 1) + "|"]
            for group, row in [*found["groups"].items(), ("(all)", found["overall"])]:
                lines.append(f"| {group} | " + " | ".join(fmt(row[m]) for m in metrics) + " |")
            lines.append("")
    return "\n".join(lines)


def fmt(value: float | int | None) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def plot_audit(report: dict[str, Any], path: Path) -> None:
    """audit.png: one row per task, one panel per attribute, bars of the kind's main per-group rates."""
    import matplotlib  # lazy: matplotlib takes a second to load; only a written audit draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    tasks = report["tasks"]
    attributes = report["tasks"][next(iter(tasks))]["attributes"] if tasks else {}
    if not tasks or not attributes:
        return
    fig, axes = plt.subplots(len(tasks), len(attributes), figsize=(4.5 * len(attributes), 3.2 * len(tasks)),
                             squeeze=False)
    for row, (task, result) in enumerate(tasks.items()):
        plotted = result["plotted"]
        for col, (attribute, found) in enumerate(result["attributes"].items()):
            ax, names = axes[row][col], list(found["groups"])
            width = 0.8 / len(plotted)
            for k, metric in enumerate(plotted):
                values = [found["groups"][g][metric] or 0.0 for g in names]
                ax.bar(np.arange(len(names)) + k * width, values, width, label=metric)
            ax.set_xticks(np.arange(len(names)) + width * (len(plotted) - 1) / 2, names, rotation=30, ha="right",
                          fontsize=7)
            ax.set_title(f"{task} by {attribute}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    write_figure(path, fig)
    plt.close(fig)
