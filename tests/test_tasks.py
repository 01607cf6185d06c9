"""Tasks: each kind's masked loss against a PyTorch/closed-form reference, metrics against sklearn.

Missing labels (-1 / NaN) must vanish from losses and metrics; an all-missing batch gives a zero loss
that still backpropagates.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from hydranet.config import TaskConfig
from hydranet.tasks import Task, TaskInfo, higher_is_better

NAN = float("nan")


def make_task(kind: str, outputs: int = 1, **cfg) -> Task:
    classes = [f"c{i}" for i in range(outputs)] if kind in ("classification", "multilabel") else None
    return Task("t", TaskConfig(kind=kind, **cfg), TaskInfo(kind=kind, outputs=outputs, classes=classes))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# --- heads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,outputs,shape",
    [("classification", 4, (5, 4)), ("multilabel", 3, (5, 3)), ("binary", 1, (5,)), ("regression", 1, (5,))],
)
def test_head_shapes(kind, outputs, shape):
    task = make_task(kind, outputs)
    for hidden, dropout in [((), 0.0), ([16, 8], 0.5)]:
        assert task.head(12, hidden, dropout)(torch.randn(5, 12)).shape == shape


def test_kind_mismatch_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Task("t", TaskConfig(kind="binary"), TaskInfo(kind="regression", outputs=1))


def test_task_info_round_trips_through_json():
    import json

    info = TaskInfo(kind="binary", outputs=1, classes=["no", "yes"], mean=0.5, std=2.0)
    assert TaskInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


# --- losses --------------------------------------------------------------------------------------


def test_classification_loss_ignores_missing_rows(gen):
    task = make_task("classification", 4)
    pred = torch.randn(6, 4, generator=gen)
    target = torch.tensor([0, -1, 3, 2, -1, 1])
    keep = target != -1
    assert torch.allclose(task.loss(pred, target), F.cross_entropy(pred[keep], target[keep]))


def test_classification_label_smoothing_matches_pytorch(gen):
    task = make_task("classification", 5, label_smoothing=0.2)
    pred = torch.randn(8, 5, generator=gen)
    target = torch.tensor([0, 4, -1, 2, 1, -1, 3, 3])
    keep = target != -1
    expected = F.cross_entropy(pred[keep], target[keep], label_smoothing=0.2)
    assert torch.allclose(task.loss(pred, target), expected)
    assert not torch.allclose(task.loss(pred, target), F.cross_entropy(pred[keep], target[keep]))


def test_binary_loss_ignores_nan(gen):
    task = make_task("binary")
    pred = torch.randn(6, generator=gen)
    target = torch.tensor([1.0, NAN, 0.0, 0.0, NAN, 1.0])
    keep = ~target.isnan()
    expected = F.binary_cross_entropy_with_logits(pred[keep], target[keep])
    assert torch.allclose(task.loss(pred, target), expected)


def test_multilabel_loss_is_mean_over_labeled_cells(gen):
    task = make_task("multilabel", 3)
    pred = torch.randn(4, 3, generator=gen)
    target = torch.tensor([[1.0, 0.0, 1.0], [NAN, NAN, NAN], [0.0, NAN, 1.0], [1.0, 1.0, 0.0]])
    keep = ~target.isnan()
    p = torch.sigmoid(pred[keep])
    y = target[keep]
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()  # closed form, 8 labeled cells
    assert torch.allclose(task.loss(pred, target), expected, atol=1e-6)


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_regression_loss_is_on_standardized_targets(gen, loss):
    task = Task("t", TaskConfig(kind="regression", loss=loss), TaskInfo(kind="regression", outputs=1, mean=10.0, std=4.0))
    pred = torch.randn(5, generator=gen) * 2
    target = torch.tensor([12.0, NAN, 2.0, 30.0, 10.0])
    keep = ~target.isnan()
    z = (target[keep] - 10.0) / 4.0
    reference = F.mse_loss if loss == "mse" else F.huber_loss
    assert torch.allclose(task.loss(pred, target), reference(pred[keep], z))


@pytest.mark.parametrize(
    "kind,outputs,target",
    [
        ("classification", 3, torch.full((4,), -1)),
        ("binary", 1, torch.full((4,), NAN)),
        ("multilabel", 3, torch.full((4, 3), NAN)),
        ("regression", 1, torch.full((4,), NAN)),
    ],
)
def test_all_missing_batch_gives_zero_loss_that_backpropagates(kind, outputs, target):
    task = make_task(kind, outputs, label_smoothing=0.1) if kind == "classification" else make_task(kind, outputs)
    head = task.head(6)
    loss = task.loss(head(torch.randn(4, 6)), target)
    assert loss.item() == 0.0
    loss.backward()
    for p in head.parameters():
        assert p.grad is not None and torch.all(p.grad == 0)


@pytest.mark.parametrize("kind,outputs", [("binary", 1), ("regression", 1), ("multilabel", 2)])
def test_missing_targets_leave_gradients_finite(kind, outputs):
    """A NaN target inside torch.where would still poison the gradient; targets are filled first."""
    task = make_task(kind, outputs)
    head = task.head(3)
    target = torch.tensor([1.0, NAN]) if outputs == 1 else torch.tensor([[1.0, NAN], [NAN, 0.0]])
    task.loss(head(torch.randn(2, 3)), target).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


# --- train stats ---------------------------------------------------------------------------------


def test_train_stats_accuracy_counts_labeled_only():
    task = make_task("classification", 3)
    pred = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]], requires_grad=True)
    correct, count = task.train_stats(pred, torch.tensor([0, 0, -1, 0]))["accuracy"]
    assert (correct.item(), count.item()) == (2.0, 3.0)
    assert not correct.requires_grad

    binary = make_task("binary")
    correct, count = binary.train_stats(torch.tensor([1.0, -1.0, -2.0, -3.0]), torch.tensor([1.0, 1.0, NAN, 0.0]))["accuracy"]
    assert (correct.item(), count.item()) == (2.0, 3.0)  # the missing row's negative logit must not count
    assert make_task("regression").train_stats(torch.zeros(2), torch.zeros(2)) == {}


# --- split metrics -------------------------------------------------------------------------------


def test_classification_metrics_match_sklearn(gen):
    task = make_task("classification", 3)
    pred = torch.randn(12, 3, generator=gen)
    target = torch.tensor([0, 1, 2, -1, 0, 1, 2, 2, -1, 1, 0, 0])
    keep = target != -1
    y, y_hat = target[keep].numpy(), pred[keep].argmax(1).numpy()
    m = task.metrics(pred, target)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, y_hat))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, y_hat, average="macro"))
    assert m["loss"] == pytest.approx(F.cross_entropy(pred[keep], target[keep]).item())


def test_binary_metrics_match_sklearn():
    task = make_task("binary")
    pred = torch.tensor([2.0, -1.0, 0.5, -0.2, 3.0, -2.0, 0.1])
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, NAN, 0.0, 1.0])
    keep = ~target.isnan()
    y, s = target[keep].numpy(), pred[keep].numpy()
    m = task.metrics(pred, target)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, s > 0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, s > 0))
    assert math.isnan(task.metrics(pred[:2], torch.tensor([1.0, 1.0]))["roc_auc"])


def test_multilabel_metrics_match_sklearn_on_labeled_rows(gen):
    task = make_task("multilabel", 3)
    pred = torch.randn(6, 3, generator=gen)
    target = torch.tensor([[1.0, 0, 1], [0, 1, 1], [NAN, NAN, NAN], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    keep = ~target.isnan().all(1)
    y, y_hat = target[keep].numpy(), (pred[keep] > 0).numpy()
    m = task.metrics(pred, target)
    assert m["f1_micro"] == pytest.approx(skm.f1_score(y, y_hat, average="micro", zero_division=0))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, y_hat, average="macro", zero_division=0))


def test_multilabel_metrics_skip_single_missing_cells():
    task = make_task("multilabel", 2)
    pred = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    target = torch.tensor([[1.0, 0.0], [NAN, 1.0], [0.0, 1.0], [0.0, NAN]])
    # label 0 over rows 0, 2, 3: predicted 1, 1, 0 vs 1, 0, 0; label 1 over rows 0, 1, 2: 0, 1, 1 vs 0, 1, 1
    f1_label0 = skm.f1_score([1, 0, 0], [1, 1, 0])
    m = task.metrics(pred, target)
    assert m["f1_macro"] == pytest.approx((f1_label0 + 1.0) / 2)
    assert m["f1_micro"] == pytest.approx(skm.f1_score([1, 0, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1]))


def test_regression_metrics_are_in_original_units():
    task = Task("t", TaskConfig(kind="regression"), TaskInfo(kind="regression", outputs=1, mean=100.0, std=10.0))
    pred = torch.tensor([0.0, 1.0, -0.5, 2.0])  # standardized → 100, 110, 95, 120
    target = torch.tensor([102.0, 108.0, NAN, 125.0])
    y, y_hat = np.array([102.0, 108.0, 125.0]), np.array([100.0, 110.0, 120.0])
    m = task.metrics(pred, target)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, y_hat))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, y_hat)))
    assert m["r2"] == pytest.approx(skm.r2_score(y, y_hat))


def test_metrics_of_unlabeled_split_are_empty():
    assert make_task("classification", 3).metrics(torch.randn(2, 3), torch.tensor([-1, -1])) == {}
    assert make_task("regression").metrics(torch.randn(2), torch.tensor([NAN, NAN])) == {}


# --- decoding ------------------------------------------------------------------------------------


def test_decode():
    assert make_task("classification", 3).decode(torch.tensor([[0.1, 2.0, 0.3]])).tolist() == [1]
    assert make_task("binary").decode(torch.tensor([0.0])).tolist() == [0.5]
    assert torch.allclose(make_task("multilabel", 2).decode(torch.tensor([[0.0, 100.0]])), torch.tensor([[0.5, 1.0]]))
    reg = Task("t", TaskConfig(kind="regression"), TaskInfo(kind="regression", outputs=1, mean=3.0, std=2.0))
    assert reg.decode(torch.tensor([1.0, -1.0])).tolist() == [5.0, 1.0]


def test_higher_is_better():
    assert not higher_is_better("loss") and not higher_is_better("val/price/rmse") and not higher_is_better("mae")
    assert higher_is_better("accuracy") and higher_is_better("val/digit/f1_macro") and higher_is_better("r2")
    assert Task.higher_is_better("roc_auc")
