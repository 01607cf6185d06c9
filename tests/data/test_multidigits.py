"""The multidigits source: every canvas is the max-overlay of its two digits at their corners, splits never share a digit."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from hydranet import registry
from hydranet.config import SplitConfig, load_config
from hydranet.data import build_dataset
from hydranet.data.sources.multidigits import CANVAS, DIGIT, PAIRS, SHIFT, make_pairs, overlay


@pytest.fixture(scope="module")
def raw():
    return registry.get("source", "multidigits")(load_config("multidigits"))


def reference_canvas(pixels, left, right, corners):
    """One pair by hand: paste the left digit, then the right one with a pixel-wise max."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    y, x, v, u = corners
    canvas[y:y + DIGIT, x:x + DIGIT] = pixels[left]
    canvas[v:v + DIGIT, u:u + DIGIT] = np.maximum(canvas[v:v + DIGIT, u:u + DIGIT], pixels[right])
    return canvas


def test_shapes_labels_and_splits(raw):
    assert raw.images.shape == (PAIRS, 1, CANVAS, CANVAS) and raw.images.dtype == torch.uint8
    assert set(raw.labels) == {"left", "right"}
    for name in ("left", "right"):
        assert raw.labels[name].dtype == np.int64 and set(raw.labels[name].tolist()) == set(range(10))
    counts = {s: int((raw.split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 7000, "val": 1000, "test": 2000}  # the experiment's val 0.1, test 0.2


def test_every_canvas_is_the_overlay_of_its_two_digits(raw):
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    pairs = make_pairs(len(pixels), SplitConfig(val=0.1, test=0.2), seed=0)
    assert np.array_equal(raw.labels["left"], digits.target[pairs["left"]])
    assert np.array_equal(raw.labels["right"], digits.target[pairs["right"]])
    for i in range(0, PAIRS, 97):
        expected = reference_canvas(pixels, pairs["left"][i], pairs["right"][i], pairs["offsets"][i])
        assert np.array_equal(raw.images[i, 0].numpy(), expected), i
    # left at the top left, right at the bottom right, both moved by at most SHIFT, so they overlap
    far = CANVAS - DIGIT
    assert pairs["offsets"][:, :2].min() == 0 and pairs["offsets"][:, :2].max() == SHIFT
    assert pairs["offsets"][:, 2:].max() == far and pairs["offsets"][:, 2:].min() == far - SHIFT


def test_overlay_is_a_pixelwise_max_where_digits_meet():
    pixels = np.stack([np.full((DIGIT, DIGIT), 10, np.uint8), np.full((DIGIT, DIGIT), 200, np.uint8)])
    pairs = {"left": np.array([1]), "right": np.array([0]), "offsets": np.array([[0, 0, 4, 4]])}
    canvas = overlay(pixels, pairs)[0]
    assert canvas[4, 4] == 200 and canvas[0, 0] == 200 and canvas[11, 11] == 10 and canvas[0, 11] == 0


def test_test_pairs_use_no_training_digit():
    pairs = make_pairs(1797, SplitConfig(val=0.1, test=0.2), seed=3)
    used = {s: set(pairs["left"][pairs["split"] == s]) | set(pairs["right"][pairs["split"] == s]) for s in ("train", "val", "test")}
    assert not used["train"] & used["test"] and not used["train"] & used["val"] and not used["val"] & used["test"]


def test_deterministic_from_the_seed():
    a, b = make_pairs(1797, SplitConfig(), 1), make_pairs(1797, SplitConfig(), 1)
    c = make_pairs(1797, SplitConfig(), 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["left"], c["left"])


def test_limit_keeps_predefined_splits():
    data = build_dataset(load_config("multidigits", ["data.limit=500"]))
    assert data.x.shape == (500, 1, CANVAS, CANVAS)
    sizes = {s: len(i) for s, i in data.index.items()}
    assert sum(sizes.values()) == 500 and sizes["test"] > 50 and sizes["val"] > 20
