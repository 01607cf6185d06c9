"""Task kinds: one record per kind (classification, binary, multilabel, regression, segmentation, depth, edges,
normals) owning all the kind means.

`KINDS` maps a name to its record, `get_kind` looks one up; features ask the record and never branch on the name.

A new kind is one file here (a class providing the `Kind` members below, and `KIND = MyKind()`) plus
its line in `KINDS`; `tests/test_kinds.py` then runs the contract over it. This package sits on the
ground floor (it imports neither `hydranet.config` nor `hydranet.tasks`), so the config can validate
kind names and metric names against it. A record is stateless: what it learned from data lives in the
task's `TaskInfo`, its settings in the task's config (`cfg`, read duck-typed: `label_smoothing`,
`loss`, `positive`, `separator`).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
from torch import Tensor

from hydranet.kinds import binary, classification, depth, edges, multilabel, normals, regression, segmentation
from hydranet.kinds.info import TaskInfo


class Kind(Protocol):
    """What a task kind provides. Duck-typed (no base class); the contract is `tests/test_kinds.py`.

    Targets mark a missing label in the tensor itself (-1 for class indices, NaN for floats), so every
    method below masks missing labels; the loss methods run every training step and so take no `.item()`
    and branch on no value (no device sync).

    Single-label kinds (`single_label` true: a prediction is one class, right or wrong) also provide
    `correct(pred, target) -> (B,) bool` (right, whether labeled or not) and `class_index(target) -> (B,)`
    (int64 class, -1 where missing); they give accuracy, robust accuracy, chance level, kNN votes and
    split strata.

    Dense kinds (`dense` true: one label per pixel, targets (N, H, W[, C]), outputs with the pixel axes first,
    (B, H, W[, K])) also provide `head(channels, info) -> nn.Module` (a conv head on a trunk's feature map) and
    `write_output(path, value, info) -> Path` (one example's decoded map as the file `predict` writes; `path`
    without suffix) and `rgba(value, info) -> (H, W, 4)` (a decoded map, or a target, as colours in [0, 1] to draw
    over its image: the report's overlays; an unlabeled pixel transparent). `is_dense` asks for the member; the
    other kinds need not have it. A dense kind with classes may provide `per_class(pred, target, info) -> {class:
    {metric: value}}` (segmentation: each class's IoU and pixel shares, for the report). A dense kind whose values
    change when the picture is mirrored left-right (a normal's x component) provides `mirror(values) -> values` on
    channels-last maps; `mirror_values` applies it, or leaves the values of the other kinds as they are.
    A kind whose exported graph should give the values `predict` writes rather than the head's raw output (depth
    in the data's units, unit normals) provides `undecode(values, info) -> raw output`, the inverse of `decode`;
    `Task.exported` and `Task.from_exported` apply the pair.
    What `hydranet explain` attributes of a map (explain/pixels.py) the dense kinds say with five members (defaults
    in `pixels.PixelMaps`): `explain_values(pred, info) -> (B, H, W, K)` (raw logits or values, normals: unit
    vectors), `explain_sum` (a region's values summed, else averaged), `explain_region(values, index) -> (B, H, W)`
    bool or None (the pixels predicted as output `index`: segmentation's class, edges; None: every pixel),
    `explain_default(values, within) -> (B,)` (the output explained without --target) and `explain_score(index,
    info) -> str` (its name).

    Kinds that `hydranet baseline` can fit with one scikit-learn estimator say which with `baseline`
    ("classifier": integer labels and `predict_proba`; "regressor": values in original units); `baseline_estimator`
    asks for it, None for the kinds without one.
    """

    name: str
    metric_names: tuple[str, ...]  # what `Task.metrics` reports: "loss" plus `metrics`' keys
    main_metric: str  # the one a task is compared by (mtl bench, a baseline's early stopping)
    lower_is_better: frozenset[str]  # of metric_names; the rest are higher-is-better
    squeeze: bool  # the head returns (B,) instead of (B, outputs)
    single_label: bool  # see above
    class_scores: bool  # the head scores every class of one label: targeted attacks, label-subset strata
    divergence: Callable[[Tensor, Tensor], Tensor] | None  # KL(clean ‖ adv) per example (B,) from logits (TRADES); None: no distribution
    temperature_scaling: bool  # the head outputs logits of a distribution: `hydranet calibrate` fits logits / T

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        """Raw column (object array) → target tensor and TaskInfo; bad values are UserErrors naming `where`."""

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Learn what the kind needs from the train split's targets into `info` (regression: mean, std)."""

    def labeled(self, target: Tensor) -> Tensor:
        """Boolean mask shaped like `target`: which elements carry a label."""

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        """Mean loss over labeled elements (float32 pred); 0, still in the graph, if none. With example weights
        `weight` (B,): Σ w·ℓ / Σ w over the labeled elements (`masking.masked_mean`); with every weight 1 its
        gradient is bit for bit the unweighted one."""

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        """Loss per example (B,), 0 where unlabeled; without label smoothing."""

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """Head output → what a user reads (class index, probabilities, value in original units)."""

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        """`metric_names` but "loss", over the labeled examples of a split (at least one is labeled)."""

    def column(self, decoded: np.ndarray, info: TaskInfo, cfg: Any) -> Any:
        """Decoded predictions → one column of `hydranet predict`'s output table."""

    def column_name(self, task: str, info: TaskInfo) -> str:
        """That column's header: the task's name, plus what its values mean where the name alone does not say."""

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """Raw head outputs (B, …) → one JSON-able answer per example (the server's /predict): what `column` says
        (label, labels, probability or value) plus the probabilities it came from, under keys named for what they are."""

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """How `column` is computed from the raw head output, as JSON for code without hydranet (an exported
        model's outputs.json): a `decode` rule name and the numbers it needs."""

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """Labeled targets as values a kNN probe averages over neighbours (float)."""

    def from_average(self, average: Tensor) -> Tensor:
        """A neighbour average → head output space, so the task's loss and metrics score it."""


KINDS: dict[str, Kind] = {k.name: k for k in (classification.KIND, binary.KIND, multilabel.KIND, regression.KIND,
                                               segmentation.KIND, depth.KIND, edges.KIND, normals.KIND)}
# Metric names are shared across kinds ("loss", "accuracy"), so lower-is-better is one set for all.
LOWER_IS_BETTER = frozenset().union(*(k.lower_is_better for k in KINDS.values()))


def get_kind(name: str) -> Kind:
    """The record of a kind; an unknown name is a ValueError listing the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r} (known: {', '.join(KINDS)})") from None


def is_dense(kind: Kind) -> bool:
    """Whether a kind labels every pixel (a dense kind) rather than the example."""
    return bool(getattr(kind, "dense", False))


def mirror_values(kind: Kind, values: Tensor) -> Tensor:
    """A dense kind's values (targets or outputs, channels last) as the left-right mirrored picture shows them; the
    pixels themselves are moved by the caller. Unchanged for every kind without a `mirror` member."""
    mirror = getattr(kind, "mirror", None)
    return values if mirror is None else mirror(values)


def baseline_estimator(kind: Kind) -> str | None:
    """"classifier", "regressor", or None: which scikit-learn estimator `hydranet baseline` fits for a kind."""
    return getattr(kind, "baseline", None)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of a metric is better; accepts paths like `val/digit/loss`."""
    return metric.rsplit("/", 1)[-1] not in LOWER_IS_BETTER


__all__ = ["KINDS", "LOWER_IS_BETTER", "Kind", "TaskInfo", "baseline_estimator", "get_kind", "higher_is_better", "is_dense", "mirror_values"]
