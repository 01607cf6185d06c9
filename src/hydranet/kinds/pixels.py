"""What the per-pixel kinds (segmentation, depth, edges, normals) share: label maps as targets, the conv head,
example losses.

A dense target holds one label per pixel, (N, H, W) (normals: a vector, (N, H, W, 3)), marking missing pixels in
itself (-1 or NaN) as the per-example kinds mark a missing label; its head gives (B, H, W, K) scores or (B, H, W)
values: the pixel axes come first, so "a row of class scores belongs to its one target" and a left-right mirror is
`flip(2)` for every dense output (plus the kind's `mirror` of the values themselves, normals' x).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.files import write_npy


class PixelHead(nn.Module):
    """A light conv head at the trunk's output resolution: 3×3 conv → ReLU → 1×1 conv to `outputs` channels,
    returned channels-last (B, H, W, outputs), or (B, H, W) when `squeeze` (one value per pixel)."""

    def __init__(self, channels: int, outputs: int, squeeze: bool):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, outputs, 1))
        self.squeeze = squeeze

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x).permute(0, 2, 3, 1)  # (B, C, H, W) → (B, H, W, outputs)
        return out.squeeze(-1) if self.squeeze else out


def label_maps(values: np.ndarray, where: str, kind: str) -> np.ndarray:
    """A dense task's raw labels as float64 (N, H, W): one map of numbers per example, anything else is the user's."""
    try:
        maps = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        maps = None
    if maps is None or maps.ndim != 3:
        shape = getattr(values, "shape", (len(values),))
        raise UserError(f"{where}: a {kind} task needs one (H, W) map of numbers per example, got shape {shape}")
    return maps


def pixel_sums(terms: Tensor, labeled: Tensor) -> tuple[Tensor, Tensor]:
    """Each example's sum of labeled pixel terms and its count of labeled pixels, (B,) each.

    Summing per example first makes a batch's loss independent of the examples around it: an unlabeled example
    adds exact zeros at the end of the sum, so dropping it changes no bit (a flat sum over every pixel would
    regroup the additions)."""
    terms = torch.where(labeled, terms, torch.zeros_like(terms))
    return terms.flatten(1).sum(1), labeled.flatten(1).sum(1).to(terms.dtype)


def pixel_mean(terms: Tensor, labeled: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean over the labeled pixels, Σ w·ℓ / Σ w with example weights (each labeled pixel counts its example's
    weight, as `masking.masked_mean`); 0, still in the graph, when none is labeled or every weight is 0."""
    sums, counts = pixel_sums(terms, labeled)
    if weight is not None:
        weight = weight.to(sums.dtype)
        sums, counts = sums * weight, counts * weight
    total = counts.sum()
    # the sum over examples in float64: exact for a batch's float32 terms, so no SIMD lane order (which shifts
    # when an unlabeled example is dropped, and with the thread count) changes a bit of the float32 result
    mean = sums.double().sum() / torch.where(total > 0, total, torch.ones_like(total)).double()
    return mean.to(sums.dtype)


def per_example(terms: Tensor, labeled: Tensor) -> Tensor:
    """Mean of each example's labeled pixel terms (B,), 0 for an example without any."""
    sums, counts = pixel_sums(terms, labeled)
    return sums / counts.clamp(min=1)


def cells(maps: np.ndarray) -> np.ndarray:
    """An object array with one map per example, so a table column can hold it."""
    out = np.empty(len(maps), dtype=object)
    out[:] = list(maps)
    return out


def write_float_map(path: Path, value: np.ndarray) -> Path:
    """A predicted map of values (depth, normals) as float32 .npy beside `path`'s name: the numbers themselves,
    which no image format holds."""
    path = path.with_suffix(".npy")
    write_npy(path, value.astype(np.float32))
    return path


class PixelMaps:
    """What every dense kind means for a prediction table: the column holds one (H, W) map per example (`predict`
    writes each as the kind's file), under the task's own name. A map is neither right nor wrong as one label (no
    accuracy strata, no targeted attacks, no divergence to attack with) and is not calibrated by one temperature."""

    dense = True
    single_label = False
    class_scores = False
    divergence = None
    temperature_scaling = False

    explain_sum = False  # `hydranet explain` attributes the mean of a region's values (segmentation: their sum)

    def column(self, decoded: np.ndarray, info: Any, cfg: Any) -> Any:
        return cells(decoded)

    def column_name(self, task: str, info: Any) -> str:
        return task

    def explain_values(self, pred: Tensor, info: Any) -> Tensor:
        """The per-pixel values whose region sum or mean `hydranet explain` attributes, channels last (B, H, W, K):
        the raw head output (logits, standardized values), as for the per-example kinds."""
        return pred if pred.ndim == 4 else pred[..., None]

    def explain_region(self, values: Tensor, index: Tensor) -> Tensor | None:
        """(B, H, W) bool: the pixels predicted as output `index` (B,), the region explained by default; None for a
        kind that predicts no region (every pixel is explained)."""
        return None

    def explain_default(self, values: Tensor, within: Tensor) -> Tensor:
        """(B,) int64: the output explained when no --target is given, from the values of the pixels `within`
        (B, H, W) bool; a kind with one output explains it."""
        return torch.zeros(len(values), dtype=torch.long, device=values.device)

    def explain_score(self, index: int, info: Any) -> str:
        """What output `index` of `explain_values` is, for the explanation's target names."""
        return "value"


def png_map(indices: np.ndarray) -> dict[str, str]:
    """A map of class indices as a server answers it: {"png": base64 of a lossless grey PNG whose pixel values are
    the indices} (8-bit up to 256 classes, else 16-bit), a fraction of the nested list's size."""
    mode, dtype = ("L", np.uint8) if indices.max(initial=0) < 256 else ("I;16", np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(indices.astype(dtype), mode=mode).save(buffer, format="PNG")
    return {"png": base64.b64encode(buffer.getvalue()).decode("ascii")}


def npy_map(values: np.ndarray) -> dict[str, str]:
    """A map of values as a server answers it: {"npy": base64 of the float32 .npy file} (`numpy.load` reads it
    back bit for bit; no image format holds the numbers themselves)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(values, dtype=np.float32), allow_pickle=False)
    return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}


def map_values(encoded: dict[str, str]) -> np.ndarray:
    """The array of a `png_map` or `npy_map` answer."""
    (encoding, data), = encoded.items()
    raw = io.BytesIO(base64.b64decode(data))
    return np.asarray(Image.open(raw)).astype(np.int64) if encoding == "png" else np.load(raw, allow_pickle=False)


def is_encoded_map(value: Any) -> bool:
    """Whether an answer's value is a map `png_map` or `npy_map` made."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("png", "npy")


def pixel_shares(indices: np.ndarray, classes: list[str]) -> dict[str, float]:
    """The share of one map's pixels predicted as each class (they sum to 1): what a server counts and a user reads
    without decoding the map."""
    counts = np.bincount(indices.ravel(), minlength=len(classes))
    return {name: float(count / indices.size) for name, count in zip(classes, counts)}
