"""Table attributions per source column: one-hot groups summed back to the column they encode, a bar chart of
an example's top columns, and global importance (mean |attribution| per column and task) with its plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from hydranet.data import DataInfo
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.files import write_figure

TOP = 10  # columns shown in an example's bar chart


def source_columns(info: DataInfo) -> tuple[list[str], torch.Tensor]:
    """The raw columns the model reads, and for each encoded feature the index of its column: (1, F) int64,
    the feature mask of kernel_shap, lime and occlusion (a one-hot group is switched on and off as one)."""
    encoder = TableEncoder.from_state(info.encoder)
    group = [i for i, c in enumerate(encoder.columns) for _ in range(encoder.width(c))]
    return [c["name"] for c in encoder.columns], torch.tensor(group, dtype=torch.long)[None]


def coded_inputs(info: DataInfo) -> torch.Tensor:
    """(F,) bool: which model inputs are category codes (`data.encoder.categorical: embedding`), not numbers."""
    if info.encoder is None:
        return torch.zeros(0, dtype=torch.bool)
    return torch.tensor(TableEncoder.from_state(info.encoder).cardinalities) > 0


def refuse_gradients_through_codes(info: DataInfo, method: str) -> None:
    """A category code is looked up, not multiplied: no gradient reaches it, so a gradient method would give
    every embedded column exactly zero. Perturbation methods switch whole codes and stay right."""
    if coded_inputs(info).any():
        raise UserError(f"--method: {method} differentiates the inputs, and this run's category columns are codes "
                        f"looked up in embeddings (data.encoder.categorical: embedding), which have no gradient; use "
                        f"kernel_shap, lime or occlusion")


def train_reference(x: torch.Tensor, coded: torch.Tensor) -> torch.Tensor:
    """The "mean" baseline (1, F) of a table: the mean train value of every number, and the most frequent code of
    every embedded category column (a mean of codes would be an arbitrary category)."""
    reference = x.float().mean(0, keepdim=True)
    if coded.any():
        reference[0, coded] = x[:, coded].float().mode(0).values
    return reference


def per_column(values: torch.Tensor, mask: torch.Tensor, columns: Sequence[str]) -> pd.DataFrame:
    """(N, F) attributions of encoded features → (N, columns): each one-hot group summed into its column."""
    summed = torch.zeros(len(values), len(columns), dtype=values.dtype).index_add_(1, mask[0], values.cpu())
    return pd.DataFrame(summed.numpy(), columns=list(columns))


def importance(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean |attribution| per source column (rows) and task (columns), columns sorted by their largest share."""
    table = pd.DataFrame({task: frame.abs().mean() for task, frame in frames.items()})
    order = table.div(table.sum().replace(0, 1)).max(axis=1).sort_values(ascending=False).index
    table = table.loc[order]
    table.index.name = "column"
    return table.reset_index()


def plot_example(path: Path, row: pd.Series, title: str) -> None:
    """A horizontal bar chart of the TOP columns by |attribution| (red pushes the score up, blue down)."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    top = row.reindex(row.abs().sort_values(ascending=False).index[:TOP])[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.35 * len(top) + 1.2))
    axes.barh(list(top.index), top.to_numpy(), color=np.where(top.to_numpy() >= 0, "tab:red", "tab:blue"))
    axes.axvline(0, color="black", linewidth=0.6)
    axes.set_title(title, fontsize=9)
    axes.set_xlabel("attribution")
    figure.tight_layout()
    write_figure(path, figure)
    plt.close(figure)


def plot_importance(path: Path, table: pd.DataFrame, method: str) -> None:
    """One panel per task: mean |attribution| of every source column, the most important on top."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    tasks = [c for c in table.columns if c != "column"]
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 0.3 * len(table) + 1.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ordered = table.sort_values(task)
        ax.barh(ordered["column"], ordered[task], color="tab:gray")
        ax.set_title(f"{task}: mean |{method}|", fontsize=9)
    figure.tight_layout()
    write_figure(path, figure)
    plt.close(figure)
