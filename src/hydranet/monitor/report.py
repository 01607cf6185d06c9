"""`hydranet monitor`: drift of a table of new inputs, and of the model's predictions on it, against the run's
train split, written as drift.json and a self-contained drift.html.

The reference is rebuilt from the run's own data (same config and seed → same train split), and at most
`reference_rows` of its rows are drawn at random (seeded by the run's seed) so the statistical tests apply by
default, as with Evidently's 1,000-row rule (see `monitor.drift`).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from hydranet.data import build_dataset
from hydranet.data.build import load_raw
from hydranet.data.sources.table import clean
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.files import make_dir, write_json, write_text
from hydranet.monitor.drift import STAT_TEST_MAX_ROWS, frame_drift
from hydranet.predict import decode_outputs, read_input_table, table_inputs
from hydranet.randomness import Purpose, numpy_stream
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.run import Run


def monitor_table(run: Run, data: str | Path | pd.DataFrame, out_dir: str | Path | None = None,
                  reference_rows: int = STAT_TEST_MAX_ROWS) -> dict[str, Any]:
    """Feature drift per source column and prediction drift per task of a table file or DataFrame; writes
    drift.json/drift.html to `out_dir` when given."""
    if run.info.is_image:
        raise UserError(f"{run.dir}: monitor supports table runs only (this run was trained on images)")
    if reference_rows < 1:
        raise UserError(f"--reference-rows: {reference_rows} is not a row count (expected an integer ≥ 1)")
    current = clean(data, "input") if isinstance(data, pd.DataFrame) else read_input_table(data)
    where = "input" if isinstance(data, pd.DataFrame) else str(data)
    table_inputs(run.info, current, where)  # predict's checks: columns present, numbers where numbers were
    reference = reference_frame(run, reference_rows)
    columns = TableEncoder.from_state(run.info.encoder).columns
    names = [c["name"] for c in columns]
    categorical = [c["name"] for c in columns if c["kind"] == "categorical"]
    report = {"run": str(run.dir), "data": where,
              "reference": "rebuilt from the run's train split (seeded sample)",
              "features": frame_drift(reference[names], current[names], categorical),
              "predictions": prediction_drift(run, reference[names], current[names])}
    if out_dir is not None:
        out = make_dir(out_dir)
        write_json(out / "drift.json", report)
        write_text(out / "drift.html", drift_html(report))
    return report


def reference_frame(run: Run, rows: int) -> pd.DataFrame:
    """Up to `rows` raw rows of the run's train split, drawn with the run's seed (Purpose.MONITOR)."""
    cfg = run.config
    train = build_dataset(cfg).index["train"].numpy()
    raw = load_raw(cfg)  # the rows training indexed
    if len(train) > rows:
        train = numpy_stream(cfg.seed, Purpose.MONITOR).choice(train, size=rows, replace=False)
    return raw.frame.iloc[sorted(train)].reset_index(drop=True)


def prediction_drift(run: Run, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """The same tests on the decoded predictions: class labels as categories, probabilities and values as
    numbers."""
    def predicted(frame: pd.DataFrame) -> pd.DataFrame:
        x = table_inputs(run.info, frame, "reference")
        return decode_outputs(run, predict_batches(run.model, x, *eval_settings(run.config.train)))

    return predictions_drift(predicted(reference), predicted(current))


def predictions_drift(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Drift of decoded predictions (`decode_outputs` tables), one entry per task under `tasks`."""
    categorical = [c for c in reference.columns if not pd.api.types.is_numeric_dtype(reference[c])]
    result = frame_drift(reference, current, categorical)
    result["tasks"] = result.pop("features")
    return result


def drift_html(report: dict[str, Any]) -> str:
    """A small page with no scripts or external resources: one table for features, one for predictions."""
    parts = [f"<h1>Drift of {html.escape(report['data'])}</h1>",
             f"<p>run {html.escape(report['run'])}; reference {html.escape(report['reference'])}</p>",
             _html_table("Features", report["features"], "features"),
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


def format_score(result: dict[str, Any]) -> str:
    """p=… or d=… of one result, for tables."""
    if "p_value" in result:
        return f"p={result['p_value']:.3g}"
    return f"d={result['distance']:.3g}" if "distance" in result else "-"
