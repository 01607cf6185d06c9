"""The edges kind: is each pixel on a boundary? A conv head of one logit per pixel (B, H, W), binary cross-entropy.

Targets are (N, H, W) float32: 1 edge, 0 no edge, NaN unlabeled. Label PNGs write an edge as 1 or 255 (BSDS and
most edge-detection sets); a negative or non-finite value is unlabeled. The metric is the pixel-wise F-score at one
fixed threshold (probability 1/2), with its precision and recall: the threshold does not move with the data, so the
score of a run is one number anyone recomputes from its predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from hydranet.errors import UserError
from hydranet.files import atomic_path
from hydranet.kinds.binary import bce_terms
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.pixels import PixelHead, PixelMaps, label_maps, npy_map, per_example, pixel_mean, pixel_shares

EDGE_VALUES = (1.0, 255.0)  # how label maps write "edge" (0 is "no edge")


def edge_fscore(edge: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """F-score, precision and recall of predicted edge pixels (`edge`, bool) over the labeled pixels of `target`
    (1, 0, NaN unlabeled). With no edge predicted the precision is 0, with no true edge the recall is 0, and the
    F-score of two zeros is 0: a model that never fires scores nothing."""
    keep = ~np.isnan(target)
    truth, said = target[keep] > 0.5, edge[keep]
    hits = float((truth & said).sum())
    precision = hits / said.sum() if said.any() else 0.0
    recall = hits / truth.sum() if truth.any() else 0.0
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"fscore": float(fscore), "precision": float(precision), "recall": float(recall)}


class Edges(PixelMaps):
    """Per-pixel binary with a validity mask. Its maps are neither right nor wrong as one label (no accuracy,
    strata or attacks), and its pixel probabilities are not calibrated as a whole (no temperature)."""

    name = "edges"
    metric_names = ("loss", "fscore", "precision", "recall")
    main_metric = "fscore"
    lower_is_better = frozenset({"loss"})
    squeeze = True

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        maps = label_maps(values, where, self.name)
        maps[~np.isfinite(maps) | (maps < 0)] = np.nan
        labeled = ~np.isnan(maps)
        odd = labeled & (maps != 0) & ~np.isin(maps, EDGE_VALUES)
        if odd.any():
            raise UserError(f"{where}: edge labels are 0 (no edge) and 1 or 255 (edge), found {maps[odd][0]:g}")
        maps[labeled] = (maps[labeled] > 0).astype(np.float64)
        return torch.from_numpy(maps.astype(np.float32)), TaskInfo(kind=self.name, outputs=1, classes=["no edge", "edge"])

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Nothing to learn from the train split's targets."""

    def labeled(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def head(self, channels: int, info: TaskInfo) -> PixelHead:
        return PixelHead(channels, 1, squeeze=True)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return pixel_mean(*bce_terms(pred, target), weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return per_example(*bce_terms(pred, target))

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """The probability that each pixel is an edge (B, H, W)."""
        return torch.sigmoid(pred)

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        return edge_fscore(pred > 0, target)  # logit 0 is probability 1/2

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The edge probability of every pixel (what `column` holds) as float32 .npy, and the shares of pixels
        without and with an edge at the metric's threshold (probability 1/2)."""
        return [{"probability": npy_map(edge), "pixel_shares": pixel_shares((edge > 0.5).astype(np.int64),
                                                                            list(info.classes or []))}
                for edge in self.decode(pred, info).cpu().numpy()]

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """sigmoid(output) is each pixel's probability of classes[1], an edge."""
        return {"decode": "sigmoid", "classes": list(info.classes or [])}

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """0/1 per pixel (0 where unlabeled): a neighbour average is the share of edges."""
        return torch.nan_to_num(target)

    def from_average(self, average: Tensor) -> Tensor:
        """Share of edges → logit."""
        return torch.logit(average.clamp(1e-6, 1 - 1e-6))

    def explain_region(self, values: Tensor, index: Tensor) -> Tensor:
        """The pixels predicted as edges (probability above 1/2, the metric's threshold)."""
        return values[..., 0] > 0

    def explain_score(self, index: int, info: TaskInfo) -> str:
        return "edge logit"

    def rgba(self, value: np.ndarray, info: TaskInfo) -> np.ndarray:
        """Edge probabilities (or a target: 1, 0, NaN unlabeled) as white whose opacity is the probability, to
        draw over the image: edges show, the rest of the picture stays visible."""
        white = np.ones((*value.shape, 4))
        white[..., 3] = np.nan_to_num(value)
        return white

    def write_output(self, path: Path, value: np.ndarray, info: TaskInfo) -> Path:
        """A predicted edge map as an 8-bit grey PNG: the probability × 255, white on the edges."""
        path = path.with_suffix(".png")
        with atomic_path(path) as tmp:
            Image.fromarray(np.round(value * 255).astype(np.uint8)).save(tmp, format="PNG")
        return path


KIND = Edges()
