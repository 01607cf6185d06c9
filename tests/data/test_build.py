"""Target encoding, seeded stratified splits and the dataset builder (train-only statistics, masks)."""

import numpy as np
import pytest
import torch

from hydranet.config import SplitConfig, TaskConfig, load_config
from hydranet.data import build_dataset
from hydranet.data.split import make_splits
from hydranet.data.targets import encode_target
from hydranet.errors import UserError
from hydranet.kinds import get_kind


def test_classification_numeric_order_and_missing():
    y, info = encode_target(np.array([10, 2, None, "?", 2, 1], dtype=object), TaskConfig(kind="classification"), "t")
    assert info.classes == ["1", "2", "10"]  # numbers sort as numbers, not as text
    assert y.tolist() == [2, 1, -1, -1, 1, 0]


def test_binary_positive_and_nan_missing():
    values = np.array(["<=50K", ">50K", "", ">50K"], dtype=object)
    y, info = encode_target(values, TaskConfig(kind="binary"), "t")
    assert info.classes == ["<=50K", ">50K"]
    assert y[:2].tolist() == [0.0, 1.0] and torch.isnan(y[2]) and y[3] == 1.0
    y, info = encode_target(values, TaskConfig(kind="binary", positive="<=50K"), "t")
    assert y[0] == 1.0 and info.classes[1] == "<=50K"


def test_binary_refuses_three_values():
    with pytest.raises(UserError, match="at most two distinct values, found 3"):
        encode_target(np.array(["a", "b", "c"], dtype=object), TaskConfig(kind="binary"), "tasks.x")


def test_binary_positive_of_many_values_means_equal_to_it():
    """marital_status → never-married (the MMoE census task): seven values, one of them positive."""
    values = np.array(["Divorced", "Never-married", None, " Never-married ", "Widowed", "Married-civ-spouse"], dtype=object)
    y, info = encode_target(values, TaskConfig(kind="binary", positive="Never-married"), "t")
    assert y[[0, 1, 3, 4, 5]].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0] and torch.isnan(y[2])
    assert info.classes == ["not Never-married", "Never-married"]
    with pytest.raises(UserError, match="positive value 'Single' not in the column"):
        encode_target(values, TaskConfig(kind="binary", positive="Single"), "t")


def test_binary_positive_refuses_a_near_twin():
    """UCI Adult's test file writes '>50K.': counting it negative under `positive: >50K` would be silent and wrong."""
    values = np.array(["<=50K", ">50K", "<=50K.", ">50K."], dtype=object)
    with pytest.raises(UserError, match="'>50K' and '>50K.' differ only by case or a trailing period"):
        encode_target(values, TaskConfig(kind="binary", positive=">50K"), "t")


def test_multilabel_cells():
    y, info = encode_target(np.array(["cat|dog", "dog", None], dtype=object), TaskConfig(kind="multilabel"), "t")
    assert info.classes == ["cat", "dog"]
    assert y[:2].tolist() == [[1.0, 1.0], [0.0, 1.0]] and torch.isnan(y[2]).all()
    assert get_kind("multilabel").labeled(y).all(1).tolist() == [True, True, False]


def test_regression_refuses_text():
    with pytest.raises(UserError, match="regression needs numbers, found 'tall'"):
        encode_target(np.array(["1.5", "tall"], dtype=object), TaskConfig(kind="regression"), "t")


def test_no_labels_at_all():
    with pytest.raises(UserError, match="tasks.y: has no labels"):
        encode_target(np.array([None, "?", ""], dtype=object), TaskConfig(), "tasks.y")


def test_split_is_seeded_disjoint_and_stratified():
    strata = np.repeat(np.arange(4), 50)
    a = make_splits(200, SplitConfig(val=0.1, test=0.2), seed=3, strata=strata)
    b = make_splits(200, SplitConfig(val=0.1, test=0.2), seed=3, strata=strata)
    assert all(torch.equal(a[k], b[k]) for k in a)
    everything = torch.cat([a["train"], a["val"], a["test"]]).sort().values
    assert torch.equal(everything, torch.arange(200))
    for name, share in (("test", 10), ("val", 5)):  # each class keeps its exact share
        assert np.bincount(strata[a[name].numpy()], minlength=4).tolist() == [share] * 4
    c = make_splits(200, SplitConfig(val=0.1, test=0.2), seed=4, strata=strata)
    assert not torch.equal(a["test"], c["test"])


def test_predefined_split_carves_val_from_train():
    predefined = np.array(["train"] * 80 + ["test"] * 20, dtype=object)
    index = make_splits(100, SplitConfig(val=0.25, test=0.5), seed=0, predefined=predefined)
    assert torch.equal(index["test"], torch.arange(80, 100))  # the source's test split is kept
    assert len(index["val"]) == 20 and len(index["train"]) == 60


def test_build_digits_uses_train_statistics_only():
    cfg = load_config("quickstart")
    data = build_dataset(cfg)
    train = data.split("train")
    assert data.x.shape == (1797, 1, 8, 8)
    assert abs(float(train["x"].mean())) < 1e-4 and abs(float(train["x"].std()) - 1) < 1e-2
    assert abs(float(data.split("test")["x"].mean())) > 1e-5  # test is normalized with train statistics
    ink = data.info.tasks["ink"]
    assert ink.mean == pytest.approx(float(train["ink"].mean()), rel=1e-5)
    assert data.info.tasks["digit"].classes == [str(d) for d in range(10)]


def test_limit_and_missing_column():
    data = build_dataset(load_config("quickstart", ["data.limit=100"]))
    assert len(data.x) == 100
    with pytest.raises(UserError, match="tasks.digit.column: source digits has no column 'nope'"):
        build_dataset(load_config("quickstart", ["tasks.digit.column=nope"]))


def test_images_are_stored_as_read_and_normalized_by_batch():
    """uint8 in memory (a quarter of float32); a normalized batch of the stored split equals the batch of
    the normalized split, bit for bit, so training on stored images changes no number."""
    data = build_dataset(load_config("quickstart"))
    stored, normalized = data.split("train", stored=True), data.split("train")
    assert data.x.dtype == torch.uint8 and stored["x"].dtype == torch.uint8
    assert normalized["x"].dtype == torch.float32
    idx = torch.tensor([5, 0, 17, 3])
    batch = data.normalizer()(stored["x"].index_select(0, idx))
    assert torch.equal(batch, normalized["x"].index_select(0, idx))
    assert torch.equal(stored["digit"], normalized["digit"])
    last = data.normalizer()(stored["x"].contiguous(memory_format=torch.channels_last))
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, normalized["x"])


def test_tables_have_no_normalizer():
    frame_cfg = load_config("breast-cancer")
    data = build_dataset(frame_cfg)
    assert data.normalizer() is None and data.x.dtype == torch.float32
    assert torch.equal(data.split("train", stored=True)["x"], data.split("train")["x"])
