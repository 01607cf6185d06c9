"""Batches: an epoch's training batches are the ones the trainer always drew (same streams, same order of draws)."""

import torch

from hydranet.config import AugmentConfig, load_config
from hydranet.data import build_dataset
from hydranet.data.augment import apply, draw_epoch
from hydranet.data.batches import Batches
from hydranet.randomness import Purpose, stream


def reference_epoch(data, augment: AugmentConfig, batch_size: int, seed: int, epoch: int) -> list[dict]:
    """The trainer's epoch before batches moved to the data layer: shuffle, normalize, then augment each batch."""
    train, normalize = data.split("train", stored=True), data.normalizer()
    n = len(train["x"])
    order = torch.randperm(n, generator=stream(seed, Purpose.SHUFFLE, epoch))
    _, _, height, width = train["x"].shape
    choices = draw_epoch(augment, n, batch_size, height, width, stream(seed, Purpose.AUGMENT, epoch))
    out = []
    for begin in range(0, n, batch_size):
        batch = {k: v.index_select(0, order[begin:begin + batch_size]) for k, v in train.items()}
        batch["x"] = apply(normalize(batch["x"]), augment, {k: v[begin:begin + batch_size] for k, v in choices.items()})
        out.append(batch)
    return out


def test_epochs_equal_the_reference_bit_for_bit():
    data = build_dataset(load_config("quickstart", ["data.limit=300"]))
    augment = AugmentConfig(crop_padding=1, flip=True, cutout=3)
    batches = Batches(data, torch.device("cpu"), 64, augment, seed=5)
    assert len(batches) == -(-len(data.index["train"]) // 64)
    for epoch in (0, 3):
        got, expected = list(batches.epoch(epoch)), reference_epoch(data, augment, 64, 5, epoch)
        assert len(got) == len(expected) == len(batches)
        for a, b in zip(got, expected):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(next(batches.epoch(0))["x"], next(batches.epoch(1))["x"])  # each epoch its own draws


def test_tables_are_served_as_stored():
    data = build_dataset(load_config("breast-cancer"))
    batches = Batches(data, torch.device("cpu"), 50, AugmentConfig(flip=True), seed=0)
    first = next(batches.epoch(0))
    order = torch.randperm(len(data.index["train"]), generator=stream(0, Purpose.SHUFFLE, 0))[:50]
    assert not batches.augmenting and torch.equal(first["x"], data.split("train")["x"][order])


def test_a_last_batch_of_one_example_is_left_out():
    """BatchNorm cannot normalize one example; shuffling gives the left-out place to another example each epoch."""
    data = build_dataset(load_config("breast-cancer"))
    n = len(data.index["train"])
    batches = Batches(data, torch.device("cpu"), n - 1, AugmentConfig(), seed=0)
    sizes = [len(b["x"]) for b in batches.epoch(0)]
    assert sizes == [n - 1] and len(batches) == 1
    assert [len(b["x"]) for b in Batches(data, torch.device("cpu"), n - 2, AugmentConfig(), seed=0).epoch(0)] == [n - 2, 2]
    assert [len(b["x"]) for b in Batches(data, torch.device("cpu"), 1, AugmentConfig(), seed=0).epoch(0)] == [1] * n
