"""Sensitive columns → group labels: categories as written, numeric columns binned by `fairness.bins`, missing
cells a group of their own, and intersections of several attributes; plus the checks every use of groups shares.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from hydranet.config import Config, FairnessConfig
from hydranet.data.build import load_raw
from hydranet.data.dataset import missing_mask
from hydranet.errors import UserError

MISSING = "(missing)"  # the group of examples whose cell is empty: kept and reported, never dropped
MAX_UNBINNED = 20  # distinct numbers a column may have without bins (0/1 codes, a few levels): more is an age


def attribute_groups(values: np.ndarray, column: str, edges: Sequence[float] | None = None) -> np.ndarray:
    """One column's group label per example (object array of str): its categories, or its bin by `edges`."""
    values = np.asarray(values, dtype=object)
    missing = missing_mask(values)
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    numeric = bool(np.isfinite(numbers[~missing]).all())
    labels = np.full(len(values), MISSING, dtype=object)
    if edges is not None:
        if not numeric:
            row = int(np.flatnonzero(~missing & ~np.isfinite(numbers))[0])
            raise UserError(f"fairness.bins.{column}: column {column!r} has {values[row]!r} in row {row + 1}; bins "
                            f"need numbers")
        labels[~missing] = np.asarray(bin_names(edges), dtype=object)[np.searchsorted(edges, numbers[~missing], "right")]
        return labels
    present = numbers[~missing] if numeric else values[~missing]
    distinct = np.unique(present.astype(str) if not numeric else present)
    if numeric and len(distinct) > MAX_UNBINNED:
        raise UserError(f"fairness.bins: sensitive column {column!r} is numeric with {len(distinct)} distinct values; "
                        f"give its bin edges, e.g. fairness.bins: {{{column}: [25, 45, 65]}}")
    labels[~missing] = [f"{v:g}" for v in present] if numeric else [str(v).strip() for v in present]
    return labels


def bin_names(edges: Sequence[float]) -> list[str]:
    """Names of the len(edges) + 1 bins: `<25`, `25–45` (25 ≤ x < 45), …, `≥65`."""
    inner = [f"{low:g}–{high:g}" for low, high in zip(edges, edges[1:])]
    return [f"<{edges[0]:g}", *inner, f"≥{edges[-1]:g}"]


def group_table(fairness: FairnessConfig, columns: dict[str, np.ndarray], sensitive: Sequence[str],
                intersections: bool | None = None) -> dict[str, np.ndarray]:
    """Attribute → group label per example: each sensitive column, then (with `intersections`, by default
    `fairness.intersections`, and two or more columns) their combination, named `sex×race`."""
    table = {name: attribute_groups(columns[name], name, fairness.bins.get(name)) for name in sensitive}
    combine = fairness.intersections if intersections is None else intersections
    if combine and len(sensitive) > 1:
        table["×".join(sensitive)] = joint(table.values())
    return table


def joint(labels: Iterable[np.ndarray]) -> np.ndarray:
    """The intersection of several attributes' labels, `Female, Black` style."""
    parts = list(labels)
    out = parts[0].astype(str).astype(object)
    for part in parts[1:]:
        out = out + ", " + part.astype(str)
    return out


def joint_groups(fairness: FairnessConfig, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The group of each example over all sensitive columns together (what a mitigation protects)."""
    return joint(group_table(fairness, columns, fairness.sensitive, intersections=False).values())


def check_groups(attribute: str, labels: np.ndarray, where: str, min_size: int) -> list[str]:
    """Refuse an attribute with a single group in `where` (nothing to compare: a UserError naming it); return a
    warning for each group with fewer than `min_size` examples (its rates rest on too few examples)."""
    names, counts = np.unique(labels.astype(str), return_counts=True)
    if len(names) < 2:
        only = f"{str(names[0])!r}, {counts[0]} examples" if len(names) else "no examples"
        raise UserError(f"fairness.sensitive: {attribute!r} has a single group ({only}) in {where}; a comparison "
                        f"needs at least two groups")
    return [f"{attribute}: group {str(name)!r} has {count} example{'s' if count != 1 else ''} in {where} (fewer than "
            f"fairness.min_group_size {min_size}); its numbers are unreliable"
            for name, count in zip(names, counts) if count < min_size]


def sensitive_columns(cfg: Config, sensitive: list[str] | None) -> dict[str, np.ndarray]:
    """The raw sensitive columns of the run's rows, as training indexed them."""
    chosen = list(dict.fromkeys(sensitive or cfg.fairness.sensitive))
    if not chosen:
        raise UserError("--sensitive: this run has no fairness.sensitive; name the columns to audit, e.g. "
                        "--sensitive sex,race")
    tasks = {cfg.column(t) for t in cfg.tasks}
    clash = [c for c in chosen if c in tasks]
    if clash:
        raise UserError(f"--sensitive: {clash[0]!r} is a task column (expected a column such as sex or race)")
    # Read the chosen columns beside the run's own (features unchanged: `use_as_features` keeps them where they were).
    reading = cfg.fairness.model_copy(update={"sensitive": chosen, "use_as_features": True})
    raw = load_raw(cfg.model_copy(update={"fairness": reading}))
    return {c: raw.columns[c] for c in chosen}
