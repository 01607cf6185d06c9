"""Training curves as a PNG: per task, loss (train and val) and the first val metric per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers
import matplotlib.pyplot as plt  # noqa: E402

from hydranet.files import write_figure  # noqa: E402


def plot_curves(history: list[dict], path: Path) -> None:
    """One column per task: loss on top, its first validation metric below."""
    if not history:
        return
    tasks = [t for t in history[0]["train"] if t != "loss"]
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(2, len(tasks), figsize=(4 * len(tasks), 6), squeeze=False)
    for col, task in enumerate(tasks):
        loss_ax, metric_ax = axes[0][col], axes[1][col]
        loss_ax.plot(epochs, [r["train"][task].get("loss") for r in history], label="train")
        if "val" in history[0] and task in history[0]["val"]:
            loss_ax.plot(epochs, [r["val"][task].get("loss") for r in history], label="val")
            metric = next((m for m in history[0]["val"][task] if m != "loss"), None)
            if metric:
                metric_ax.plot(epochs, [r["val"][task].get(metric) for r in history], color="C1")
                metric_ax.set_ylabel(f"val {metric}")
        loss_ax.set_title(task)
        loss_ax.set_ylabel("loss")
        loss_ax.legend()
        metric_ax.set_xlabel("epoch")
    fig.tight_layout()
    write_figure(path, fig)
    plt.close(fig)
