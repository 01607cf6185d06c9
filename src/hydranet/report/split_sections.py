"""Report sections from one pass over the test split: confusion matrices, reliability and ECE, ROC and PR curves,
regression residuals, and the test examples the model gets most wrong (highest loss) with its predictions.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import auc, confusion_matrix, precision_recall_curve, roc_curve

from hydranet.report.context import RunContext, TestOutputs, section
from hydranet.report.page import escape, figure, figures, image_thumbnail, new_figure, table

RELIABILITY_BINS = 10
HIGHEST_LOSS = 8  # examples shown per task
MAX_CONFUSION_CLASSES = 30  # beyond this a matrix's cells are unreadable at the report's figure size
TEXT_WIDTH = 160  # characters of a text shown in a table cell


def _class_tasks(test: TestOutputs) -> list[str]:
    return [name for name in test.tasks if test.probabilities(name) is not None]


@section("confusion", "Confusion matrices (test)", order=50)
def confusion(ctx: RunContext) -> str | None:
    """Counts of true class (rows) against predicted class (columns) per single-label task, labeled examples."""
    test = ctx.test
    panels = [_confusion_figure(test, name) for name in _class_tasks(test)]
    return figures(panels) if panels else None


def _confusion_figure(test: TestOutputs, name: str) -> str:
    classes = test.tasks[name].info.classes or []
    labeled = test.labeled(name)
    true = test.tasks[name].spec.class_index(test.targets[name])[labeled].numpy()
    pred = test.probabilities(name)[labeled].argmax(-1).numpy()
    if len(classes) > MAX_CONFUSION_CLASSES:
        return f"<p>{escape(name)}: {len(classes)} classes, too many for a readable matrix</p>"
    matrix = confusion_matrix(true, pred, labels=range(len(classes)))
    size = 3.0 + 0.22 * len(classes)
    fig, ax = new_figure(size=(size + 0.8, size))
    shown = ax.imshow(matrix, cmap="Blues")
    ticks = range(len(classes))
    long_names = max(map(len, classes)) > 3  # slanted, or they run into each other
    ax.set_xticks(ticks, classes, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=name)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > matrix.max() / 2 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    return figure(fig, f"{name}: {labeled.sum()} labeled test examples")


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS
                               ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """ECE over equal-width confidence bins (Guo et al. 2017): Σ_b |B|/n · |accuracy(B) − confidence(B)|.
    Also returns each bin's accuracy, mean confidence and count (NaN where empty) for the diagram."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(which, correct.astype(float), bins) / counts
        mean_confidence = np.bincount(which, confidence, bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / counts.sum() * np.abs(accuracy[filled] - mean_confidence[filled])))
    return ece, accuracy, mean_confidence, counts


@section("reliability", "Reliability (test)", order=60)
def reliability(ctx: RunContext) -> str | None:
    """Accuracy against confidence (the top class's probability) in 10 bins, and the ECE: how far the model's
    probabilities can be taken at their word."""
    test = ctx.test
    panels, rows = [], []
    for name in _class_tasks(test):
        labeled = test.labeled(name)
        probs = test.probabilities(name)[labeled]
        confidence, predicted = probs.max(-1)
        correct = predicted == test.tasks[name].spec.class_index(test.targets[name])[labeled]
        ece, accuracy, mean_confidence, counts = expected_calibration_error(confidence.numpy(), correct.numpy())
        rows.append((name, ece, float(confidence.mean()), float(correct.float().mean()), int(labeled.sum())))
        panels.append(_reliability_figure(name, ece, accuracy, counts))
    if not panels:
        return None
    return table(("task", "ECE", "mean confidence", "accuracy", "examples"), rows) + figures(panels)


def _reliability_figure(name: str, ece: float, accuracy: np.ndarray, counts: np.ndarray) -> str:
    fig, ax = new_figure()
    centers = (np.arange(RELIABILITY_BINS) + 0.5) / RELIABILITY_BINS
    ax.bar(centers, np.nan_to_num(accuracy), width=1 / RELIABILITY_BINS, edgecolor="white", color="#2f6fb0",
           label="accuracy")
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", title=f"{name} · ECE {ece:.3f}", xlim=(0, 1), ylim=(0, 1))
    ax.legend(frameon=False, loc="upper left", fontsize=9)
    return figure(fig, f"{name}: {int(counts.sum())} examples in {RELIABILITY_BINS} bins")


@section("roc_pr", "ROC and precision-recall (test)", order=70)
def roc_pr(ctx: RunContext) -> str | None:
    """ROC and PR curves of each two-class task, scored by the positive class's probability."""
    test = ctx.test
    panels = []
    for name in _class_tasks(test):
        probs = test.probabilities(name)
        if probs.shape[1] != 2:
            continue
        labeled = test.labeled(name)
        truth = test.tasks[name].spec.class_index(test.targets[name])[labeled].numpy()
        if len(np.unique(truth)) < 2:
            panels.append(f"<p>{escape(name)}: the test split holds one class only; no curves</p>")
            continue
        panels.append(_curves_figure(name, test.tasks[name].info.classes[1], truth, probs[labeled, 1].numpy()))
    return figures(panels) if panels else None


def _curves_figure(name: str, positive: str, truth: np.ndarray, score: np.ndarray) -> str:
    fig, (roc, pr) = new_figure(columns=2)
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    roc.plot(fpr, tpr, label=f"AUC {auc(fpr, tpr):.3f}")
    roc.plot([0, 1], [0, 1], color="0.6", ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{name} · ROC")
    pr.plot(recall, precision, label=f"AUC {auc(recall, precision):.3f}")
    pr.axhline(truth.mean(), color="0.6", ls="--", label="base rate")
    pr.set(xlabel="recall", ylabel="precision", title=f"{name} · precision-recall", ylim=(0, 1.02))
    roc.legend(frameon=False, loc="lower right")
    pr.legend(frameon=False, loc="lower left")
    return figure(fig, f"{name}: positive class {positive!r}")


def _value_tasks(test: TestOutputs) -> list[str]:
    """Tasks whose decoded output is one value per example in the target's own units (regression; a depth map is
    drawn by the per-pixel sections)."""
    return [name for name, task in test.tasks.items()
            if not task.spec.single_label and not task.info.classes and not task.dense]


@section("residuals", "Residuals (test)", order=80)
def residuals(ctx: RunContext) -> str | None:
    """Predicted against true value, and the residuals' distribution, per regression task (original units)."""
    test = ctx.test
    panels = []
    for name in _value_tasks(test):
        labeled = test.labeled(name)
        true = test.targets[name][labeled].numpy()
        pred = test.tasks[name].decode(test.outputs[name])[labeled].numpy()
        fig, (scatter, spread) = new_figure(columns=2)
        scatter.scatter(true, pred, s=8, alpha=0.6)
        low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        scatter.plot([low, high], [low, high], color="0.5", ls="--")
        scatter.set(xlabel="true", ylabel="predicted", title=f"{name} · predicted vs true")
        spread.hist(pred - true, bins=30, color="#2f6fb0", edgecolor="white")
        spread.set(xlabel="predicted − true", ylabel="examples", title=f"{name} · residuals")
        panels.append(figure(fig, f"{name}: {labeled.sum()} labeled test examples"))
    return figures(panels) if panels else None


@section("highest_loss", "Highest-loss test examples", order=90)
def highest_loss(ctx: RunContext) -> str | None:
    """Per task, the test examples with the highest loss, with the prediction and the label: mislabeled data and
    systematic mistakes show up here first. Per-pixel tasks are left to their own sections (`dense_sections`)."""
    test = ctx.test
    parts = []
    for name, task in test.tasks.items():
        if task.dense:
            continue
        labeled = test.labeled(name)
        labeled = labeled if labeled.ndim == 1 else labeled.any(-1)
        losses = torch.where(labeled, test.losses(name), torch.tensor(-np.inf))
        top = losses.argsort(descending=True)[: min(HIGHEST_LOSS, int(labeled.sum()))]
        predicted = task.column(test.outputs[name][top])
        truth = truth_column(test, name, top)
        heading = f"{name} · predicted {task.column_name}" if task.column_name != name else name
        parts.append(f"<h3>{escape(heading)}</h3>" + (_thumbnails(test, top, losses, predicted, truth) if test.is_image
                                                   else _rows(ctx, top, losses, predicted, truth)))
    return "".join(parts) or None


def truth_column(test: TestOutputs, name: str, rows: torch.Tensor) -> list:
    """Labels as a user reads them: class names, labels joined, or values."""
    task, target = test.tasks[name], test.targets[name][rows]
    if task.info.classes and task.spec.single_label:
        return [task.info.classes[int(i)] for i in task.spec.class_index(target)]
    if task.info.classes:  # multilabel: 0/1 per label
        return [", ".join(c for c, on in zip(task.info.classes, row) if on > 0.5) for row in target.tolist()]
    return [float(v) for v in target]


def _thumbnails(test: TestOutputs, top: torch.Tensor, losses: torch.Tensor, predicted, truth) -> str:
    cells = []
    for k, row in enumerate(top.tolist()):
        shown = predicted[k] if isinstance(predicted[k], str) else f"{float(predicted[k]):.3g}"
        label = truth[k] if isinstance(truth[k], str) else f"{truth[k]:.3g}"
        cells.append(f'<div class="thumb">{image_thumbnail(test.stored[row])}<div>loss {float(losses[row]):.3g}</div>'
                     f"<div>predicted <b>{escape(shown)}</b></div><div>label <b>{escape(label)}</b></div></div>")
    return '<div class="thumbs">' + "".join(cells) + "</div>"


def _rows(ctx: RunContext, top: torch.Tensor, losses: torch.Tensor, predicted, truth) -> str:
    """One table row per example: its row in the data set as loaded (0-based), loss, prediction and label; a text
    run's rows also show the text (shortened), since a row number alone says nothing about a text."""
    texts = ctx.test_texts
    rows = [(int(ctx.dataset.index["test"][r]), float(losses[r]), predicted[k], truth[k],
             *([shortened(texts[r])] if texts else [])) for k, r in enumerate(top.tolist())]
    return table(("row", "loss", "predicted", "label", *(["text"] if texts else [])), rows)


def shortened(text: str, width: int = TEXT_WIDTH) -> str:
    """A text cut to `width` characters (an ellipsis marks the cut), its whitespace runs as single spaces."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def predicted_and_label(test: TestOutputs, task: str, rows: torch.Tensor) -> list[tuple[str, str]]:
    """Per example of `rows`: (the prediction as text, with the predicted class's probability for a class task;
    the label as text)."""
    spec = test.tasks[task]
    probs = test.probabilities(task)
    if probs is not None:
        p, index = probs[rows].max(-1)
        predicted = [f"{spec.info.classes[int(i)]} {float(q):.0%}" for i, q in zip(index, p)]
    else:
        predicted = [v if isinstance(v, str) else f"{float(v):.3g}" for v in spec.column(test.outputs[task][rows])]
    labeled = test.labeled(task)
    labeled = (labeled if labeled.ndim == 1 else labeled.any(-1))[rows].tolist()
    truth = [(v if isinstance(v, str) else f"{v:.3g}") if known else "(missing)"
             for v, known in zip(truth_column(test, task, rows), labeled)]
    return list(zip(predicted, truth))
