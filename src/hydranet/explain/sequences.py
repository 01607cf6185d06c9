"""Step attributions of numeric-sequence runs: Integrated Gradients and saliency on the model input (N, T, F + 1),
whose features are standardized with the train statistics and whose last channel says which steps are real.

The baseline sets every feature of every step to zero, the train mean once standardized, and keeps the validity
channel, so padding stays padding on the whole path: the trunk reads its mask from that channel (> 0.5) and no
gradient reaches it, padded steps hold 0 in input and baseline alike, and the attributions of the real steps'
features add up to f(x) − f(baseline), the completeness checked as for images, tables and texts.

Written results: steps.csv (one row per real step: its values in the data's units and the attribution of each
feature) and example-<i>.png (the values over the steps above the per-step attribution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hydranet.data import DataInfo
from hydranet.explain.methods import check_per_element
from hydranet.files import write_csv, write_figure



def check_method(method: str, baseline_name: str | None) -> None:
    check_per_element(method, baseline_name, runs="numeric-sequence", attributed="attributions per step and feature",
                      kind="sequence", zeros="every feature at its train mean, padding kept")


def baseline(x: Tensor) -> Tensor:
    """x with every feature at zero (its train mean, standardized) and the validity channel as it is."""
    return torch.cat([torch.zeros_like(x[..., :-1]), x[..., -1:]], dim=-1)


def feature_names(info: DataInfo) -> list[str]:
    """f0, f1, …: the features in the order of the trained `x` (an .npz has no names for them)."""
    return [f"f{i}" for i in range(info.input_shape[1] - 1)]


def raw_values(info: DataInfo, x: Tensor) -> Tensor:
    """Model inputs' features back in the data's units (N, T, F); padded steps are 0."""
    valid = x[..., -1:]
    return (x[..., :-1].double() * torch.tensor(info.std, dtype=torch.float64)
            + torch.tensor(info.mean, dtype=torch.float64)) * valid


def step_table(info: DataInfo, x: Tensor, values: Tensor, inputs: list[str], targets: list[str]) -> pd.DataFrame:
    """One row per real step of each example (padding left out): input, target, step, each feature's value (the
    data's units), each feature's attribution, and the step's attribution (their sum)."""
    names = feature_names(info)
    raw = raw_values(info, x.cpu()).numpy()
    per_feature = values[..., :-1].double().cpu().numpy()
    real = (x[..., -1] > 0.5).cpu().numpy()
    example, step = np.nonzero(real)
    frame = pd.DataFrame({"input": np.asarray(inputs, dtype=object)[example],
                          "target": np.asarray(targets, dtype=object)[example], "step": step})
    for i, name in enumerate(names):
        frame[name] = raw[example, step, i]
    for i, name in enumerate(names):
        frame[f"attribution_{name}"] = per_feature[example, step, i]
    frame["attribution"] = per_feature[example, step].sum(-1)
    return frame


def plot_example(ax_values, ax_steps, steps: pd.DataFrame, names: list[str], title: str) -> None:
    """One example on two axes: each feature's values over its real steps, and each step's attribution (red
    raises the explained score, blue lowers it)."""
    for name in names:
        ax_values.plot(steps["step"], steps[name], marker=".", ms=3, lw=1, label=name)
    ax_values.set_title(title, fontsize=7)
    ax_values.set_ylabel("value", fontsize=8)
    if len(names) > 1:
        ax_values.legend(frameon=False, fontsize=7)
    score = steps["attribution"].to_numpy()
    ax_steps.bar(steps["step"], score, color=np.where(score >= 0, "#dc322f", "#268bd2"))
    ax_steps.axhline(0, color="0.6", lw=0.6)
    ax_steps.set_ylabel("attribution", fontsize=8)
    ax_steps.set_xlabel("step", fontsize=8)
    for ax in (ax_values, ax_steps):
        ax.tick_params(labelsize=7)


def write_steps(folder: Path, info: DataInfo, table: pd.DataFrame, titles: list[str], method: str) -> None:
    """steps.csv and example-<i>.png per example."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    write_csv(folder / "steps.csv", table)
    names = feature_names(info)
    for i, ((name, steps), title) in enumerate(zip(table.groupby("input", sort=False), titles)):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4), dpi=100, sharex=True)
        plot_example(top, bottom, steps, names, f"{name}: {title}\n{method}")
        fig.tight_layout()
        write_figure(folder / f"example-{i}.png", fig)
        plt.close(fig)
