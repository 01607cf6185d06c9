"""The report's "Attributions" section: for a few test examples per task, what the prediction rests on (images:
Integrated Gradients and Grad-CAM over the input; tables: each task's global importance and the top columns;
texts: each token shaded by its attribution; numeric sequences: each step's attribution under the values).

Computed at report time, batched and bounded (a handful of examples, IG's default steps), or read from what
`hydranet explain` already wrote into the run (`--global`'s importance.csv, a text explanation's tokens.csv).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hydranet.data.info import SEQUENCE, TEXT
from hydranet.errors import UserError
from hydranet.explain import images, sequences, tables, texts
from hydranet.explain.core import Explained, Settings, explain_batch
from hydranet.explain.methods import completeness_bound
from hydranet.explain.run import SUMMARY, drawn
from hydranet.report.context import RunContext, section
from hydranet.report.page import escape, figure, figures, note, plt, table
from hydranet.report.split_sections import predicted_and_label

IMAGE_EXAMPLES = 4  # test images per task: a task's figure takes half the page's width
ONE_TASK_EXAMPLES = 8  # a run with one task has the whole width
TABLE_EXAMPLES = 4  # test rows per task whose top columns are listed
SEQUENCE_EXAMPLES = 4  # test sequences per task: a column of the task's figure each
GLOBAL_EXAMPLES = 200  # test rows averaged into a table run's global importance (as `hydranet explain --global`)
TOP_COLUMNS = 3  # columns named per example row
IMPORTANCE_BARS = 12  # columns drawn per task in the importance figure
IMAGE_METHODS = {"integrated_gradients": "IG", "gradcam": "Grad-CAM"}


@section("attributions", "Attributions (test)", order=95)
def attributions(ctx: RunContext) -> str:
    """What a few test predictions of each task rest on. Where none can be computed (a pretraining run has no
    heads) the UserError saying why is the section's one line."""
    started = time.perf_counter()
    kind = ctx.loaded.info.kind
    body = (_images(ctx) if ctx.loaded.info.is_image else _texts(ctx) if kind == TEXT
            else _sequences(ctx) if kind == SEQUENCE else _tables(ctx))
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
        if explained is None:  # no method could explain this task: the notes say why
            continue
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
    return predicted_and_label(ctx.test, task, rows)


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


def _attributed_tasks(ctx: RunContext) -> tuple[list[str], list[str]]:
    """(the tasks attributed, the notes of those left out: per-pixel tasks have no attributions yet)."""
    run = ctx.loaded
    dense = [name for name, spec in run.tasks.items() if spec.dense]
    return ([name for name in run.tasks if name not in dense],
            [f"{', '.join(dense)}: per-pixel tasks have no attributions yet"] if dense else [])


def _test_examples(ctx: RunContext, count: int) -> tuple[Tensor, Tensor]:
    """(positions in the test split, model inputs) of up to `count` examples a text or sequence run's section
    explains: drawn as `hydranet explain RUN --split test --n N` draws them."""
    run = ctx.loaded
    x = ctx.dataset.split("test")["x"]
    pick = drawn(run, min(count, len(x)), len(x))
    return pick, x[pick]


def _within(e: Explained) -> str:
    """How many of IG's examples meet the completeness bound, as "k of n"."""
    return f"{int((e.delta.abs() <= completeness_bound(e.gap)).sum())} of {len(e.delta)}"


def _completeness(e: Explained) -> str:
    return (f"<p class='muted'>completeness: the attributions of {_within(e)} examples add up to f(x) − f(baseline) "
            f"within the 1% bound</p>")


def _texts(ctx: RunContext) -> str:
    """Per task, each explained test text's tokens shaded by attribution: read from the newest tokens.csv that
    `hydranet explain RUN --task T` wrote into the run, else Integrated Gradients of a few test texts here."""
    run = ctx.loaded
    tasks, notes = _attributed_tasks(ctx)
    pick, x = _test_examples(ctx, ONE_TASK_EXAMPLES if len(run.tasks) == 1 else IMAGE_EXAMPLES)
    ids = [f"test[{i}]" for i in pick.tolist()]
    settings = _settings("integrated_gradients")
    parts = [f"<p>Token attributions per task: a token's is the sum over its embedding vector; red raises the "
             f"explained score, blue lowers it, scaled per text (the share of the text's largest on hover). Computed "
             f"here: Integrated Gradients ({settings.steps} steps from every token's embedding at zero, [CLS] and "
             f"padding kept) of {len(pick)} test texts drawn as <code>hydranet explain RUN --split test --n "
             f"{len(pick)}</code> draws them, for each task's predicted class (or its one output); a task that "
             f"<code>hydranet explain</code> explained in the run is shown from its tokens.csv instead.</p>"]
    for task in tasks:
        saved = _saved_tokens(ctx.path, task)
        if saved is not None:
            parts.append(_saved_token_block(ctx, task, *saved))
            continue
        e = explain_batch(run, x, task, settings)
        tokens = texts.token_table(run.info, x, e.values, ids, e.target.names)
        captions = [f"{i} (row {int(ctx.dataset.index['test'][r])}) · predicted {p} · label {t} · explaining the "
                    f"{target}" for i, r, (p, t), target in zip(ids, pick.tolist(), _predictions(ctx, task, pick),
                                                                 e.target.names)]
        parts.append(f"<h3>{escape(task)} · Integrated Gradients of {len(pick)} test texts</h3>"
                     + _token_lines(tokens, captions) + _completeness(e))
    return "".join(parts) + "".join(note(n) for n in notes)


def _token_lines(tokens: pd.DataFrame, captions: list[str]) -> str:
    """One caption and one line of shaded tokens per example, in the table's order."""
    return "".join(f"<p class='muted'>{escape(caption)}</p><p class='tokens'>{texts.token_spans(rows)}</p>"
                   for (_, rows), caption in zip(tokens.groupby("input", sort=False), captions))


def _saved_tokens(path: Path, task: str) -> tuple[Path, dict] | None:
    """(tokens.csv, its explanation.json) of the newest text explanation of `task` in RUN/explain, if any."""
    found = []
    for tokens in (path / "explain").glob("*/tokens.csv"):
        try:
            summary = json.loads((tokens.parent / SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not (or no longer) a whole explanation: explain writes its folder atomically
        if isinstance(summary, dict) and summary.get("tasks") == [task]:
            found.append((tokens.stat().st_mtime, tokens, summary))
    return max(found, key=lambda item: item[0])[1:] if found else None


def _saved_token_block(ctx: RunContext, task: str, path: Path, summary: dict) -> str:
    """A saved tokens.csv as shaded lines, captioned with each input, its prediction and label when it is a test
    example of the run (`--split test`), and the score explained."""
    try:
        tokens = pd.read_csv(path, keep_default_na=False, dtype={"input": str, "token": str, "target": str})
        missing = [c for c in ("input", "target", "token", "attribution") if c not in tokens.columns]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
        tokens["attribution"] = pd.to_numeric(tokens["attribution"])
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not the tokens.csv of `hydranet explain` ({type(err).__name__}: {err})") from err
    split = summary.get("source") == "test split"
    captions = []
    for name, rows in tokens.groupby("input", sort=False):
        index = re.fullmatch(r"test\[(\d+)\]", name) if split else None
        answer = ""
        if index is not None and int(index.group(1)) < len(ctx.dataset.index["test"]):
            predicted, label = _predictions(ctx, task, torch.tensor([int(index.group(1))]))[0]
            answer = f" · predicted {predicted} · label {label}"
        captions.append(f"{name}{answer} · explaining the {rows['target'].iloc[0]}")
    relative = path.relative_to(ctx.path)
    return (f"<h3>{escape(task)} · {escape(summary.get('method', '?'))}, read from {escape(relative)}</h3>"
            + _token_lines(tokens, captions))


def _sequences(ctx: RunContext) -> str:
    """Per task a figure: a few test sequences' values over their steps, each step's attribution (IG) below."""
    run = ctx.loaded
    tasks, notes = _attributed_tasks(ctx)
    pick, x = _test_examples(ctx, SEQUENCE_EXAMPLES)
    ids = [f"test[{i}]" for i in pick.tolist()]
    settings = _settings("integrated_gradients")
    panels, checks = [], []
    for task in tasks:
        e = explain_batch(run, x, task, settings)
        steps = sequences.step_table(run.info, x, e.values, ids, e.target.names)
        captions = [f"{i}\npredicted {_short(p)}\nlabel {_short(t)}"
                    for i, (p, t) in zip(ids, _predictions(ctx, task, pick))]
        panels.append(_sequence_figure(run.info, task, steps, captions))
        checks.append(f"{escape(task)} {_within(e)}")
    intro = (f"<p>{len(pick)} test sequences drawn as <code>hydranet explain RUN --split test --n {len(pick)}</code> "
             f"draws them, explained for each task's predicted class (or its one output): Integrated Gradients "
             f"({settings.steps} steps from every feature at its train mean, padding kept). Top: the features' values; "
             f"bottom: each step's attribution, summed over the features (red raises the score, blue lowers it).</p>")
    return (intro + figures(panels) + f"<p class='muted'>completeness (examples whose attributions add up to "
            f"f(x) − f(baseline) within the 1% bound): {'; '.join(checks)}</p>"
            + "".join(note(n) for n in notes))


def _sequence_figure(info, task: str, steps: pd.DataFrame, captions: list[str]) -> str:
    names = sequences.feature_names(info)
    groups = list(steps.groupby("input", sort=False))
    fig, axes = plt.subplots(2, len(groups), figsize=(2.3 * len(groups) + 0.6, 4.0), dpi=100, squeeze=False,
                             sharex="col")
    for col, ((_, rows), caption) in enumerate(zip(groups, captions)):
        sequences.plot_example(axes[0][col], axes[1][col], rows, names, caption)
    fig.suptitle(task, fontsize=10)
    return figure(fig, f"{task}: columns are test sequences (prediction, label)", f"attributions of {task}")
