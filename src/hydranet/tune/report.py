"""What a study leaves in its directory: trials.csv, best.yaml (or pareto.csv and pareto/<trial>.yaml for several
objectives) and plots as PNG (matplotlib) and HTML (plotly, when installed), rewritten after every session.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from hydranet.config import Config, to_yaml, validate
from hydranet.files import make_dir, write_csv, write_figure, write_html, write_text
from hydranet.tune.settings import Settings


@dataclass
class TuneResult:
    """A finished (or interrupted) `tune`: the Optuna study, its directory and what was written there."""

    study: Any
    dir: Path
    objectives: list[str]  # metric names, in the study's order
    best: Config | None = None  # one objective: the best trial's experiment (also in best.yaml)
    pareto: list[int] = field(default_factory=list)  # several objectives: numbers of the Pareto-optimal trials
    files: list[Path] = field(default_factory=list)


def write_report(study: Any, settings: Settings, echo: Callable[[str], None] = print) -> TuneResult:
    """Rewrite the study directory's results from the whole study (every machine's trials, every session)."""
    out = make_dir(settings.dir)
    trials = study.get_trials(deepcopy=False)
    names = [o.name for o in settings.objectives]
    result = TuneResult(study=study, dir=out, objectives=names, files=[out / "trials.csv"])
    write_csv(out / "trials.csv", trials_frame(trials, names))
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        echo(f"no trial of study {settings.study!r} has completed yet; wrote {out / 'trials.csv'}")
        return result
    if len(names) == 1:
        best = study.best_trial
        result.best = validate(best.user_attrs["config"])
        header = f"# best trial {best.number} of study {settings.study!r}: {names[0]} {best.value:.6g}\n"
        write_text(out / "best.yaml", header + to_yaml(result.best))
        result.files.append(out / "best.yaml")
    else:
        front = sorted(study.best_trials, key=lambda t: t.number)
        result.pareto = [t.number for t in front]
        write_csv(out / "pareto.csv", trials_frame(front, names))
        (out / "pareto").mkdir(exist_ok=True)
        for stale in (out / "pareto").glob("trial-*.yaml"):  # the front of an earlier session may have changed
            stale.unlink()
        for t in front:
            header = f"# Pareto-optimal trial {t.number} of study {settings.study!r}: " + ", ".join(
                f"{n} {v:.6g}" for n, v in zip(names, t.values)) + "\n"
            write_text(out / "pareto" / f"trial-{t.number:04d}.yaml", header + to_yaml(validate(t.user_attrs["config"])))
        result.files += [out / "pareto.csv", out / "pareto"]
    result.files += write_plots(study, names, out / "plots", echo)
    echo(f"wrote {', '.join(str(p.relative_to(out)) for p in result.files)} in {out}")
    return result


def trials_frame(trials: list, names: list[str]) -> pd.DataFrame:
    """One row per trial: number, state, each objective by name, each searched key, epochs, seconds, where it ran."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update({n: v for n, v in zip(names, t.values or [None] * len(names))})
        row.update(t.params)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        row.update(epochs=t.user_attrs.get("epochs"), seconds=seconds, run_dir=t.user_attrs.get("run_dir"),
                   worker=t.user_attrs.get("worker"), error=t.user_attrs.get("error"),
                   interrupted=bool(t.user_attrs.get("interrupted")))
        rows.append(row)
    return pd.DataFrame(rows)


def write_plots(study: Any, names: list[str], out: Path, echo: Callable[[str], None]) -> list[Path]:
    """Optimization history, parameter importances and parallel coordinates of the first objective, and the
    Pareto front for two or three objectives: PNG always, HTML when plotly is installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as interactive
    from optuna.visualization import matplotlib as static

    out.mkdir(parents=True, exist_ok=True)
    target = {} if len(names) == 1 else {"target": lambda t: t.values[0]}
    kinds = {"history": ("plot_optimization_history", {**target, "target_name": names[0]}),
             "importances": ("plot_param_importances", {**target, "target_name": names[0]}),
             "parallel": ("plot_parallel_coordinate", {**target, "target_name": names[0]})}
    if len(names) in (2, 3):
        kinds["pareto"] = ("plot_pareto_front", {"target_names": names})
    html = interactive.is_available()
    written = []
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental; degenerate axes warn too
        warnings.simplefilter("ignore")
        for name, (function, kwargs) in kinds.items():
            axes = getattr(static, function)(study, **kwargs)
            figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
            figure.tight_layout()
            write_figure(out / f"{name}.png", figure, dpi=120)
            plt.close(figure)
            written.append(out / f"{name}.png")
            if html:  # one shared plotly.min.js beside the pages: they open offline and stay small
                write_html(out / f"{name}.html", getattr(interactive, function)(study, **kwargs), include_plotlyjs="directory")
                written.append(out / f"{name}.html")
    if not html:
        echo("HTML plots skipped: they need plotly (pip install plotly)")
    return written


def best_table(result: TuneResult) -> Table:
    """The best trial (one objective) or the Pareto front (several): number, objectives, searched values."""
    names = result.objectives
    trials = [result.study.best_trial] if len(names) == 1 else list(result.study.best_trials)
    trials.sort(key=lambda t: t.number)
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    title = "best trial" if len(names) == 1 else f"Pareto front ({len(trials)} trials)"
    table = Table("trial", *names, *keys, title=title)
    for t in trials:
        table.add_row(str(t.number), *(f"{v:.4g}" for v in t.values), *(_cell(t.params.get(k)) for k in keys))
    return table


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
