"""The segmentation kind: one class per pixel among K, a conv head of K scores per pixel, cross-entropy.

Targets are (N, H, W) class indices (int64); -1 marks an unlabeled pixel, and 255 (Cityscapes' and the VOC
convention for "void") is read as -1 too. Metrics: mean intersection over union (mIoU) and pixel accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from hydranet.errors import UserError
from hydranet.files import atomic_path
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.pixels import PixelHead, PixelMaps, label_maps, per_example, pixel_mean, pixel_shares, png_map

VOID = 255  # the other common spelling of "no label" in label PNGs
# Class colours of the predicted masks (class k gets PALETTE[k % len]): matplotlib's tab10, background first black.
OVERLAY = 0.6  # opacity of a mask drawn over its image
PALETTE = np.array([[0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], dtype=np.uint8)


def confusion(target: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(K, K) pixel counts, rows the true class, columns the predicted one, over labeled pixels only."""
    keep = target >= 0
    return np.bincount(classes * target[keep] + predicted[keep], minlength=classes * classes).reshape(classes, classes)


def mean_iou(counts: np.ndarray) -> float:
    """Mean over classes of TP / (TP + FP + FN); a class neither present nor predicted is left out of the mean."""
    tp = np.diag(counts).astype(np.float64)
    union = counts.sum(0) + counts.sum(1) - tp
    seen = union > 0
    return float((tp[seen] / union[seen]).mean())


def _terms(pred: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy per pixel (B, H, W), 0 where unlabeled; cross_entropy wants the classes on axis 1."""
    return F.cross_entropy(pred.permute(0, 3, 1, 2), target, ignore_index=-1, reduction="none", label_smoothing=smoothing)


class Segmentation(PixelMaps):
    """Per-pixel softmax over K classes. A prediction is a whole mask, neither right nor wrong as one label (no
    accuracy, strata or targeted attacks), and its logits are not calibrated per example (no temperature)."""

    name = "segmentation"
    metric_names = ("loss", "miou", "pixel_accuracy")
    main_metric = "miou"
    lower_is_better = frozenset({"loss"})
    squeeze = False

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        """K is one more than the largest class index in the data; the classes are named by their index."""
        maps = label_maps(values, where, self.name)
        maps[~np.isfinite(maps) | (maps < 0) | (maps == VOID)] = -1
        if (maps != np.round(maps)).any():
            raise UserError(f"{where}: segmentation labels are class indices (whole numbers), found {maps[maps != np.round(maps)][0]}")
        maps = maps.astype(np.int64)
        classes = int(maps.max()) + 1
        return torch.from_numpy(maps), TaskInfo(kind=self.name, outputs=classes, classes=[str(k) for k in range(classes)])

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Nothing to learn from the train split's targets."""

    def labeled(self, target: Tensor) -> Tensor:
        return target != -1

    def head(self, channels: int, info: TaskInfo) -> PixelHead:
        return PixelHead(channels, info.outputs, squeeze=False)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return pixel_mean(_terms(pred, target, cfg.label_smoothing), target != -1, weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return per_example(_terms(pred, target, 0.0), target != -1)

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """The class index per pixel (B, H, W)."""
        return pred.argmax(-1)

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        counts = confusion(target, pred.argmax(-1), info.outputs)
        return {"miou": mean_iou(counts), "pixel_accuracy": float(np.diag(counts).sum() / counts.sum())}

    def per_class(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, dict[str, float]]:
        """Per class over the labeled pixels: its IoU (NaN when neither present nor predicted), and its share of the
        true and of the predicted pixels; what the mean IoU averages, for the report."""
        counts = confusion(target, pred.argmax(-1), info.outputs).astype(np.float64)
        tp, true, said = np.diag(counts), counts.sum(1), counts.sum(0)
        union = true + said - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        total = max(counts.sum(), 1.0)
        return {name: {"iou": float(iou[k]), "true_share": float(true[k] / total),
                       "predicted_share": float(said[k] / total)} for k, name in enumerate(info.classes or [])}

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The class index of every pixel (what `column` holds) as a grey PNG, and each class's share of the pixels."""
        return [{"label": png_map(mask), "pixel_shares": pixel_shares(mask, list(info.classes or []))}
                for mask in self.decode(pred, info).cpu().numpy()]

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """The class of a pixel is classes[argmax over the last axis]."""
        return {"decode": "argmax_last_axis", "classes": list(info.classes or [])}

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """One-hot pixels (all zero where unlabeled)."""
        return F.one_hot(target.clamp(min=0), info.outputs).float() * (target != -1)[..., None]

    def from_average(self, average: Tensor) -> Tensor:
        return average.clamp_min(1e-6).log()

    explain_sum = True  # Captum's segmentation tutorial: the class's logits summed over the pixels predicted as it

    def explain_region(self, values: Tensor, index: Tensor) -> Tensor:
        """The pixels predicted as each example's class."""
        return values.argmax(-1) == index.to(values.device)[:, None, None]

    def explain_default(self, values: Tensor, within: Tensor) -> Tensor:
        """The non-background class (background: class 0) predicted on the most pixels `within`; ties go to the
        lowest index, and a mask predicted all background explains the background."""
        counts = (F.one_hot(values.argmax(-1), values.shape[-1]) * within[..., None]).flatten(1, 2).sum(1)  # (B, K)
        if counts.shape[1] == 1:
            return torch.zeros(len(values), dtype=torch.long, device=values.device)
        others = counts[:, 1:]
        return torch.where(others.amax(1) > 0, others.argmax(1) + 1, torch.zeros_like(others[:, 0]))

    def explain_score(self, index: int, info: TaskInfo) -> str:
        classes = info.classes or []
        return f"logit of {classes[index] if index < len(classes) else index}"

    def rgba(self, value: np.ndarray, info: TaskInfo) -> np.ndarray:
        """A mask (predicted, or a target with -1 unlabeled) as PALETTE colours at OVERLAY opacity, to draw over its
        image; an unlabeled pixel is transparent."""
        colours = PALETTE[np.maximum(value, 0) % len(PALETTE)] / 255
        return np.concatenate([colours, np.where(value >= 0, OVERLAY, 0.0)[..., None]], -1)

    def write_output(self, path: Path, value: np.ndarray, info: TaskInfo) -> Path:
        """A predicted mask as a colour-coded PNG (PALETTE); the class indices themselves are the colours' order."""
        path = path.with_suffix(".png")
        with atomic_path(path) as tmp:
            Image.fromarray(PALETTE[value % len(PALETTE)]).save(tmp, format="PNG")
        return path


KIND = Segmentation()
