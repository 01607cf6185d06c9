"""Report sections of a tuning study folder (what `hydranet tune` writes): the trials, the best trial or the
Pareto front, and the study's plots (history, parameter importances, parallel coordinates, Pareto front).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from hydranet.kinds import higher_is_better
from hydranet.report.context import STUDY_SECTIONS, section
from hydranet.report.page import escape, figures, image, note, table
from hydranet.rundir import RunDir, read_file

COST_OBJECTIVES = ("params", "latency")  # objectives that are not val/<task>/<metric> or val/loss
MAX_TRIAL_ROWS = 60  # the best ones when sorted; the whole table is trials.csv
PLOT_WIDTH = 510  # CSS pixels: two of Optuna's plots side by side in the page's 1044-pixel column
PLOTS = {"importances": "parameter importances (first objective)", "history": "optimization history",
         "pareto": "Pareto front", "parallel": "parallel coordinates"}


class StudyContext:
    """A study folder as its sections see it."""

    def __init__(self, path: Path):
        self.path = path

    def read_csv(self, name: str) -> pd.DataFrame:
        return read_file(self.path / name, "a table written by `hydranet tune`",
                         lambda text: pd.read_csv(io.StringIO(text)))


def is_study(path: Path) -> bool:
    """A study folder holds trials.csv and, unlike a run folder, no config of its own."""
    return (path / "trials.csv").exists() and not RunDir(path).config.exists()


@section("trials", "Trials", order=10, kind=STUDY_SECTIONS)
def trials(ctx: StudyContext) -> str:
    """Every trial's state, objectives and searched values, best first (by the first objective)."""
    frame = ctx.read_csv("trials.csv")
    states = frame["state"].value_counts().to_dict() if "state" in frame else {}
    objectives = [c for c in frame.columns if c.startswith("val/") or c in COST_OBJECTIVES]
    if objectives:
        frame = frame.sort_values(objectives[0], ascending=_lower_is_better(objectives[0]), na_position="last")
    shown = frame.drop(columns=[c for c in ("run_dir", "worker", "error", "interrupted") if c in frame])
    counts = ", ".join(f"{n} {state.lower()}" for state, n in states.items())
    more = f" (the best {MAX_TRIAL_ROWS} shown; all in trials.csv)" if len(frame) > MAX_TRIAL_ROWS else ""
    rows = shown.head(MAX_TRIAL_ROWS).astype(object).where(shown.head(MAX_TRIAL_ROWS).notna(), None).values.tolist()
    return f"<p>{len(frame)} trials: {escape(counts)}{escape(more)}</p>" + table(list(shown.columns), rows)


def _lower_is_better(objective: str) -> bool:
    """The objective's direction as `hydranet tune` defaults it: costs and losses down, other metrics up."""
    return objective in COST_OBJECTIVES or not higher_is_better(objective)


@section("best", "Best trial / Pareto front", order=20, kind=STUDY_SECTIONS)
def best(ctx: StudyContext) -> str:
    """best.yaml (one objective) or pareto.csv (several), as `hydranet tune` chose them."""
    if (ctx.path / "pareto.csv").exists():
        front = ctx.read_csv("pareto.csv")
        rows = front.astype(object).where(front.notna(), None).values.tolist()
        return f"<p>{len(front)} Pareto-optimal trials</p>" + table(list(front.columns), rows)
    text = read_file(ctx.path / "best.yaml", "the best trial's experiment as YAML", str).strip()
    headline = text.splitlines()[0].lstrip("# ") if text.startswith("#") else "the best trial's experiment"
    return (f"<p>{escape(headline)}</p><details><summary class='sub'>best.yaml (train it again with "
            f"<code>hydranet train best.yaml</code>)</summary><pre>{escape(text)}</pre></details>")


@section("study_plots", "Study plots", order=30, kind=STUDY_SECTIONS)
def plots(ctx: StudyContext) -> str:
    """The PNGs `hydranet tune` drew, inlined."""
    found = [(ctx.path / "plots" / f"{name}.png", caption) for name, caption in PLOTS.items()]
    present = [(path, caption) for path, caption in found if path.exists()]
    if not present:
        return note(f"{ctx.path / 'plots'}: no plots (they are written once a trial has completed)")
    return figures(image(path.read_bytes(), caption, caption, width=PLOT_WIDTH) for path, caption in present)
