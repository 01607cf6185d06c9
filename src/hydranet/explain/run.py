"""`hydranet explain` over a run directory: examples from files or drawn from a split, one task's attributions
written as pictures and tables (or, with `global_`, mean |attribution| per column and task) into one folder.

Files: explanation.json (what was explained and how; IG's completeness error), and per kind of input
example-<i>.png with attributions.safetensors (images) or attributions.csv (tables), tokens.csv and tokens.html
(texts), steps.csv and example-<i>.png (numeric sequences), or importance.csv/.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor

from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.data.info import SEQUENCE, TABLE, TEXT
from hydranet.explain import images, sequences, tables, texts
from hydranet.explain.core import Explained, Settings, default_task, explain_batch
from hydranet.explain.methods import COMPLETENESS, NEAR_ZERO_GAP, completeness_bound, get_method
from hydranet.files import atomic_folder, write_csv, write_json, write_tensors
from hydranet.predict import inputs_from_files
from hydranet.randomness import Purpose, stream
from hydranet.rundir import RunDir
from hydranet.train.lifecycle import apply_process_settings
from hydranet.train.run import Run

EXAMPLES = 8  # examples explained from a split by default
GLOBAL_EXAMPLES = 200  # examples averaged by --global by default
SUMMARY = "explanation.json"


def explain_run(run: Run, inputs: Sequence[str | Path] = (), split: str | None = None, task: str | None = None,
                n: int | None = None, out: str | Path | None = None, global_: bool = False,
                settings: Settings | None = None) -> dict[str, Any]:
    """Explain examples of `inputs` (files, as `predict` takes them) or of the run's `split`; write the folder
    `out` (default RUN/explain/<task or global>-<method>) and return what explanation.json holds."""
    started = time.perf_counter()
    run.info.require_image_or_table("hydranet explain", TEXT, SEQUENCE)
    settings = settings or Settings()
    apply_process_settings(run.config)
    if global_ and run.info.kind != TABLE:
        raise UserError(f"--global: global importance is for table runs (per source column); explain "
                        f"{run.info.kind}s one by one")
    tasks = list(run.tasks) if global_ and task is None else [default_task(run, task)]
    method = settings.method_for(run.info.kind)
    get_method(method)  # an unknown name is refused before the data is built
    folder = Path(out) if out is not None else Path(run.dir) / "explain" / f"{'global' if global_ else tasks[0]}-{method}"
    check_folder(folder)
    data = lru_cache(maxsize=1)(lambda: build_dataset(run.config))
    x, ids = examples(run, inputs, split, n, GLOBAL_EXAMPLES if global_ else EXAMPLES, data)
    train_mean = lambda: train_reference(run, data())  # noqa: E731 (built only if asked for)
    explained = {name: explain_batch(run, x, name, settings, train_mean) for name in tasks}
    used = {"method": method, "baseline": settings.baseline_for(run.info.kind)}
    summary = {"run": RunDir(run.dir).identity(), "method": method, "tasks": tasks, "inputs": ids,
               "source": f"{split} split" if split else [str(p) for p in inputs], "settings": asdict(settings) | used,
               "features": explained[tasks[0]].groups,
               "targets": {name: e.target.names for name, e in explained.items()},
               "completeness": {name: completeness(e) for name, e in explained.items() if e.delta is not None}}
    with atomic_folder(folder) as staging:
        if global_:
            write_importance(run, staging, explained, method)
        elif run.info.is_image:
            write_images(run, staging, x, ids, tasks[0], explained[tasks[0]], method, settings.segments)
        elif run.info.kind == TEXT:
            e = explained[tasks[0]]
            table = texts.token_table(run.info, x, e.values, ids, e.target.names)
            texts.write_tokens(staging, table, titles(run, tasks[0], e), method)
        elif run.info.kind == SEQUENCE:
            e = explained[tasks[0]]
            table = sequences.step_table(run.info, x, e.values, ids, e.target.names)
            sequences.write_steps(staging, run.info, table, titles(run, tasks[0], e), method)
        else:
            write_table(run, staging, x, ids, tasks[0], explained[tasks[0]], method)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        write_json(staging / SUMMARY, summary)
    return summary | {"folder": str(folder)}


def train_reference(run: Run, data) -> Tensor:
    """The "mean" baseline: the mean train input (a table's category codes: their most frequent code)."""
    x = data.split("train")["x"]
    return x.mean(0, keepdim=True) if run.info.is_image else tables.train_reference(x, tables.coded_inputs(run.info))


def examples(run: Run, inputs: Sequence[str | Path], split: str | None, n: int | None, default_n: int,
             data) -> tuple[Tensor, list[str]]:
    """Model inputs and their ids: the files given (the first `n`), or `n` examples drawn from `split` at
    random (the EXPLAIN stream of the run's seed), kept in split order."""
    if (split is None) == (not inputs):
        raise UserError("INPUTS: give input files or --split (train, val or test), not both or neither")
    if split is None:
        x, ids = inputs_from_files(run, inputs)
        return (x, ids) if n is None else (x[:n], ids[:n])
    if split not in ("train", "val", "test"):
        raise UserError(f"--split: {split!r} is not a split (expected train, val or test)")
    x = data().split(split)["x"]
    if len(x) == 0:
        raise UserError(f"--split: the {split} split of this run is empty")
    pick = drawn(run, min(n or default_n, len(x)), len(x))
    return x[pick], [f"{split}[{i}]" for i in pick.tolist()]


def drawn(run: Run, count: int, size: int) -> Tensor:
    """`count` of `size` examples drawn at random (the EXPLAIN stream of the run's seed), in split order: the
    examples `hydranet explain --split` and the report's attributions show."""
    return torch.randperm(size, generator=stream(run.config.seed, Purpose.EXPLAIN))[:count].sort().values


def completeness(e: Explained) -> dict[str, Any]:
    """IG's convergence delta δ = Σ attributions − (f(x) − f(baseline)) against its bound (`completeness_bound`),
    summarized and per example: the gap, δ and the steps used. An example whose gap is near zero is held to the
    absolute bound and counted apart, and left out of the largest relative error."""
    error, gap = e.delta.abs(), e.gap.abs()
    relative = gap >= NEAR_ZERO_GAP
    return {"bound": f"|delta| <= {COMPLETENESS:.0%} of |f(x) - f(baseline)|, or <= {COMPLETENESS * NEAR_ZERO_GAP:g} "
                     f"where |f(x) - f(baseline)| < {NEAR_ZERO_GAP:g}",
            "within_bound": int((error <= completeness_bound(e.gap)).sum()), "examples": len(error),
            "near_zero_gaps": int((~relative).sum()), "max_abs_delta": float(error.max()),
            "max_relative_delta": float((error / gap)[relative].max()) if relative.any() else None,
            "gap": e.gap.tolist(), "delta": e.delta.tolist(), "steps": e.steps.tolist()}


def titles(run: Run, task: str, e: Explained) -> list[str]:
    """Per example: the task's prediction as `predict` writes it, the probability of a predicted class, and the
    score explained (a per-pixel task's map is drawn by `hydranet predict`: the score names its region)."""
    spec = run.tasks[task].spec
    if run.tasks[task].dense:
        return [f"{task}: explaining the {name}" for name in e.target.names]
    column = run.tasks[task].column(e.scores[:, 0] if spec.squeeze else e.scores)
    probs = e.scores.softmax(1).amax(1) if spec.class_scores else None
    out = []
    for i, value in enumerate(column):
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        p = f" (p={float(probs[i]):.2f})" if probs is not None else ""
        out.append(f"{run.tasks[task].column_name} = {shown}{p}; explaining the {e.target.names[i]}")
    return out


def write_images(run: Run, folder: Path, x: Tensor, ids: list[str], task: str, e: Explained, method: str,
                 segmentation: str) -> None:
    """example-<i>.png per example (grouped methods: the groups' boundaries drawn on the input; per-pixel tasks: the
    explained region's outline on the heatmap), and the attributions with their inputs, groups and regions
    (safetensors)."""
    raw, heat = images.raw_images(run.info, x), images.heatmaps(e.values)
    segments = None if e.segments is None else e.segments.numpy()
    regions = None if e.regions is None else e.regions.numpy()
    name = "superpixels" if segmentation == "slic" else "patches"
    for i, title in enumerate(titles(run, task, e)):
        images.plot_example(folder / f"example-{i}.png", raw[i], heat[i], f"{ids[i]}\n{title}", method,
                            None if segments is None else segments[i], name, None if regions is None else regions[i])
    tensors = {"attributions": e.values.contiguous(), "inputs": x.detach().cpu().contiguous()}
    if e.segments is not None:
        tensors["segments"] = e.segments.contiguous()
    if e.regions is not None:
        tensors["regions"] = e.regions.to(torch.uint8).contiguous()
    write_tensors(folder / "attributions.safetensors", tensors)


def write_table(run: Run, folder: Path, x: Tensor, ids: list[str], task: str, e: Explained, method: str) -> None:
    """attributions.csv (input, target, one column per source column) and example-<i>.png bar charts."""
    columns, mask = tables.source_columns(run.info)
    frame = tables.per_column(e.values, mask, columns)
    for i, title in enumerate(titles(run, task, e)):
        tables.plot_example(folder / f"example-{i}.png", frame.iloc[i], f"{ids[i]}: {title}\n{method}")
    frame.insert(0, "target", e.target.names)
    frame.insert(0, "input", ids)
    write_csv(folder / "attributions.csv", frame)


def write_importance(run: Run, folder: Path, explained: dict[str, Explained], method: str) -> None:
    """importance.csv (column × task mean |attribution|) and importance.png, one panel per task."""
    columns, mask = tables.source_columns(run.info)
    table = tables.importance({task: tables.per_column(e.values, mask, columns) for task, e in explained.items()})
    write_csv(folder / "importance.csv", table)
    tables.plot_importance(folder / "importance.png", table, method)


def check_folder(folder: Path) -> None:
    """The output folder must be missing, empty, or an earlier explanation (replaced as a whole): nothing else
    a user keeps there is overwritten."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder (-o needs a missing or empty folder)")
    if folder.is_dir() and any(folder.iterdir()) and not _is_explanation(folder / SUMMARY):
        raise UserError(f"{folder}: holds other files; give -o a missing or empty folder, or an earlier "
                        f"explanation to replace (nothing was overwritten)")


def _is_explanation(path: Path) -> bool:
    try:
        return "method" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False
