"""The depth kind: one distance per pixel, a conv head of one value per pixel (B, H, W), L1 loss.

Targets are (N, H, W) float32 depths in the data's own units, NaN where invalid (a raw value that is not a
positive finite number is read as invalid, as the zeros of a depth sensor's holes). The head predicts the
standardized depth (train mean and std of the valid pixels in TaskInfo); metrics are in the original units, as the
NYUv2 multi-task papers report them: absolute error, relative error, RMSE and the share within δ < 1.25.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hydranet.kinds.info import TaskInfo
from hydranet.kinds.pixels import PixelHead, PixelMaps, label_maps, npy_map, per_example, pixel_mean, write_float_map

DELTA = 1.25  # Eigen et al. (2014): a pixel is right when max(d̂/d, d/d̂) < 1.25
SMALLEST = 1e-6  # predicted depths are clamped to this before the ratio (a depth is positive)


def _terms(pred: Tensor, target: Tensor, info: TaskInfo) -> tuple[Tensor, Tensor]:
    labeled = ~torch.isnan(target)
    z = torch.where(labeled, (target - info.mean) / info.std, torch.zeros_like(target))
    return F.l1_loss(pred, z, reduction="none"), labeled


def depth_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The standard depth errors over the valid pixels (target not NaN), predicted and true in the same units."""
    keep = ~np.isnan(target)
    d, d_hat = target[keep].astype(np.float64), predicted[keep].astype(np.float64)
    error = np.abs(d_hat - d)
    ratio = np.maximum(np.maximum(d_hat, SMALLEST) / d, d / np.maximum(d_hat, SMALLEST))
    return {"abs_err": float(error.mean()), "abs_rel": float((error / d).mean()),
            "rmse": float(np.sqrt((error ** 2).mean())), "delta1": float((ratio < DELTA).mean())}


class Depth(PixelMaps):
    """Per-pixel regression with a validity mask: no classes, no distribution (no TRADES, no calibration)."""

    name = "depth"
    metric_names = ("loss", "abs_err", "abs_rel", "rmse", "delta1")
    main_metric = "abs_err"
    lower_is_better = frozenset({"loss", "abs_err", "abs_rel", "rmse"})
    squeeze = True

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        maps = label_maps(values, where, self.name).astype(np.float32)
        maps[~(np.isfinite(maps) & (maps > 0))] = np.nan
        return torch.from_numpy(maps), TaskInfo(kind=self.name, outputs=1)

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Mean and std of the train split's valid depths (std 1 when it is 0 or undefined)."""
        d = target[~torch.isnan(target)].double()
        std = float(d.std()) if len(d) > 1 else 0.0
        info.mean, info.std = float(d.mean()), std if std > 0 else 1.0

    def labeled(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def head(self, channels: int, info: TaskInfo) -> PixelHead:
        return PixelHead(channels, 1, squeeze=True)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return pixel_mean(*_terms(pred, target, info), weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return per_example(*_terms(pred, target, info))

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """The depth per pixel in the data's units (B, H, W)."""
        return pred * info.std + info.mean

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        return depth_metrics(pred.astype(np.float64) * info.std + info.mean, target)  # float64: a huge output stays finite

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The depth of every pixel in the data's units (what `column` holds), as float32 .npy."""
        return [{"value": npy_map(depth)} for depth in self.decode(pred, info).cpu().numpy()]

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """The exported graph gives the depths themselves in the data's units (`undecode`)."""
        return {"decode": "identity", "values": "depth in the data's units"}

    def undecode(self, values: Tensor, info: TaskInfo) -> Tensor:
        """Depths in the data's units → the head's standardized output: an exported graph outputs the depths, and
        a reader of its outputs (the server's ONNX backend) turns them back into what `decode` takes."""
        return (values - info.mean) / info.std

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """Standardized, the head's own output space (invalid pixels 0, the train mean)."""
        return torch.nan_to_num((target - info.mean) / info.std)

    def from_average(self, average: Tensor) -> Tensor:
        return average

    def explain_score(self, index: int, info: TaskInfo) -> str:
        return "standardized depth"

    def rgba(self, value: np.ndarray, info: TaskInfo) -> np.ndarray:
        """A depth map (predicted, or a target with NaN invalid) as an opaque colour map: viridis over the train
        depths' mean ± 2 std, the same scale for every picture, so a prediction and its truth compare by colour;
        an invalid pixel is transparent."""
        from matplotlib import colormaps  # only pictures need it; importing it costs every hydranet import otherwise

        scaled = (value - (info.mean - 2 * info.std)) / (4 * info.std)
        colours = colormaps["viridis"](np.clip(np.nan_to_num(scaled), 0, 1))
        colours[..., 3] = np.where(np.isnan(value), 0.0, 1.0)
        return colours

    def write_output(self, path: Path, value: np.ndarray, info: TaskInfo) -> Path:
        """A predicted depth map as float32 .npy in the data's units."""
        return write_float_map(path, value)


KIND = Depth()
