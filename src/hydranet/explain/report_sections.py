"""The report's "Attributions" section: for a few test examples per task, what the prediction rests on (images:
Integrated Gradients and Grad-CAM over the input; tables: each task's global importance and the top columns).

Computed at report time, batched and bounded (a handful of examples, IG's default steps), or read from the
`hydranet explain --global` output already in the run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from hydranet.errors import UserError
from hydranet.explain import images, tables
from hydranet.explain.core import Explained, Settings, explain_batch
from hydranet.explain.run import drawn
from hydranet.report.context import RunContext, section
from hydranet.report.page import escape, figure, figures, note, plt, table
from hydranet.report.split_sections import truth_column

IMAGE_EXAMPLES = 4  # test images per task: a task's figure takes half the page's width
ONE_TASK_EXAMPLES = 8  # a run with one task has the whole width
TABLE_EXAMPLES = 4  # test rows per task whose top columns are listed
GLOBAL_EXAMPLES = 200  # test rows averaged into a table run's global importance (as `hydranet explain --global`)
TOP_COLUMNS = 3  # columns named per example row
IMPORTANCE_BARS = 12  # columns drawn per task in the importance figure
IMAGE_METHODS = {"integrated_gradients": "IG", "gradcam": "Grad-CAM"}


@section("attributions", "Attributions (test)", order=95)
def attributions(ctx: RunContext) -> str:
    """What a few test predictions of each task rest on. Where none can be computed (a pretraining run has no
    heads) the UserError saying why is the section's one line."""
    started = time.perf_counter()
    body = _images(ctx) if ctx.loaded.info.is_image else _tables(ctx)
    return body + f"<p class='muted'>computed in {time.perf_counter() - started:.1f} s</p>"


def _settings(method: str) -> Settings:
    """`hydranet explain`'s defaults (IG: 50 steps from the zeros baseline; Grad-CAM: the last conv block)."""
    return Settings(method=method)


def _images(ctx: RunContext) -> str:
    """Per task a figure: the examples as columns, the input and each method's heat over it as rows."""
    run, test = ctx.loaded, ctx.test
    count = ONE_TASK_EXAMPLES if len(run.tasks) == 1 else IMAGE_EXAMPLES
    pick = drawn(run, min(count, len(test.stored)), len(test.stored))
    x = ctx.dataset.split("test")["x"][pick]
    raw = images.raw_images(run.info, x)
    panels, notes = [], []
    for task in run.tasks:
        heats, explained = {}, None
        for method, label in IMAGE_METHODS.items():
            try:
                explained = explain_batch(run, x, task, _settings(method))
                heats[label] = images.heatmaps(explained.values)
            except UserError as err:  # Grad-CAM on a trunk without convolutions: IG alone, and why
                notes.append(f"{label} of {task}: {err}")
        if run.tasks[task].dense:  # the maps themselves are in the dense overlays; here the score explained
            captions = _region_captions(run.tasks[task], explained)
        else:
            captions = [f"{_short(p)}\nlabel {_short(t)}" for p, t in _predictions(ctx, task, pick)]
        panels.append(_image_figure(task, raw, heats, captions))
    steps = _settings("integrated_gradients").steps
    zeros = "the train set's mean colour" if any(run.info.mean) else "a black image"  # the zero model input
    dense = [name for name, spec in run.tasks.items() if spec.dense]
    per_pixel = (f" Per-pixel tasks ({', '.join(dense)}) are explained for one number per image, as "
                 f"<code>hydranet explain</code> does: a class's logits summed over the pixels predicted as it (the "
                 f"most frequent non-background class), the edge logit averaged over the predicted edges, or the "
                 f"depth or the dominant normal component averaged over the image; Grad-CAM at the trunk's last "
                 f"map.") if dense else ""
    intro = (f"<p>{len(pick)} test examples drawn as <code>hydranet explain RUN --split test --n {len(pick)}</code> "
             f"draws them, explained for each task's predicted class (or its one output): Integrated Gradients "
             f"({steps} steps from the zeros baseline, {zeros}) and Grad-CAM (the last convolutional block). "
             f"Heat: |attribution| summed over channels, scaled per example.{per_pixel}</p>")
    return intro + figures(panels) + "".join(note(n) for n in dict.fromkeys(notes))


def _predictions(ctx: RunContext, task: str, rows: Tensor) -> list[tuple[str, str]]:
    """Per example: (the prediction, with its probability for a class task; the label)."""
    test, spec = ctx.test, ctx.test.tasks[task]
    probs = test.probabilities(task)
    if probs is not None:
        p, index = probs[rows].max(-1)
        predicted = [f"{spec.info.classes[int(i)]} {float(q):.0%}" for i, q in zip(index, p)]
    else:
        predicted = [v if isinstance(v, str) else f"{float(v):.3g}" for v in spec.column(test.outputs[task][rows])]
    truth = [v if isinstance(v, str) else f"{v:.3g}" for v in truth_column(test, task, rows)]
    return list(zip(predicted, truth))


def _region_captions(task, explained: Explained) -> list[str]:
    """Per example of a per-pixel task: the score explained, short, and how many pixels it covers."""
    spec, info = task.spec, task.info
    return [f"{_short(spec.explain_score(int(k), info))}\n{'Σ' if spec.explain_sum else 'mean'} of {int(r.sum())} px"
            for k, r in zip(explained.target.index, explained.regions)]


def _short(text: str, width: int = 14) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _image_figure(task: str, raw: np.ndarray, heats: dict[str, np.ndarray], captions: list[str]) -> str:
    grey = raw.shape[-1] == 1
    shown = raw[..., 0] if grey else raw
    fig, axes = plt.subplots(1 + len(heats), len(raw), figsize=(1.1 * len(raw) + 0.5, 1.15 * (1 + len(heats)) + 0.5),
                             dpi=100, squeeze=False)
    for col in range(len(raw)):
        for row, (label, heat) in enumerate([("input", None), *heats.items()]):
            ax = axes[row][col]
            ax.imshow(shown[col], cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
            if heat is not None:
                ax.imshow(heat[col], cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
        axes[0][col].set_title(captions[col], fontsize=7)
    fig.suptitle(task, fontsize=10)
    return figure(fig, f"{task}: columns are test examples (prediction, label)", f"attributions of {task}")


def _tables(ctx: RunContext) -> str:
    """Each task's global importance (read from `hydranet explain --global` output, else IG over test rows) and
    the top columns of a few test rows (IG)."""
    run, data = ctx.loaded, ctx.dataset
    test_x = data.split("test")["x"]
    saved, importance = _saved_importance(ctx.path)
    count = TABLE_EXAMPLES if saved else GLOBAL_EXAMPLES  # rows explained here: a few, or enough for the average
    pick = drawn(run, min(count, len(test_x)), len(test_x))
    train_mean = lambda: data.split("train")["x"].mean(0, keepdim=True)  # noqa: E731 (built only if asked for)
    columns, mask = tables.source_columns(run.info)
    explained = {task: explain_batch(run, test_x[pick], task, _settings("integrated_gradients"), train_mean)
                 for task in run.tasks}
    frames = {task: tables.per_column(e.values, mask, columns) for task, e in explained.items()}
    ig = f"Integrated Gradients ({_settings('integrated_gradients').steps} steps from the mean train row)"
    source = (f"read from {saved}" if saved else
              f"{ig} of {len(pick)} test rows drawn as <code>hydranet explain RUN --split test --global --n "
              f"{len(pick)}</code> draws them")
    parts = [f"<p>Global importance per task: mean |attribution| per source column, {source}. "
             f"The strongest columns of single test rows below: {ig}.</p>",
             _importance_figure(importance if saved else tables.importance(frames))]
    shown = pick[:TABLE_EXAMPLES]
    for task, e in explained.items():
        parts.append(f"<h3>{escape(task)} · top columns of {len(shown)} test rows</h3>"
                     + _top_columns(ctx, task, shown, frames[task].iloc[:len(shown)], e))
    return "".join(parts)


def _saved_importance(path: Path) -> tuple[str | None, pd.DataFrame | None]:
    """The newest importance.csv that `hydranet explain --global` wrote into the run, if any."""
    found = sorted((path / "explain").glob("global-*/importance.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None, None
    try:
        frame = pd.read_csv(found[-1])
    except (OSError, ValueError) as err:
        raise UserError(f"{found[-1]}: not an importance table of `hydranet explain --global` ({err})") from err
    if "column" not in frame:
        raise UserError(f"{found[-1]}: has no `column` column (expected the output of `hydranet explain --global`)")
    return str(found[-1].relative_to(path)), frame


def _importance_figure(importance: pd.DataFrame) -> str:
    tasks = [c for c in importance.columns if c != "column"]
    shown = importance.head(IMPORTANCE_BARS)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks) + 1.2, 0.24 * len(shown) + 1.1), dpi=100,
                             squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        ax.barh(shown["column"][::-1], shown[task][::-1], color="#2f6fb0")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("mean |attribution|", fontsize=8)
        ax.tick_params(labelsize=8)
    more = f" (the top {IMPORTANCE_BARS} of {len(importance)})" if len(importance) > IMPORTANCE_BARS else ""
    return figures([figure(fig, f"source columns by importance{more}", "global importance per task")])


def _top_columns(ctx: RunContext, task: str, rows: Tensor, frame: pd.DataFrame, e: Explained) -> str:
    """row | prediction | label | the TOP_COLUMNS columns with the largest |attribution|, signed."""
    predicted = _predictions(ctx, task, rows)
    out = []
    for k, r in enumerate(rows.tolist()):
        values = frame.iloc[k]
        top = values.reindex(values.abs().sort_values(ascending=False).index[:TOP_COLUMNS])
        out.append((int(ctx.dataset.index["test"][r]), *predicted[k], ", ".join(f"{c} {v:+.3g}" for c, v in top.items()),
                    e.target.names[k]))
    return table(("row", "predicted", "label", f"top {TOP_COLUMNS} columns (+ raises the score)", "score explained"),
                 out)
