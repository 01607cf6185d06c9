"""`multidigits`: two bundled 8×8 digits overlaid on one 12×12 canvas, tasks `left` and `right`.

MultiMNIST (Sabour et al., 2017) in the layout of the MGDA paper (Sener & Koltun, 2018), built from scikit-learn's digits.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from hydranet.config import Config, SplitConfig
from hydranet.data.dataset import RawData
from hydranet.data.images import resize_images
from hydranet.randomness import Purpose, numpy_stream
from hydranet.registry import register

DIGIT = 8  # side of a scikit-learn digit
CANVAS = 12  # MGDA puts 28-pixel digits on a 36-pixel canvas; 8 · 36/28 ≈ 10, plus room for the shift
SHIFT = 1  # each digit moves 0..SHIFT pixels towards the centre, so the two overlap by 4 to 6 pixels a side
PAIRS = 10_000  # pairs in all splits together; `data.limit` takes fewer


@register("source", "multidigits")
def load_multidigits(cfg: Config) -> RawData:
    """10,000 two-digit images (uint8 (N, 1, 12, 12)) with predefined splits whose source images are disjoint."""
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), as the digits source
    pairs = make_pairs(len(pixels), cfg.data.split, cfg.seed)
    canvas = overlay(pixels, pairs)
    labels = {"left": digits.target[pairs["left"]].astype(np.int64), "right": digits.target[pairs["right"]].astype(np.int64)}
    images = resize_images(torch.from_numpy(canvas[:, None]), cfg.data.image_size)
    return RawData(labels=labels, images=images, split=pairs["split"])


def make_pairs(n_images: int, split: SplitConfig, seed: int, n_pairs: int = PAIRS) -> dict[str, np.ndarray]:
    """Which two images each pair overlays, where, and its split; deterministic from the seed.

    The source images are first split into disjoint train/val/test pools (fractions of `data.split`) and
    each pair draws both digits from its own split's pool, so no test image was ever seen in training;
    pairs drawn at random and split afterwards would put every test digit into some training pair.
    """
    rng = numpy_stream(seed, Purpose.PAIRS)
    pool_of = _assign(n_images, split, rng)
    pair_split = _assign(n_pairs, split, rng)
    left, right = np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs, dtype=np.int64)
    for name in ("train", "val", "test"):
        pool, rows = np.flatnonzero(pool_of == name), np.flatnonzero(pair_split == name)
        left[rows] = rng.choice(pool, size=len(rows))
        right[rows] = rng.choice(pool, size=len(rows))
    shifts = rng.integers(0, SHIFT + 1, size=(n_pairs, 4))  # (dy, dx) of the left digit, then of the right
    far = CANVAS - DIGIT
    offsets = np.concatenate([shifts[:, :2], far - shifts[:, 2:]], axis=1)  # top-left corners (y, x, y, x)
    return {"left": left, "right": right, "offsets": offsets, "split": pair_split}


def _assign(n: int, split: SplitConfig, rng: np.random.Generator) -> np.ndarray:
    """'test' for a random `split.test` share of n items, 'val' for the next `split.val` share, 'train' for the rest."""
    order = rng.permutation(n)
    n_test, n_val = round(n * split.test), round(n * split.val)
    names = np.array(["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val), dtype=object)
    out = np.empty(n, dtype=object)
    out[order] = names
    return out


def overlay(pixels: np.ndarray, pairs: dict[str, np.ndarray]) -> np.ndarray:
    """(N, CANVAS, CANVAS) uint8: the left digit at its corner, the right at its own, pixel-wise max where they meet.

    One vectorized paste per distinct corner (at most (SHIFT+1)² of each), not a Python loop over pairs.
    """
    canvas = np.zeros((len(pairs["left"]), CANVAS, CANVAS), dtype=np.uint8)
    for which, cols in (("left", slice(0, 2)), ("right", slice(2, 4))):
        corners = pairs["offsets"][:, cols]
        for y, x in np.unique(corners, axis=0):
            rows = np.flatnonzero((corners[:, 0] == y) & (corners[:, 1] == x))
            window = canvas[rows, y:y + DIGIT, x:x + DIGIT]
            canvas[rows, y:y + DIGIT, x:x + DIGIT] = np.maximum(window, pixels[pairs[which][rows]])
    return canvas
