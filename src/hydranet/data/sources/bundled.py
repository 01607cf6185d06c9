"""Data sets bundled with scikit-learn, so hydranet runs with no file and no network.

`digits` (1,797 8×8 grey images; tasks digit, ink, parity) and `breast_cancer` (569 rows, 30 features).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer, load_digits

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.images import resize_images
from hydranet.data.sources.table import select_features
from hydranet.registry import register


@register("source", "digits")
def load_digits_source(cfg: Config) -> RawData:
    """Digit images with three tasks of different kinds: the class, a regression target and a binary one."""
    bunch = load_digits()
    # Pixels are 0..16 counts; scaling to 0..255 makes digits look like any other uint8 image set.
    pixels = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8)
    images = torch.from_numpy(pixels[:, None])  # (N, 1, 8, 8)
    digit = bunch.target.astype(np.int64)
    labels = {
        "digit": digit,
        # How much ink the stroke uses: a regression target that the image determines exactly.
        "ink": (pixels.reshape(len(pixels), -1).mean(axis=1) / 255).astype(np.float32),
        "parity": np.where(digit % 2 == 0, "even", "odd").astype(object),
    }
    return RawData(labels=labels, images=resize_images(images, cfg.data.image_size))


@register("source", "breast_cancer")
def load_breast_cancer_source(cfg: Config) -> RawData:
    """The Wisconsin breast cancer table: 30 numeric features, task `diagnosis` (malignant/benign)."""
    bunch = load_breast_cancer()
    frame = pd.DataFrame(bunch.data, columns=list(bunch.feature_names))
    diagnosis = np.asarray(bunch.target_names, dtype=object)[bunch.target]
    frame = select_features(frame, cfg, exclude={"diagnosis": "the task column"}, where="breast_cancer")
    return RawData(labels={"diagnosis": diagnosis}, frame=frame)


load_breast_cancer_source.inputs = "table"  # type: ignore[attr-defined]  (the config's default trunk follows it)
