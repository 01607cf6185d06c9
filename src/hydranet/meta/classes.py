"""Episodes over the classes of any hydranet source (`meta.source: data`): an image folder, CIFAR-10, digits or a
table, its one classification task's classes split by config into meta-train, meta-val and meta-test classes.

The inputs go through the source's own preprocessing (`data.build`), fitted on the meta-train classes only, and
that fit is stored in the run as data.json, so `meta adapt` turns a user's files into exactly what was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hydranet.config import Config
from hydranet.data import DataInfo, to_model_inputs
from hydranet.data.build import fit_preprocessing, load_raw
from hydranet.data.dataset import RawData, missing_mask
from hydranet.errors import UserError
from hydranet.kinds import get_kind
from hydranet.meta.episodes import ClassPool


@dataclass
class SourcePools:
    """The three class pools of a source and the preprocessing fitted on the meta-train classes' examples."""

    train: ClassPool
    val: ClassPool
    test: ClassPool
    info: DataInfo

    def parts(self) -> tuple[ClassPool, ClassPool, ClassPool, DataInfo]:
        return self.train, self.val, self.test, self.info


def class_column(cfg: Config) -> str:
    """The column whose classes the episodes are drawn from: the column of the config's one task whose head scores
    every class of one label (classification)."""
    kinds = {task: task_cfg.kind for task, task_cfg in cfg.tasks.items()}
    if len(kinds) != 1 or not get_kind(next(iter(kinds.values()))).class_scores:
        raise UserError(f"tasks: meta.source data draws episodes over the classes of one classification task; "
                        f"got {', '.join(f'{t} ({k})' for t, k in kinds.items()) or 'none'}")
    return cfg.column(next(iter(kinds)))


def source_pools(cfg: Config) -> SourcePools:
    """Read the source, keep the first `meta.per_class` examples of every class (in the source's order, the same
    number for each), split the classes as `meta.test_classes` and `meta.val_classes` say, and encode them."""
    raw = load_raw(cfg)
    column = class_column(cfg)
    labels = np.asarray(raw.labels[column], dtype=object)
    known = ~missing_mask(labels)
    names = np.array([str(v) for v in labels], dtype=object)
    rows = {name: np.flatnonzero(known & (names == name)) for name in sorted(set(names[known]))}
    groups = _split_classes(cfg, list(rows))
    per_class = min(cfg.meta.per_class, *(len(r) for r in rows.values()))
    if per_class < 2:
        scarce = min(rows, key=lambda n: len(rows[n]))
        raise UserError(f"{column}: class {scarce!r} has {len(rows[scarce])} example; episodes need at least 2 per "
                        f"class (a support and a query example)")
    kept = {name: r[:per_class] for name, r in rows.items()}
    info = fit_preprocessing(raw, np.concatenate([kept[n] for n in groups["train"]]), cfg)
    info.input_shape = tuple(_inputs(raw, info, kept[groups["train"][0]][:1]).shape[1:])
    pools = {split: ClassPool(torch.stack([_inputs(raw, info, kept[n]) for n in classes]), classes)
             for split, classes in groups.items()}
    return SourcePools(pools["train"], pools["val"], pools["test"], info)


def _split_classes(cfg: Config, classes: list[str]) -> dict[str, list[str]]:
    """Meta-train, meta-val and meta-test class names; meta-val defaults to the test classes (it only reports)."""
    meta = cfg.meta
    for field, chosen in (("meta.test_classes", meta.test_classes), ("meta.val_classes", meta.val_classes)):
        unknown = [c for c in chosen if c not in classes]
        if unknown:
            raise UserError(f"{field}: {unknown[0]!r} is not a class of column {class_column(cfg)!r} "
                            f"(classes: {', '.join(classes)})")
    held = set(meta.test_classes) | set(meta.val_classes)
    train = [c for c in classes if c not in held]
    if len(meta.test_classes) < 2 or len(train) < 2:
        raise UserError(f"meta.test_classes: expected at least 2 held-out classes and 2 left to meta-train on "
                        f"(classes: {', '.join(classes)}); got {meta.test_classes}")
    return {"train": train, "val": list(meta.val_classes or meta.test_classes), "test": list(meta.test_classes)}


def _inputs(raw: RawData, info: DataInfo, rows: np.ndarray) -> torch.Tensor:
    """Model inputs of some rows of the source, preprocessed as training preprocesses them."""
    if raw.images is not None:
        return to_model_inputs(info, images=raw.images[torch.from_numpy(rows)])
    return to_model_inputs(info, frame=raw.frame.iloc[rows])
