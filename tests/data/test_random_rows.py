"""random_rows: a seeded random subset across classes, not the first rows of a class-sorted split."""

import torch

from hydranet.data.split import random_rows


def test_a_class_sorted_split_gives_every_class():
    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as CIFAR-10's test folder is stored
    arrays = {"x": torch.arange(1000).float(), "label": labels}
    rows = random_rows(arrays, 100, seed=0)
    assert len(rows["label"]) == 100 and set(rows["label"].tolist()) == set(range(10))
    assert torch.equal(rows["label"], labels[rows["x"].long()])  # arrays stay aligned
    assert torch.all(rows["x"][1:] > rows["x"][:-1])  # split order kept
    assert torch.equal(random_rows(arrays, 100, seed=0)["x"], rows["x"])  # seeded
    assert not torch.equal(random_rows(arrays, 100, seed=1)["x"], rows["x"])


def test_no_limit_or_a_large_one_keeps_everything():
    arrays = {"x": torch.arange(5)}
    assert random_rows(arrays, None, 0) is arrays and random_rows(arrays, 5, 0) is arrays
