"""Image attributions as pictures: per example the input beside its heatmap laid over it, both over the raw image
(the attribution itself lives in the model's normalized input space).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hydranet.data import DataInfo
from hydranet.files import write_figure


def raw_images(info: DataInfo, x: torch.Tensor) -> np.ndarray:
    """Model inputs (N, C, H, W) back to displayable (N, H, W, C) in [0, 1]: the normalization undone (pixels
    0..255 become 0..1); float sources in another range are scaled by their own min and max."""
    mean = torch.tensor(info.mean or [0.0] * x.shape[1]).view(1, -1, 1, 1)
    std = torch.tensor(info.std or [1.0] * x.shape[1]).view(1, -1, 1, 1)
    raw = x.detach().cpu() * std + mean
    if info.scale != 255.0:
        low, high = raw.amin(dim=(1, 2, 3), keepdim=True), raw.amax(dim=(1, 2, 3), keepdim=True)
        raw = (raw - low) / (high - low).clamp_min(1e-12)
    return raw.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def heatmaps(values: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) attributions → (N, H, W): |sum over channels|, each example scaled to [0, 1] by its maximum."""
    heat = values.detach().cpu().sum(1).abs()
    return (heat / heat.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)).numpy()


def boundaries(segments: np.ndarray) -> np.ndarray:
    """(H, W) group ids → (H, W, 4) RGBA: yellow where a pixel's group differs from its right or lower
    neighbour's, transparent elsewhere."""
    edge = np.zeros(segments.shape, dtype=bool)
    edge[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    edge[:-1, :] |= segments[:-1, :] != segments[1:, :]
    return np.where(edge[..., None], np.array([1.0, 0.85, 0.0, 0.9]), np.zeros(4))


def plot_example(path: Path, image: np.ndarray, heat: np.ndarray, title: str, method: str,
                 segments: np.ndarray | None = None, segments_name: str = "", region: np.ndarray | None = None) -> None:
    """Input | heatmap over the input (jet, half transparent); the title carries the prediction. `segments`
    (grouped methods): the groups switched, drawn as boundaries over the input and counted in its caption.
    `region` (per-pixel tasks, (H, W) bool): the pixels whose score is explained, a white line around them on the
    heatmap (none when it is the whole picture)."""
    import matplotlib  # lazy: matplotlib only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    grey = image.shape[-1] == 1
    shown = image[..., 0] if grey else image
    figure, axes = plt.subplots(1, 2, figsize=(5.2, 2.9))
    for ax in axes:
        ax.imshow(shown, cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
    axes[1].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
    caption = "input"
    if segments is not None:
        axes[0].imshow(boundaries(segments), interpolation="nearest")
        caption = f"input: {len(np.unique(segments))} {segments_name}"
    axes[0].set_title(caption, fontsize=8)
    axes[1].set_title(method, fontsize=8)
    if region is not None and not region.all():  # a contour at 1/2 runs between the pixels in and out of it
        axes[1].contour(region.astype(np.float64), levels=[0.5], colors="white", linewidths=1.2)
        axes[1].set_title(f"{method}\nwhite line: around the explained pixels", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    write_figure(path, figure)
    plt.close(figure)
