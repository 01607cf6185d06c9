"""The report's "Fairness" section: what `hydranet audit` wrote into the run (audit/audit.json and audit.png), as
per task a summary table with the 95% intervals, the per-group metrics, the audit's warnings and its mitigation.
"""

from __future__ import annotations

from typing import Any

from hydranet.fairness.audit import fmt
from hydranet.report.context import RunContext, read_json, section
from hydranet.report.page import escape, image, note, table

AUDIT_FOLDER = "audit"  # where `hydranet audit RUN` writes without -o
FOLDED_WARNINGS = 3  # more warnings than this are folded, so the tables stay in view
WIDE_FIGURE = 1044  # CSS pixels: the page's column, for audit.png (drawn 4.5 inches wide per attribute)


@section("fairness", "Fairness (audit)", order=120)
def fairness(ctx: RunContext) -> str | None:
    """The run's audit when there is one; without it one line saying how to make it (runs with sensitive columns
    configured), or nothing."""
    folder = ctx.path / AUDIT_FOLDER
    path = folder / "audit.json"
    if not path.exists():
        if not ctx.config.fairness.sensitive:
            return None
        return note(f"no audit in {folder}: `hydranet audit {ctx.path}` writes one "
                    f"(sensitive columns {', '.join(ctx.config.fairness.sensitive)})")
    report = read_json(path, "a result of `hydranet audit` as a JSON object")
    try:
        body = _audit(report)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return note(f"{path}: not a result of `hydranet audit` ({type(err).__name__}: {err}); skipped")
    picture = folder / "audit.png"
    if picture.exists():
        body += image(picture.read_bytes(), "per-group rates (audit.png)", "audit per group", width=WIDE_FIGURE)
    return body


def _audit(report: dict[str, Any]) -> str:
    mitigation = report["mitigation"]["name"]
    on = f" on {', '.join(report['mitigated_tasks'])}" if report["mitigated_tasks"] else ""
    head = (f"<p>The {escape(report['split'])} split ({report['examples']} examples) across the groups of "
            f"<b>{escape(', '.join(report['sensitive']))}</b>; mitigation: <b>{escape(mitigation)}</b>{escape(on)}; "
            f"95% intervals from {report['bootstrap']} bootstrap resamples (seed {report['seed']}).</p>")
    parts = [head, _warnings(report["warnings"])]
    for task, result in report["tasks"].items():
        state = "mitigated" if result["mitigated"] else "not mitigated"
        parts.append(f"<h3>{escape(task)} · {escape(result['kind'])} · {state} · {result['examples']} labelled</h3>"
                     + _summary(result["attributes"]) + _groups(result["attributes"]))
    return "".join(parts)


def _warnings(warnings: list[str]) -> str:
    """Each warning a line; many are folded behind their count."""
    if len(warnings) <= FOLDED_WARNINGS:
        return "".join(note(w) for w in warnings)
    lines = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return (f"<details class='note'><summary class='sub'>{len(warnings)} warnings (small groups' numbers are "
            f"unreliable)</summary><ul>{lines}</ul></details>")


def _summary(attributes: dict[str, Any]) -> str:
    """One row per summary number, one column per attribute: value [95% interval]."""
    names = list(dict.fromkeys(name for found in attributes.values() for name in found["summary"]))
    rows = [[name.replace("_", " ")] + [_interval(found["summary"].get(name)) for found in attributes.values()]
            for name in names]
    return table(["summary", *attributes], rows)


def _interval(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "—"
    return f"{fmt(summary['value'])}  [{fmt(summary['low'])}, {fmt(summary['high'])}]"


def _groups(attributes: dict[str, Any]) -> str:
    """Every group's metrics, folded (the summary above is what to read first)."""
    metrics = list(dict.fromkeys(m for found in attributes.values() for m in found["overall"]))
    rows = [[attribute, group, *(row.get(m) for m in metrics)]
            for attribute, found in attributes.items()
            for group, row in [*found["groups"].items(), ("(all)", found["overall"])]]
    return ("<details><summary class='sub'>metrics per group</summary>"
            + table(["attribute", "group", *metrics], rows) + "</details>")
