"""`hydranet monitor`: drift of new inputs (a table, or image files), and of the model's predictions on them,
against the reference the run stored at training time (`monitor.reference`), written as drift.json, drift.png
and a self-contained drift.html.

Which reference, in order:
- the sample of train rows the run stored (reference_rows.parquet), when it is the draw asked for: Evidently's
  rules on rows (`monitor.drift.frame_drift`), statistical tests on ≤ 1,000 rows;
- with `monitor.keep_rows: false`, the stored statistics only: distances against the stored histograms and
  category counts (`monitor.drift.summary_drift`);
- otherwise (a run from before references were stored, or another `--reference-rows`) the sample is rebuilt
  from the run's own data (same config and seed → same train split, the same seeded draw).
The report's `reference` says which. Image, text and numeric-sequence runs are compared on per-example features
(`reference.image_features`, `reference.text_features`, `reference.sequence_features`); their sample holds the
model's predictions on the sampled examples too.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from hydranet.data import DataInfo, build_dataset
from hydranet.data.info import SEQUENCE, TABLE, TEXT
from hydranet.data.sources.table import clean
from hydranet.errors import UserError
from hydranet.files import make_dir, write_figure, write_json, write_text
from hydranet.monitor.drift import format_score, frame_drift, summary_drift
from hydranet.monitor.figure import drift_figure
from hydranet.monitor.reference import (PREDICTION, example_sample, image_features, per_example_tasks, sample_positions,
                                        sequence_features, summarize_frame, table_columns, table_rows, text_features)
from hydranet.predict import (TABLE_FILES, decode_tasks, image_file_inputs, inputs_from_files, read_input_table,
                              table_inputs)
from hydranet.rundir import RunDir
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.run import Run

STATS_ONLY = ("the statistics stored at training time (monitor.keep_rows false, no rows kept): distances against "
              "the stored histograms and category counts")
PLOTTED = 6  # features drawn in drift.png, the most drifted first


def monitor_run(run: Run, inputs: Sequence[str | Path], out_dir: str | Path | None = None,
                reference_rows: int | None = None) -> dict[str, Any]:
    """`hydranet monitor`'s inputs as `predict` takes them: image files or folders for image runs, one table
    file for table and text runs, one .npz for numeric-sequence runs."""
    run.info.require_image_or_table("hydranet monitor", TEXT, SEQUENCE)
    if run.info.kind != TABLE:
        return monitor_examples(run, inputs, out_dir, reference_rows)
    if len(inputs) != 1:
        raise UserError(f"DATA: this run was trained on a table; give {TABLE_FILES}, not {len(inputs)} inputs")
    return monitor_table(run, inputs[0], out_dir, reference_rows)


def monitor_table(run: Run, data: str | Path | pd.DataFrame, out_dir: str | Path | None = None,
                  reference_rows: int | None = None) -> dict[str, Any]:
    """Feature drift per source column and prediction drift per task of a table file or DataFrame; writes
    drift.json, drift.png and drift.html to `out_dir` when given."""
    if run.info.kind != TABLE:  # images, texts and sequences are described per example: monitor_examples
        raise UserError(f"{run.dir}: this run was trained on {run.info.kind}s, not a table; monitor it with "
                        f"`hydranet monitor {run.dir} DATA…` (image files or folders, a table of texts, or an .npz "
                        f"of sequences)")
    rows = requested_rows(run, reference_rows)
    current = clean(data, "input") if isinstance(data, pd.DataFrame) else read_input_table(data)
    where = "input" if isinstance(data, pd.DataFrame) else str(data)
    x = table_inputs(run.info, current, where)  # predict's checks: columns present, numbers where numbers were
    names, categorical = table_columns(run.info.encoder)
    current = current[names]
    stored = RunDir(run.dir).read_reference()
    if stored is not None and not stored["sample_rows"]:
        return _stored_statistics_report(run, where, stored, current, x, out_dir)
    reference = reference_frame(run, rows)
    return _report(run, where, reference.attrs["reference"], frame_drift(reference[names], current, categorical),
                   prediction_drift(run, reference[names], current), summarize_frame(reference[names], categorical),
                   current, out_dir)


def monitor_examples(run: Run, paths: Sequence[str | Path], out_dir: str | Path | None = None,
                     reference_rows: int | None = None) -> dict[str, Any]:
    """Drift of the per-example features of image files or folders (mean and std of each channel), of a table of
    texts (tokens, unknown-token rate) or of an .npz of sequences (steps, each feature's mean and std), and of the
    predictions on them against the predictions on the reference examples."""
    rows = requested_rows(run, reference_rows)
    x, _ = image_file_inputs(run.info, paths) if run.info.is_image else inputs_from_files(run, paths)
    current, where = input_features(run.info, x), ", ".join(map(str, paths))
    stored = RunDir(run.dir).read_reference()
    if stored is not None and not stored["sample_rows"] and stored["features"]:  # text, sequence runs' from before: rebuilt
        return _stored_statistics_report(run, where, stored, current, x, out_dir)
    reference = reference_frame(run, rows)
    features = reference[[c for c in reference.columns if not c.startswith(PREDICTION)]]
    reference_predictions = reference[[c for c in reference.columns if c.startswith(PREDICTION)]]
    predictions = predictions_drift(reference_predictions.rename(columns=lambda c: c[len(PREDICTION):]),
                                    predicted(run, x))
    return _report(run, where, reference.attrs["reference"], frame_drift(features, current, ()), predictions,
                   summarize_frame(features), current, out_dir)


def _stored_statistics_report(run: Run, where: str, stored: dict[str, Any], current: pd.DataFrame, x: torch.Tensor,
                              out_dir: str | Path | None) -> dict[str, Any]:
    """With `monitor.keep_rows: false`: features (`current`) and the predictions on model inputs `x` against
    reference.json's statistics alone."""
    features = summary_drift(stored["features"], current, stored["train_rows"])
    predictions = summary_drift(stored["predictions"]["columns"], predicted(run, x), stored["predictions"]["rows"])
    return _report(run, where, STATS_ONLY, features, _as_tasks(predictions), stored["features"], current, out_dir)


def requested_rows(run: Run, reference_rows: int | None) -> int:
    """`--reference-rows`, by default the run's `monitor.reference_rows` (the size of the stored sample)."""
    rows = run.config.monitor.reference_rows if reference_rows is None else reference_rows
    if rows < 1:
        raise UserError(f"--reference-rows: {rows} is not a row count (expected an integer ≥ 1)")
    return rows


def reference_frame(run: Run, rows: int) -> pd.DataFrame:
    """Up to `rows` train rows drawn with the run's seed (Purpose.MONITOR): raw source rows of a table run,
    per-example features and the model's predictions (`reference.example_sample`) of an image, text or sequence run. The
    sample stored at training time when it is that draw, else rebuilt from the run's data; `attrs["reference"]`
    says which."""
    stored = stored_sample(run, rows)
    if stored is not None:
        return stored
    cfg = run.config
    data = build_dataset(cfg)
    positions = sample_positions(data.index["train"].numpy(), rows, cfg.seed)
    if run.info.kind != TABLE:
        frame = example_sample(cfg, data, run.tasks, run.model, torch.device("cpu"), positions)
    else:
        frame = table_rows(cfg, data).iloc[positions].reset_index(drop=True)  # the rows training indexed, raw
    frame.attrs["reference"] = f"rebuilt from the run's train split (a seeded sample of {len(frame)} rows)"
    return frame


def stored_sample(run: Run, rows: int) -> pd.DataFrame | None:
    """reference_rows.parquet when it holds the draw of `rows` rows (the same rows a rebuild would draw), else
    None: a smaller or larger sample would not be the draw asked for."""
    paths = RunDir(run.dir)
    stored = paths.read_reference()
    if stored is None or not stored["sample_rows"] or stored["sample_rows"] != min(rows, stored["train_rows"]):
        return None
    try:
        frame = pd.read_parquet(paths.reference_rows)
    except (OSError, ValueError) as err:  # missing, truncated (pyarrow's ArrowInvalid is a ValueError)
        detail = " ".join(str(err).split())[:160]
        raise UserError(f"{paths.reference_rows}: unreadable ({type(err).__name__}: {detail}); expected the "
                        f"reference.json names ({stored['sample_rows']} rows); delete reference.json to rebuild") from None
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) and frame[c].dtype != object]
    frame = frame.astype({c: object for c in text})  # Parquet's strings back as the objects the source reads
    frame.attrs["reference"] = (f"the sample of {len(frame)} train rows stored at training time "
                                f"({paths.reference_rows.name})")
    return frame


def input_features(info: DataInfo, x: torch.Tensor) -> pd.DataFrame:
    """Per-example features of model inputs, in the units the reference's were: an image's channel statistics of
    its pixels in [0, 1], a text's token count and unknown-token rate, a sequence's steps and per-feature mean and
    std in the data's units."""
    if info.is_image:
        return image_features(input_pixels(info, x), 1.0)
    return sequence_features(info, x) if info.kind == SEQUENCE else text_features(x)


def input_pixels(info: DataInfo, x: torch.Tensor) -> torch.Tensor:
    """Model inputs of an image run back to pixel values in [0, 1] (undoing the per-channel normalization), so
    new images are described in the units the reference's were."""
    mean, std = (torch.tensor(v, dtype=x.dtype).view(1, -1, 1, 1) for v in (info.mean, info.std))
    return x * std + mean


def predicted(run: Run, x: torch.Tensor) -> pd.DataFrame:
    """Decoded predictions (a column per task, dense tasks left out) of model inputs."""
    return decode_tasks(per_example_tasks(run.tasks), predict_batches(run.model, x, *eval_settings(run.config.train)))


def prediction_drift(run: Run, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """The same tests on the decoded predictions: class labels as categories, probabilities and values as
    numbers."""
    return predictions_drift(predicted(run, table_inputs(run.info, reference, "reference")),
                             predicted(run, table_inputs(run.info, current, "input")))


def predictions_drift(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """`frame_drift` of two frames of decoded predictions, its rows called tasks."""
    categorical = [c for c in reference.columns if not pd.api.types.is_numeric_dtype(reference[c])]
    return _as_tasks(frame_drift(reference, current, categorical))


def _as_tasks(result: dict[str, Any]) -> dict[str, Any]:
    """A drift result of predictions: its rows, one per task column, under `tasks`."""
    result["tasks"] = result.pop("features")
    return result


def _report(run: Run, where: str, reference: str, features: dict[str, Any], predictions: dict[str, Any],
            summaries: dict[str, dict[str, Any]], current: pd.DataFrame, out_dir: str | Path | None) -> dict[str, Any]:
    """The report; with `out_dir`, also drift.json, drift.png (reference vs current distributions of the most
    drifted features) and drift.html with that figure inside it."""
    report = {"run": str(run.dir), "data": where, "reference": reference, "features": features,
              "predictions": predictions}
    if out_dir is None:
        return report
    out = make_dir(out_dir)
    shown, figure = features["features"][:PLOTTED], None
    if shown:
        write_figure(out / "drift.png", drift_figure(shown, summaries, current))
        report["figure"] = "drift.png"
        figure = (out / "drift.png").read_bytes()
    write_json(out / "drift.json", report)
    write_text(out / "drift.html", drift_html(report, figure))
    return report


def drift_html(report: dict[str, Any], figure: bytes | None = None) -> str:
    """A small page with no scripts or external resources: the figure (a PNG as a data: URI), then one table for
    features and one for predictions."""
    parts = [f"<h1>Drift of {html.escape(report['data'])}</h1>",
             f"<p>run {html.escape(report['run'])}; reference: {html.escape(report['reference'])}</p>"]
    if figure is not None:
        parts.append(f"<img alt='reference and new distributions' src='data:image/png;base64,"
                     f"{base64.b64encode(figure).decode('ascii')}'>")
    parts += [_html_table("Features", report["features"], "features"),
              _html_table("Predictions", report["predictions"], "tasks")]
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}.drift{background:#fcc}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>drift</title><style>{style}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def _html_table(title: str, result: dict[str, Any], key: str) -> str:
    rows = "".join(
        f"<tr class='{'drift' if r['drift'] else ''}'><td>{html.escape(str(r['feature']))}</td>"
        f"<td>{r['method']}</td><td>{format_score(r)}</td><td>{r['threshold']}</td><td>{r['drift']}</td></tr>"
        for r in result[key])
    return (f"<h2>{title}: {result['drifted']} of {len(result[key])} drifted ({result['share_drifted']:.0%})</h2>"
            f"<table><tr><th>name</th><th>method</th><th>p-value / distance</th><th>threshold</th><th>drift</th>"
            f"</tr>{rows}</table>")
