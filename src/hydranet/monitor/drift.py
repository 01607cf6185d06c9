"""Per-feature data drift between a reference sample and new data, with Evidently's default choice of test.

Plain functions on pandas columns and frames, no I/O: `hydranet monitor` and a later HTTP server both call them.

The rules follow Evidently's defaults (evidently/calculations/stattests/: chisquare_stattest.py, ks_stattest.py,
wasserstein_distance_norm.py, jensenshannon.py):
- a reference of at most 1,000 rows: two-sample Kolmogorov–Smirnov (`scipy.stats.ks_2samp`) for numeric and
  chi-squared for categorical columns, drift when p ≤ 0.05. Chi-squared is Pearson's test of homogeneity on
  the 2 × k table of counts over the union of categories (`scipy.stats.chi2_contingency`, no continuity
  correction). Evidently instead runs a goodness-of-fit test (`chisquare`) that takes the reference frequencies
  as exact: its false-positive rate then grows with the current/reference size ratio (about 10% at 300 rows
  against 1,000, and nearly every column flagged for adult's 16,281 test rows against a 1,000-row sample of its
  own train split), and a category the reference never saw gets p = 0. The homogeneity test counts the
  sampling noise of both samples, so p ≤ 0.05 means 5% false alarms whatever the sizes.
- a larger reference: Wasserstein distance divided by the reference's standard deviation (population std,
  floored at 0.001 as Evidently does) for numeric, Jensen–Shannon distance of the category frequencies
  (`scipy.spatial.distance.jensenshannon`, natural logarithm: Evidently passes no base) for categorical
  columns, drift when the distance is ≥ 0.1.
Missing cells are left out of both samples.

`summary_drift` measures against statistics a run stored instead of rows (`monitor.keep_rows: false`, see
`monitor.reference`): with no sample to test, always the distances, on the stored histogram and counts.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

STAT_TEST_MAX_ROWS = 1000  # references up to this size get statistical tests, larger ones distances
P_THRESHOLD = 0.05
DISTANCE_THRESHOLD = 0.1
STD_FLOOR = 0.001


def uses_stat_tests(reference_rows: int) -> bool:
    """Evidently's switch: p-value tests on small references, distances on large ones (a test on many rows
    flags differences too small to matter)."""
    return reference_rows <= STAT_TEST_MAX_ROWS


def column_drift(reference: pd.Series, current: pd.Series, categorical: bool, stat_tests: bool) -> dict[str, Any]:
    """One column's drift: {method, p_value or distance, threshold, drift}."""
    ref, cur = reference.dropna(), current.dropna()
    if len(ref) == 0 or len(cur) == 0:
        return {"method": "none (no values)", "threshold": None, "drift": False}
    if stat_tests:
        p = _chi_squared(ref, cur) if categorical else float(ks_2samp(_numbers(ref), _numbers(cur)).pvalue)
        return {"method": "chi-squared" if categorical else "Kolmogorov-Smirnov", "p_value": p,
                "threshold": P_THRESHOLD, "drift": bool(p <= P_THRESHOLD)}
    distance = _jensen_shannon(ref, cur) if categorical else _wasserstein_normed(_numbers(ref), _numbers(cur))
    return {"method": "Jensen-Shannon" if categorical else "Wasserstein (normed)", "distance": distance,
            "threshold": DISTANCE_THRESHOLD, "drift": bool(distance >= DISTANCE_THRESHOLD)}


def frame_drift(reference: pd.DataFrame, current: pd.DataFrame, categorical: Iterable[str]) -> dict[str, Any]:
    """Drift of every reference column, most drifted first, and the share of drifted columns.

    The test family is chosen once, by the reference's size, so that all columns are ranked on one scale
    (smallest p-value or largest distance first)."""
    categorical, stat_tests = set(categorical), uses_stat_tests(len(reference))
    features = [{"feature": name, **column_drift(reference[name], current[name], name in categorical, stat_tests)}
                for name in reference.columns]
    return _ranked(features, len(reference), len(current))


def summary_drift(reference: dict[str, dict[str, Any]], current: pd.DataFrame, reference_rows: int) -> dict[str, Any]:
    """`frame_drift` against stored column statistics (`monitor.reference.summarize_column`), of the columns of
    `reference`; `reference_rows` is how many rows the statistics were computed on."""
    features = [{"feature": name, **stored_column_drift(summary, current[name])} for name, summary in reference.items()]
    return _ranked(features, reference_rows, len(current))


def stored_column_drift(summary: dict[str, Any], current: pd.Series) -> dict[str, Any]:
    """One column's distance to its stored statistics: Jensen–Shannon of the stored category counts and the
    current ones, or Wasserstein between the histogram's bin centres (weighted by their counts) and the current
    values, normed by the stored standard deviation; the binning moves the distance by at most half a bin."""
    cur = current.dropna()
    if not summary["count"] or len(cur) == 0:
        return {"method": "none (no values)", "threshold": None, "drift": False}
    if summary["kind"] == "categorical":
        ref_counts, cur_counts = _aligned(pd.Series(summary["frequencies"], dtype=np.float64),
                                          cur.astype(str).value_counts())
        distance, method = _js_counts(ref_counts, cur_counts), "Jensen-Shannon (stored counts)"
    else:
        edges, extremes = np.asarray(summary["histogram"]["edges"]), summary["quantiles"]
        # bin centres within the observed range: a constant column's one value is then exact, not a half-bin off
        centres = np.clip((edges[:-1] + edges[1:]) / 2, extremes["0"], extremes["100"])
        weights = np.asarray(summary["histogram"]["counts"], np.float64)
        numbers = _numbers(cur)
        distance = float(wasserstein_distance(centres, numbers, u_weights=weights) / max(summary["std"], STD_FLOOR)) \
            if len(numbers) else 0.0
        method = "Wasserstein (normed, stored histogram)"
    return {"method": method, "distance": distance, "threshold": DISTANCE_THRESHOLD,
            "drift": bool(distance >= DISTANCE_THRESHOLD)}


def _ranked(features: list[dict[str, Any]], reference_rows: int, current_rows: int) -> dict[str, Any]:
    """The report of one frame: its columns most drifted first, and the share of drifted columns."""
    features.sort(key=_severity, reverse=True)
    drifted = sum(f["drift"] for f in features)
    return {"reference_rows": reference_rows, "current_rows": current_rows, "features": features,
            "drifted": drifted, "share_drifted": drifted / len(features) if features else 0.0}


def format_score(result: dict[str, Any]) -> str:
    """p=… or d=… of one result, for tables."""
    if "p_value" in result:
        return f"p={result['p_value']:.3g}"
    return f"d={result['distance']:.3g}" if "distance" in result else "-"


def _severity(result: dict[str, Any]) -> tuple[bool, float]:
    """Sort key: drifted first, then by how far past (or short of) the threshold the column is."""
    if "p_value" in result:
        return result["drift"], -result["p_value"]
    return result["drift"], result.get("distance", -1.0)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=np.float64)


def _counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each category of the union of both samples (as text, so 1 and '1' are one category)."""
    return _aligned(ref.astype(str).value_counts(), cur.astype(str).value_counts())


def _aligned(ref_counts: pd.Series, cur_counts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two category → count series over the union of their categories (0 where one lacks a category)."""
    keys = sorted(set(ref_counts.index) | set(cur_counts.index))
    return (ref_counts.reindex(keys, fill_value=0).to_numpy(np.float64),
            cur_counts.reindex(keys, fill_value=0).to_numpy(np.float64))


def _chi_squared(ref: pd.Series, cur: pd.Series) -> float:
    counts = np.stack(_counts(ref, cur))
    if counts.shape[1] < 2:  # one category on both sides: nothing can differ
        return 1.0
    return float(chi2_contingency(counts, correction=False).pvalue)


def _jensen_shannon(ref: pd.Series, cur: pd.Series) -> float:
    return _js_counts(*_counts(ref, cur))


def _js_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    return float(jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))


def _wasserstein_normed(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(wasserstein_distance(ref, cur) / max(float(np.std(ref)), STD_FLOOR))
