"""The normals kind: the surface's unit normal at each pixel, a conv head of three values per pixel (B, H, W, 3).

Targets are (N, H, W, 3) float32 unit vectors in camera axes (x right, y down, z away from the camera), NaN where
unlabeled (a raw vector that is not finite or has length 0); raw vectors are scaled to unit length. The loss is
1 − cos(predicted, true) with the prediction normalized first (as LibMTL trains NYUv2's normals); the metrics are the
NYUv2 papers': mean and median angle error in degrees, and the shares of pixels within 11.25°, 22.5° and 30°.
A left-right mirror negates the x component (`mirror`), so flipped images get the normals they show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hydranet.errors import UserError
from hydranet.kinds.info import TaskInfo
from hydranet.kinds.pixels import PixelHead, PixelMaps, npy_map, per_example, pixel_mean, write_float_map

THRESHOLDS = {"within_11": 11.25, "within_22": 22.5, "within_30": 30.0}  # degrees (Eigen & Fergus, 2015)
AXES = 3


def _terms(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """1 − cosine per pixel (B, H, W) and the labeled pixels; unlabeled targets are zeroed first, so no NaN
    reaches the gradient."""
    labeled = ~torch.isnan(target).any(-1)
    truth = torch.nan_to_num(target)
    return 1 - (F.normalize(pred, dim=-1) * truth).sum(-1), labeled


def angle_errors(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Degrees between predicted and true normals (…, 3) over the labeled pixels, flat (float64)."""
    keep = ~np.isnan(target).any(-1)
    p, t = predicted[keep].astype(np.float64), target[keep].astype(np.float64)
    p /= np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    return np.degrees(np.arccos(np.clip((p * t).sum(-1), -1.0, 1.0)))


def normal_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean and median angle error and the share within each threshold, as the NYUv2 multi-task papers report."""
    angles = angle_errors(predicted, target)
    within = {name: float((angles < degrees).mean()) for name, degrees in THRESHOLDS.items()}
    return {"mean_angle": float(angles.mean()), "median_angle": float(np.median(angles)), **within}


def unit_maps(values: np.ndarray, where: str) -> np.ndarray:
    """Raw normal maps → float32 (N, H, W, 3) unit vectors, NaN where a vector is not finite or has length 0."""
    try:
        maps = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        maps = None
    if maps is None or maps.ndim != 4 or maps.shape[-1] != AXES:
        shape = getattr(values, "shape", (len(values),))
        raise UserError(f"{where}: a normals task needs one (H, W, 3) map of vectors per example, got shape {shape}")
    length = np.linalg.norm(np.nan_to_num(maps, nan=np.inf, posinf=np.inf, neginf=np.inf), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(np.isfinite(length) & (length > 0), maps / length, np.nan)
    return unit.astype(np.float32)


def mirror(values: Tensor) -> Tensor:
    """Normals (…, 3) of the left-right mirrored picture: the x component changes sign."""
    return values * values.new_tensor([-1.0, 1.0, 1.0])


class NormalsHead(PixelHead):
    """The pixel head of normals, which knows how its output mirrors (test-time flip averaging)."""

    def mirror(self, out: Tensor) -> Tensor:
        return mirror(out)


class Normals(PixelMaps):
    """Per-pixel unit vectors: no classes, no distribution (no TRADES, no calibration)."""

    name = "normals"
    metric_names = ("loss", "mean_angle", "median_angle", *THRESHOLDS)
    main_metric = "mean_angle"
    lower_is_better = frozenset({"loss", "mean_angle", "median_angle"})
    squeeze = False
    mirror = staticmethod(mirror)

    def encode(self, values: np.ndarray, missing: np.ndarray, cfg: Any, where: str) -> tuple[Tensor, TaskInfo]:
        return torch.from_numpy(unit_maps(values, where)), TaskInfo(kind=self.name, outputs=AXES, classes=["x", "y", "z"])

    def fit(self, info: TaskInfo, target: Tensor) -> None:
        """Nothing to learn: unit vectors need no scaling."""

    def labeled(self, target: Tensor) -> Tensor:
        """(N, H, W): a pixel is labeled or not as a whole vector."""
        return ~torch.isnan(target).any(-1)

    def head(self, channels: int, info: TaskInfo) -> NormalsHead:
        return NormalsHead(channels, AXES, squeeze=False)

    def loss(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any, weight: Tensor | None = None) -> Tensor:
        return pixel_mean(*_terms(pred, target), weight)

    def example_losses(self, pred: Tensor, target: Tensor, info: TaskInfo, cfg: Any) -> Tensor:
        return per_example(*_terms(pred, target))

    def decode(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """Unit normals (B, H, W, 3)."""
        return F.normalize(pred, dim=-1)

    def metrics(self, pred: np.ndarray, target: np.ndarray, info: TaskInfo) -> dict[str, float]:
        return normal_metrics(pred, target)

    def answer(self, pred: Tensor, info: TaskInfo, cfg: Any) -> list[dict[str, Any]]:
        """The unit normal of every pixel (what `column` holds), as float32 .npy (H, W, 3)."""
        return [{"value": npy_map(normals)} for normals in self.decode(pred, info).cpu().numpy()]

    def decoding(self, info: TaskInfo, cfg: Any) -> dict[str, Any]:
        """The exported graph gives the unit normals themselves (`undecode`), (x, y, z) on the last axis."""
        return {"decode": "identity", "values": "unit normals", "classes": list(info.classes or [])}

    def undecode(self, values: Tensor, info: TaskInfo) -> Tensor:
        """Unit normals are a head output `decode` maps to themselves (normalizing is idempotent)."""
        return values

    def average_target(self, target: Tensor, info: TaskInfo) -> Tensor:
        """The vectors themselves (0 where unlabeled): a neighbour average points the common way."""
        return torch.nan_to_num(target)

    def from_average(self, average: Tensor) -> Tensor:
        return average

    def explain_values(self, pred: Tensor, info: TaskInfo) -> Tensor:
        """The unit normals (what `decode` gives): the raw vector's length means nothing."""
        return F.normalize(pred, dim=-1)

    def explain_default(self, values: Tensor, within: Tensor) -> Tensor:
        """The axis whose mean component over the pixels `within` is largest in size: the way the region faces."""
        weights = within.to(values.dtype)[..., None]
        mean = (values * weights).flatten(1, 2).sum(1) / weights.flatten(1, 2).sum(1).clamp_min(1)  # (B, 3)
        return mean.abs().argmax(1)

    def explain_score(self, index: int, info: TaskInfo) -> str:
        return f"{(info.classes or ['x', 'y', 'z'])[index]} of the unit normal"

    def rgba(self, value: np.ndarray, info: TaskInfo) -> np.ndarray:
        """Unit normals (predicted, or a target with NaN unlabeled) as the usual colours (x, y, z) → (r, g, b) =
        (n + 1) / 2, opaque; an unlabeled pixel is transparent."""
        colours = np.clip((np.nan_to_num(value) + 1) / 2, 0, 1)
        return np.concatenate([colours, np.where(np.isnan(value).any(-1), 0.0, 1.0)[..., None]], -1)

    def write_output(self, path: Path, value: np.ndarray, info: TaskInfo) -> Path:
        """A predicted normal map as float32 .npy (H, W, 3)."""
        return write_float_map(path, value)


KIND = Normals()
