"""drift.png: reference against new distributions of the most drifted features, one small panel each.

matplotlib's `Figure` without pyplot: no global figure state and no GUI backend (Agg renders the PNG). Fixed margins
instead of tight_layout, which measured every tick label and took most of a report's time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hydranet.monitor.drift import format_score

SHOWN_CATEGORIES = 10  # bars per categorical feature
PLOT_BINS = 40  # bins per numeric feature


def drift_figure(results: list[dict[str, Any]], summaries: dict[str, dict[str, Any]], current: pd.DataFrame) -> Figure:
    """Small multiples, one panel per result of `frame_drift`/`summary_drift` (their order), titled with its
    score: the reference's and the new data's share per histogram bin or per category."""
    cols = min(3, len(results))
    rows = (len(results) + cols - 1) // cols
    fig = Figure(figsize=(4 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, result in zip(axes.flat, results):
        name = result["feature"]
        summary, values = summaries[name], current[name].dropna()
        if summary["kind"] == "categorical":
            _categories(ax, summary, values)
        elif summary.get("histogram"):
            _histogram(ax, summary, values)
        ax.set_title(f"{name}: {format_score(result)}{' DRIFT' if result['drift'] else ''}", fontsize=9,
                     color="tab:red" if result["drift"] else "black")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.3 / rows, top=1 - 0.1 / rows, wspace=0.25, hspace=0.9)
    return fig


def _categories(ax: Any, summary: dict[str, Any], values: pd.Series) -> None:
    """Side-by-side bars of the shares of the most common categories of both."""
    ref = pd.Series(summary["frequencies"], dtype=float)
    ref = ref / max(ref.sum(), 1.0)
    cur = values.astype(str).value_counts(normalize=True)
    keys = list(ref.add(cur, fill_value=0).sort_values(ascending=False).index[:SHOWN_CATEGORIES])
    pos = np.arange(len(keys))
    ax.bar(pos - 0.2, ref.reindex(keys, fill_value=0), 0.4, label="reference", color="C0", alpha=0.5)
    ax.bar(pos + 0.2, cur.reindex(keys, fill_value=0), 0.4, label="new", color="C1")
    ax.set_xticks(pos, keys, rotation=45, ha="right", fontsize=7)


def _histogram(ax: Any, summary: dict[str, Any], values: pd.Series) -> None:
    """Shares per bin over the range of both (PLOT_BINS bins): the reference's stored histogram re-binned (each
    stored bin counted at its centre), so a shift beyond the training range shows where it went."""
    stored = np.asarray(summary["histogram"]["edges"])
    centres, counts = (stored[:-1] + stored[1:]) / 2, np.asarray(summary["histogram"]["counts"], dtype=float)
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    low, high = min(stored[0], numbers.min(initial=stored[0])), max(stored[-1], numbers.max(initial=stored[-1]))
    edges = np.linspace(low, high, PLOT_BINS + 1)
    ref_counts = np.histogram(centres, bins=edges, weights=counts)[0]
    cur_counts = np.histogram(numbers, bins=edges)[0].astype(float)
    ax.stairs(ref_counts / max(ref_counts.sum(), 1.0), edges, label="reference", fill=True, alpha=0.5)
    ax.stairs(cur_counts / max(cur_counts.sum(), 1.0), edges, label="new", linewidth=1.5)
