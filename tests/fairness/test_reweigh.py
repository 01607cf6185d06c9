"""Per-example loss weights and reweighing: the Kamiran–Calders formula on a hand-computed table, weights built
from the config (`data.weight_column`, `fairness.mitigation: reweigh`), and unit weights training bit for bit as
no weights."""

import numpy as np
import pandas as pd
import pytest
import torch

from hydranet import registry
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.dataset import weight_key
from hydranet.errors import UserError
from hydranet.fairness import reweigh
from hydranet.train import fit
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer
from tests.fairness.conftest import fair_config


def test_reweigh_is_p_group_times_p_label_over_their_joint():
    groups = np.array(["a"] * 6 + ["b"] * 4 + ["a"])
    labels = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0, -1])  # the last example has no label: weight 1, not counted
    weights = reweigh(groups, labels)
    # P(a) = .6, P(b) = .4, P(1) = P(0) = .5; P(a,1) = .4, P(a,0) = .2, P(b,1) = .1, P(b,0) = .3
    expected = [.3 / .4] * 4 + [.3 / .2] * 2 + [.2 / .1] + [.2 / .3] * 3 + [1.0]
    np.testing.assert_allclose(weights, expected)
    labelled = labels >= 0
    for g in "ab":
        for y in (0, 1):
            cell = (groups == g) & (labels == y)
            joint = weights[cell].sum() / weights[labelled].sum()
            assert joint == pytest.approx(np.mean(groups[labelled] == g) * np.mean(labels[labelled] == y))


def test_reweigh_counts_the_users_weights():
    """With `data.weight_column`, the probabilities are weighted counts: weight 2 is the example twice."""
    groups, labels = np.array(["a", "a", "b", "b", "b"]), np.array([1, 0, 1, 0, 0])
    twice = reweigh(np.repeat(groups, [2, 1, 1, 1, 1]), np.repeat(labels, [2, 1, 1, 1, 1]))
    np.testing.assert_allclose(reweigh(groups, labels, np.array([2.0, 1, 1, 1, 1])), twice[[0, 2, 3, 4, 5]])


def test_dataset_carries_reweigh_weights_of_the_train_split_for_the_mitigated_task(fair_csv):
    cfg = load_config(fair_config(fair_csv, fairness={"sensitive": ["sex"], "mitigation": "reweigh",
                                                      "tasks": ["income"]}))
    data = build_dataset(cfg)
    assert set(data.weights) == {"income"}  # `size` is not mitigated: its loss stays the plain mean
    train = data.index["train"]
    frame = pd.read_csv(fair_csv)
    expected = reweigh(frame["sex"].to_numpy()[train], data.targets["income"][train].long().numpy())
    np.testing.assert_allclose(data.weights["income"][train].numpy(), expected, rtol=1e-6)
    assert (data.weights["income"][data.index["test"]] == 1).all()
    assert weight_key("income") in data.split("train") and "sex" not in data.info.features


def test_sensitive_columns_are_features_only_when_asked(fair_csv):
    kept = build_dataset(load_config(fair_config(fair_csv, fairness={"sensitive": ["sex"], "use_as_features": True})))
    assert "sex" in kept.info.features
    with pytest.raises(UserError, match=r"data.features: 'sex' is a sensitive column \(fairness.use_as_features: true "
                                        r"keeps it\), it cannot also be a feature"):
        build_dataset(load_config(fair_config(fair_csv, data={"features": ["x1", "sex"]},
                                              fairness={"sensitive": ["sex"]})))


def test_weight_column_is_read_checked_and_kept_out_of_the_features(fair_csv, tmp_path):
    data = build_dataset(load_config(fair_config(fair_csv, data={"weight_column": "w"})))
    np.testing.assert_allclose(data.weights["income"].numpy(), pd.read_csv(fair_csv)["w"].to_numpy(), rtol=1e-6)
    assert set(data.weights) == {"income", "size"} and "w" not in data.info.features
    frame = pd.read_csv(fair_csv)
    frame.loc[5, "w"] = -1.0
    frame.to_csv(tmp_path / "bad.csv", index=False)
    for limit in (None, 20):  # the row named is the file's, also when data.limit keeps a subset
        with pytest.raises(UserError, match=r"data.weight_column: .*bad.csv: column 'w' row 6 \(counting from 1 below "
                                            r"the header\) holds '-1.0'; expected a number ≥ 0"):
            build_dataset(load_config(fair_config(tmp_path / "bad.csv", data={"weight_column": "w", "limit": limit})))


def test_reweigh_refuses_a_task_without_class_labels_and_a_run_without_sensitive_columns(fair_csv):
    cfg = load_config(fair_config(fair_csv, fairness={"sensitive": ["sex"], "mitigation": "reweigh"}))
    with pytest.raises(UserError, match="fairness.tasks: reweigh needs class labels, and task 'size' is regression"):
        build_dataset(cfg)
    with pytest.raises(UserError, match="fairness.mitigation: reweigh needs fairness.sensitive"):
        build_dataset(load_config(fair_config(fair_csv, fairness={"mitigation": "reweigh"})))


def test_unit_weight_column_trains_bit_for_bit_as_no_weights(fair_csv, tmp_path, one_thread):
    """A column of ones goes the weighted way (Σ w·ℓ / Σ w) and ends with exactly the weights of a run without it."""
    frame = pd.read_csv(fair_csv).assign(w=1.0)
    frame.to_csv(tmp_path / "ones.csv", index=False)
    weighted = load_config(fair_config(tmp_path / "ones.csv", data={"weight_column": "w"}))
    plain = load_config(fair_config(tmp_path / "ones.csv", data={"features": ["x1", "x2", "age", "sex", "race"]}))
    assert set(build_dataset(weighted).weights) == {"income", "size"} and not build_dataset(plain).weights
    finals = [fit(cfg, tmp_path / name, progress=False).model.state_dict()
              for name, cfg in (("weighted", weighted), ("plain", plain))]
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_unit_weights_leave_a_quickstart_run_bit_for_bit(one_thread):
    """Images and all three kinds with label smoothing: the trainer with weights of 1 for every task ends with
    exactly the parameters it ends with when the batches carry no weights."""
    cfg = load_config("quickstart", ["data.limit=240", "train.epochs=2", "train.progress=false",
                                     "tasks.digit.label_smoothing=0.1"])
    finals = []
    for weights in (None, torch.ones, torch.rand):  # rand: the trainer does hand the weights to the losses
        data = build_dataset(cfg)
        if weights is not None:
            data.weights = {task: weights(len(data.x)) for task in cfg.tasks}
        model, tasks = build_model_for(cfg, data.info, torch.device("cpu"))
        balancer = registry.get("balancer", "equal")(cfg.mtl.balancer.options, tasks, cfg.seed)
        Trainer(model, tasks, cfg, balancer, device=torch.device("cpu")).fit(data)
        finals.append(model.state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    assert not all(torch.equal(finals[0][k], finals[2][k]) for k in finals[0])
