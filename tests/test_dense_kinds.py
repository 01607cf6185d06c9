"""The per-pixel kinds (segmentation, depth, edges, normals) against hand-computed cases, ignore labels and invalid depth included.

The contract every kind meets is tests/test_kinds.py; here the numbers themselves are checked.
"""

import math

import numpy as np
import pytest
import torch

from hydranet.config import TaskConfig
from hydranet.data.targets import encode_target
from hydranet.errors import UserError
from hydranet.kinds import get_kind
from hydranet.tasks import Task


def task_of(kind: str, raw) -> tuple[Task, torch.Tensor]:
    cfg = TaskConfig(kind=kind)
    target, info = encode_target(np.asarray(raw, dtype=np.float64), cfg, "tasks.t")
    get_kind(kind).fit(info, target)
    return Task("t", cfg, info), target


def scores_for(classes: np.ndarray, k: int) -> torch.Tensor:
    """Logits (B, H, W, K) whose argmax is `classes`."""
    return torch.nn.functional.one_hot(torch.as_tensor(classes), k).float() * 5


def test_miou_and_pixel_accuracy_by_hand_with_ignored_pixels():
    # true classes, 255 and -1 ignored:      predicted:
    #   0 0 1          0 1 1
    #   2 255 1        2 2 0
    task, target = task_of("segmentation", [[[0, 0, 1], [2, 255, 1]], [[-1, 2, 2], [0, 0, 0]]])
    predicted = np.array([[[0, 1, 1], [2, 2, 0]], [[1, 2, 0], [0, 0, 0]]])
    metrics = task.metrics(scores_for(predicted, 3), target)
    # labeled pixels: 10; right: image 1 → (0,0),(0,2),(1,0) = 3, image 2 → (0,1),(1,0),(1,1),(1,2) = 4
    assert metrics["pixel_accuracy"] == pytest.approx(7 / 10)
    # class 0: TP 4, FP 2 (image 1 (1,2), image 2 (0,2)), FN 1 (image 1 (0,1)) → 4/7; class 1: TP 1, FP 1, FN 1
    # → 1/3; class 2: TP 2, FP 0, FN 1 (image 2 (0,2)) → 2/3. The ignored pixels count nowhere.
    assert metrics["miou"] == pytest.approx((4 / 7 + 1 / 3 + 2 / 3) / 3)
    assert task.info.outputs == 3 and target[0, 1, 1] == -1


def test_a_class_neither_present_nor_predicted_is_left_out_of_the_mean():
    task, target = task_of("segmentation", [[[0, 3], [0, 0]]])  # classes 0..3; 1 and 2 never occur
    metrics = task.metrics(scores_for(np.array([[[0, 3], [0, 3]]]), 4), target)
    assert metrics["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_depth_metrics_by_hand_with_invalid_pixels():
    # 0, negative and NaN depths are invalid (a sensor's holes); valid: 1, 2, 4, 5
    task, target = task_of("depth", [[[1.0, 2.0, 0.0], [4.0, np.nan, 5.0]], [[-1.0, np.nan, np.nan], [np.nan, 0, np.nan]]])
    assert int(task.spec.labeled(target).sum()) == 4
    predicted = torch.tensor([[[2.0, 2.0, 99.0], [3.0, 99.0, 5.5]], [[99.0, 99.0, 99.0], [99.0, 99.0, 99.0]]])
    z = (predicted - task.info.mean) / task.info.std  # the head predicts the standardized depth
    metrics = task.metrics(z, target)
    errors = np.array([1.0, 0.0, 1.0, 0.5])
    assert metrics["abs_err"] == pytest.approx(errors.mean())
    assert metrics["abs_rel"] == pytest.approx((1 / 1 + 0 + 1 / 4 + 0.5 / 5) / 4)
    assert metrics["rmse"] == pytest.approx(math.sqrt((errors ** 2).mean()))
    # max(d̂/d, d/d̂): 2, 1, 4/3, 1.1 → two of four under 1.25
    assert metrics["delta1"] == pytest.approx(0.5)
    assert task.info.mean == pytest.approx(3.0)  # fitted on the valid train pixels only


def test_depth_loss_is_l1_over_valid_pixels_only():
    task, target = task_of("depth", [[[1.0, np.nan], [3.0, 0.0]]])
    z = torch.tensor([[[0.5, 1e6], [0.0, -1e6]]])
    expected = (abs(0.5 - (1 - task.info.mean) / task.info.std) + abs(0.0 - (3 - task.info.mean) / task.info.std)) / 2
    assert float(task.loss(z, target)) == pytest.approx(expected)


def test_segmentation_loss_ignores_unlabeled_pixels():
    task, target = task_of("segmentation", [[[0, 1], [-1, 255]]])
    pred = torch.randn(1, 2, 2, 2)
    pred[0, 1] = float("nan")  # whatever the model says on an ignored pixel does not count
    logits = pred[0, 0]  # the two labeled pixels (0, 0) → class 0, (0, 1) → class 1
    expected = -(torch.log_softmax(logits[0], -1)[0] + torch.log_softmax(logits[1], -1)[1]) / 2
    torch.testing.assert_close(task.loss(pred.nan_to_num(), target), expected)


def test_edge_fscore_by_hand_with_unlabeled_pixels():
    # true edges (255 is an edge too; NaN and -1 unlabeled):   predicted (logit > 0):
    #   1 0 255        0 0 -1                                   1 1 0      0 0 1
    #   0 NaN 1        1 1 0                                    0 1 1      1 0 0
    task, target = task_of("edges", [[[1, 0, 255], [0, np.nan, 1]], [[0, 0, -1], [1, 1, 0]]])
    said = torch.tensor([[[1, 1, 0], [0, 1, 1]], [[0, 0, 1], [1, 0, 0]]], dtype=torch.bool)
    metrics = task.metrics(torch.where(said, 3.0, -3.0), target)
    # labeled 10 pixels; hits: image 1 (0,0),(1,2), image 2 (1,0) = 3; said on labeled pixels 4; true edges 5
    assert metrics["precision"] == pytest.approx(3 / 4) and metrics["recall"] == pytest.approx(3 / 5)
    assert metrics["fscore"] == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    assert task.metrics(torch.full((2, 2, 3), -3.0), target)["fscore"] == 0  # never firing scores nothing


def test_edge_loss_is_bce_over_labeled_pixels_only():
    task, target = task_of("edges", [[[1, np.nan], [0, -1]]])
    logits = torch.tensor([[[0.5, 1e6], [-2.0, -1e6]]])
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-2.0))) / 2  # −log σ(0.5), −log(1 − σ(−2))
    assert float(task.loss(logits, target)) == pytest.approx(expected)


def test_other_edge_values_are_a_user_error():
    with pytest.raises(UserError, match="tasks.t: edge labels are 0 .* and 1 or 255 .*found 2"):
        task_of("edges", [[[0, 1], [2, 0]]])


def normals_at(degrees: list[float]) -> torch.Tensor:
    """Vectors at these angles from (0, 0, −1), tilted toward +y, unnormalized (the head's raw output)."""
    return torch.tensor([[0.0, math.tan(math.radians(d)), -1.0] for d in degrees])


def test_normal_metrics_by_hand_with_unlabeled_pixels():
    # every labeled pixel faces the camera; the prediction is off by 0°, 45°, 10°, 20° and 25°; pixel 6 unlabeled
    task, target = task_of("normals", [[[[0, 0, -1]] * 3, [[0, 0, -2], [0, 0, -1], [np.nan, np.nan, np.nan]]]])
    pred = torch.cat([normals_at([0, 45, 10, 20, 25]), torch.tensor([[float("nan")] * 3])]).reshape(1, 2, 3, 3)
    metrics = task.metrics(pred.nan_to_num(), target)
    assert metrics["mean_angle"] == pytest.approx(20.0) and metrics["median_angle"] == pytest.approx(20.0)
    assert (metrics["within_11"], metrics["within_22"], metrics["within_30"]) == pytest.approx((2 / 5, 3 / 5, 4 / 5))
    cosines = np.cos(np.radians([0, 45, 10, 20, 25]))
    assert float(task.loss(pred.nan_to_num(), target)) == pytest.approx(float((1 - cosines).mean()), rel=1e-5)


def test_normals_are_read_as_unit_vectors_and_zero_vectors_as_unlabeled():
    task, target = task_of("normals", [[[[0, 3, -4], [0, 0, 0]]]])
    torch.testing.assert_close(target[0, 0, 0], torch.tensor([0.0, 0.6, -0.8]))
    assert target[0, 0, 1].isnan().all() and task.spec.labeled(target).tolist() == [[[True, False]]]
    with pytest.raises(UserError, match=r"tasks.t: a normals task needs one \(H, W, 3\) map of vectors"):
        task_of("normals", [[[0.0, 1.0]]])


@pytest.mark.parametrize("kind", ["segmentation", "depth", "edges"])
def test_a_column_of_scalars_for_a_dense_task_is_a_user_error(kind):
    with pytest.raises(UserError, match=rf"tasks.t: a {kind} task needs one \(H, W\) map"):
        encode_target(np.array([1, 2, 3], dtype=object), TaskConfig(kind=kind), "tasks.t")


def test_maps_for_a_per_example_task_are_a_user_error():
    with pytest.raises(UserError, match="tasks.t: a classification task needs one value per example"):
        encode_target(np.zeros((3, 2, 2)), TaskConfig(kind="classification"), "tasks.t")


def test_fractional_class_indices_are_a_user_error():
    with pytest.raises(UserError, match="class indices"):
        task_of("segmentation", [[[0, 1.5]]])


def test_a_dense_task_on_a_pooled_trunk_is_a_user_error():
    task, _ = task_of("depth", [[[1.0, 2.0]]])
    with pytest.raises(UserError, match="tasks.t: a depth task predicts every pixel .*unet"):
        task.head(8)
