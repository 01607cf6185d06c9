"""Report sections of per-pixel tasks (segmentation, depth, edges, normals): their test metrics, each class's IoU,
and overlays of a few test images: the image, the prediction drawn over it, the truth drawn over it.
"""

from __future__ import annotations

import numpy as np
import torch

from hydranet.report.context import RunContext, TestOutputs, section
from hydranet.report.page import escape, figure, figures, plt, table

OVERLAY_EXAMPLES = 4  # test images per dense task: the first of the (seeded, shuffled) test split
COLUMNS = ("image", "predicted", "true")


def _dense_tasks(test: TestOutputs) -> list[str]:
    return [name for name, task in test.tasks.items() if task.dense]


@section("dense_metrics", "Per-pixel metrics (test)", order=75)
def dense_metrics(ctx: RunContext) -> str | None:
    """Each dense task's metrics over the labeled pixels of the test split (mIoU and pixel accuracy, depth errors
    and δ < 1.25, edge F-score, normals' angle errors), and, for a task with classes per pixel, each class's IoU."""
    test = ctx.test
    names = _dense_tasks(test)
    if not names:
        return None
    rows = [(name, test.tasks[name].kind, metric, value) for name in names
            for metric, value in test.tasks[name].metrics(test.outputs[name], test.targets[name]).items()]
    return table(("task", "kind", "metric", "test"), rows) + "".join(_per_class(test, name) for name in names)


def _per_class(test: TestOutputs, name: str) -> str:
    """The kind's per-class table (segmentation: IoU, true and predicted pixel shares), or nothing."""
    task = test.tasks[name]
    per_class = getattr(task.spec, "per_class", None)
    if per_class is None:
        return ""
    scores = per_class(test.outputs[name].numpy(), test.targets[name].numpy(), task.info)
    metrics = list(next(iter(scores.values()), {}))
    rows = [(label, *values.values()) for label, values in scores.items()]
    return f"<h3>{escape(name)} · per class</h3>" + table(("class", *metrics), rows)


@section("dense_overlays", "Per-pixel predictions (test)", order=76)
def dense_overlays(ctx: RunContext) -> str | None:
    """Per dense task, the first test images with the prediction and the truth drawn over them (a mask in the
    class colours of `predict`'s PNGs, depth as a colour map on one scale, edges in white, normals as RGB)."""
    test = ctx.test
    names = _dense_tasks(test)
    if not names or not test.is_image:
        return None
    rows = torch.arange(min(OVERLAY_EXAMPLES, len(test.stored)))
    pictures = _pictures(test.stored[rows])
    return figures(_overlay_figure(test, name, rows, pictures) for name in names)


def _pictures(stored: torch.Tensor) -> np.ndarray:
    """Stored images (N, C, H, W), uint8 or floats, as (N, H, W, 3) floats in [0, 1] for imshow."""
    x = stored.float() / 255 if stored.dtype == torch.uint8 else stored.float()
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _overlay_figure(test: TestOutputs, name: str, rows: torch.Tensor, pictures: np.ndarray) -> str:
    """One row per example: the image, the prediction over it, the truth over it; each row titled with the
    example's main metric."""
    task = test.tasks[name]
    outputs, targets = test.outputs[name][rows], test.targets[name][rows]
    predicted, truth = task.decode(outputs).numpy(), targets.numpy()
    main = task.spec.main_metric
    fig, axes = plt.subplots(len(rows), len(COLUMNS), figsize=(1.5 * len(COLUMNS) + 0.4, 1.5 * len(rows) + 0.5),
                             dpi=100, squeeze=False)
    for i in range(len(rows)):
        score = task.metrics(outputs[i:i + 1], targets[i:i + 1]).get(main)
        for col, overlay in enumerate((None, predicted[i], truth[i])):
            ax = axes[i][col]
            ax.imshow(pictures[i], interpolation="nearest")
            if overlay is not None:
                ax.imshow(task.spec.rgba(overlay, task.info), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(COLUMNS[col], fontsize=8)
        axes[i][0].set_ylabel(f"{main} {score:.3g}" if score is not None else "unlabeled", fontsize=7)
    fig.suptitle(f"{name} ({task.kind})", fontsize=10)
    return figure(fig, f"{name}: the first {len(rows)} test images; left, {main} of each",
                  f"predicted and true {name} maps")
