"""Task kinds: the contract every registered kind must meet, and no feature branching on a kind's name.

A new kind in `hydranet/kinds/` gets this whole suite; it only needs a raw column in `RAW` below.
"""

import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

import hydranet
from hydranet.config import TaskConfig
from hydranet.data.targets import encode_target
from hydranet.kinds import KINDS, Kind, get_kind, higher_is_better
from hydranet.kinds.pixels import map_values
from hydranet.tasks import Task

# A tiny raw column per kind, as a source delivers it; row 2 has no label.
RAW = {
    "classification": ["cat", "dog", None, "cat", "bird", "dog"],
    "binary": ["yes", "no", None, "yes", "no", "yes"],
    "multilabel": ["a|b", "b", None, "c", "a|c", "b|c"],
    "regression": [1.5, 2.0, None, 3.5, 10.0, 4.0],
    # dense kinds: one 2×2 map per example, every pixel of row 2 unlabeled (-1 / 255 for classes, NaN / 0 for depth)
    "segmentation": [[[0, 1], [2, 1]], [[1, 1], [0, 0]], [[-1, 255], [-1, -1]], [[2, 2], [0, 1]], [[0, 0], [0, 2]],
                     [[1, 2], [2, 0]]],
    "depth": [[[1.0, 2.0], [3.0, 4.0]], [[2.5, 2.5], [1.0, 8.0]], [[np.nan, 0.0], [np.nan, np.nan]],
              [[5.0, 1.5], [2.0, 2.0]], [[0.5, 3.0], [9.0, 1.0]], [[4.0, 4.0], [6.0, 2.0]]],
    "edges": [[[0, 1], [1, 0]], [[0, 0], [255, 0]], [[np.nan, -1], [np.nan, np.nan]], [[1, 1], [0, 0]], [[0, 0], [0, 1]],
              [[1, 0], [0, 0]]],
    # one 2×2 map of (x, y, z) vectors per example (any length but 0); row 2: NaN or zero vectors only
    "normals": [[[[0, 0, -1], [1, 0, -1]], [[0, -4, -1], [0, 1, 0]]], [[[0, 0, -2], [0, 0, -1]], [[1, 1, 1], [0, 0, -1]]],
                [[[np.nan] * 3, [0, 0, 0]], [[np.nan] * 3, [0, 0, 0]]], [[[1, 0, 0], [0, 0, -1]], [[0, -1, -1], [0, 0, -1]]],
                [[[0, 0, -1], [0, 0, -1]], [[-1, 0, -1], [0, 3, -1]]], [[[0, 1, -1], [2, 0, -1]], [[0, 0, -1], [0, 0, -5]]]],
}
MISSING_ROW = 2


def make(name: str) -> tuple[Task, torch.Tensor, torch.Tensor]:
    """The task, its encoded target and a head output for it (seeded)."""
    if name not in RAW:
        pytest.fail(f"kind {name!r} has no raw column in tests/test_kinds.py RAW; add one")
    cfg = TaskConfig(kind=name)
    target, info = encode_target(np.array(RAW[name], dtype=object), cfg, "t")
    get_kind(name).fit(info, target)
    task = Task("t", cfg, info)
    torch.manual_seed(0)
    features = torch.randn(len(target), 4, 2, 2) if task.dense else torch.randn(len(target), 4)  # a map for dense heads
    pred = task.head(4, feature_map=task.dense)(features).detach()
    return task, target, pred


def output_shape(task: Task, n: int) -> tuple[int, ...]:
    """(B[, K]) per example; a dense kind puts the pixel axes first, (B, H, W[, K])."""
    pixels = (2, 2) if task.dense else ()
    return (n, *pixels) if task.spec.squeeze else (n, *pixels, task.info.outputs)


def rows_labeled(task: Task, target: torch.Tensor) -> torch.Tensor:
    return task.spec.labeled(target).reshape(len(target), -1).all(dim=1)


@pytest.fixture(params=list(KINDS))
def kind(request) -> str:
    return request.param


def test_record_has_every_protocol_member(kind):
    members = set(Kind.__annotations__) | {n for n, v in vars(Kind).items() if callable(v) and not n.startswith("_")}
    spec = get_kind(kind)
    assert spec.name == kind
    assert not [m for m in members if not hasattr(spec, m)]
    if spec.single_label:  # the members only single-label kinds provide
        assert callable(spec.correct) and callable(spec.class_index)


def test_metric_names(kind):
    spec = get_kind(kind)
    assert spec.metric_names[0] == "loss" and spec.main_metric in spec.metric_names
    assert "loss" in spec.lower_is_better <= set(spec.metric_names)


def test_lower_is_better_means_the_same_for_every_kind():
    """`higher_is_better` takes a bare metric name, so no kind may call lower-is-better what another reports."""
    for spec in KINDS.values():
        for metric in spec.metric_names:
            assert higher_is_better(f"val/t/{metric}") == (metric not in spec.lower_is_better), (spec.name, metric)


def test_metrics_are_exactly_the_metric_names(kind):
    task, target, pred = make(kind)
    assert set(task.spec.metrics(pred.numpy(), target.numpy(), task.info)) == set(task.spec.metric_names) - {"loss"}
    assert list(task.metrics(pred, target)) == list(task.spec.metric_names)


def test_shapes(kind):
    task, target, pred = make(kind)
    n = len(target)
    assert pred.shape == output_shape(task, n)
    assert task.loss(pred, target).shape == ()
    assert task.example_losses(pred, target).shape == (n,)
    assert task.decode(pred).shape[0] == n
    assert len(task.column(pred)) == n
    assert task.spec.from_average(task.average_target(target[rows_labeled(task, target)])).shape[1:] == pred.shape[1:]


def test_answers_are_json_and_agree_with_the_column(kind):
    """The server's answer per example is plain JSON, and what it decides is what `predict`'s column says: the
    label or value itself, or, for a binary task, the probability; probabilities are in [0, 1]."""
    import json

    task, target, pred = make(kind)
    answers, column = task.answers(pred), list(task.column(pred))
    assert len(answers) == len(target) and json.loads(json.dumps(answers)) == answers
    for answer, cell in zip(answers, column):
        decided = answer.get("value", answer.get("probability", answer.get("label")))
        if "labels" in answer:
            decided = task.cfg.separator.join(answer["labels"])
        if task.dense:  # one map per example, as a PNG or .npy; the class shares (if any) sum to 1
            assert np.array_equal(map_values(decided), cell)
            assert sum(answer.get("pixel_shares", {"all": 1.0}).values()) == pytest.approx(1.0)
            continue
        assert decided == pytest.approx(cell) if isinstance(cell, float) else decided == cell
        if "probability" in answer:  # of classes[1], the positive class: the label follows it
            assert (answer["label"] == task.info.classes[1]) == (answer["probability"] > 0.5)
        probabilities = answer.get("probabilities", {})
        assert set(probabilities) <= set(task.info.classes or ()) and all(0 <= p <= 1 for p in probabilities.values())
    if "probabilities" in answers[0] and not task.spec.squeeze and task.spec.single_label:  # one distribution per row
        assert sum(answers[0]["probabilities"].values()) == pytest.approx(1.0)


def test_missing_labels_are_masked_like_dropped_rows(kind):
    task, target, pred = make(kind)
    keep = rows_labeled(task, target)
    assert not keep[MISSING_ROW] and keep.sum() == len(target) - 1
    torch.testing.assert_close(task.loss(pred, target), task.loss(pred[keep], target[keep]))
    per_example = task.example_losses(pred, target)
    assert per_example[MISSING_ROW] == 0
    torch.testing.assert_close(per_example[keep].mean(), task.loss(pred[keep], target[keep]))  # no label smoothing
    assert task.metrics(pred, target) == task.metrics(pred[keep], target[keep])


def test_unit_example_weights_give_the_plain_gradient_bit_for_bit(kind):
    """All weights 1 must train exactly as without weights (tests/test_weights.py: whole runs): the same gradient,
    bit for bit; the loss's value may differ in the last bit (classification sums per-example terms then)."""
    task, target, pred = make(kind)
    task.cfg.label_smoothing = 0.1 if kind == "classification" else 0.0
    pred.requires_grad_()
    weighted, plain = task.loss(pred, target, torch.ones(len(target))), task.loss(pred, target)
    torch.testing.assert_close(weighted, plain)
    assert torch.equal(torch.autograd.grad(weighted, pred)[0], torch.autograd.grad(plain, pred)[0])


def test_integer_example_weights_equal_repeated_examples(kind):
    """Σ w·ℓ / Σ w over labelled examples: weight k is the example k times (0: left out), with label smoothing and
    masked missing labels, whatever the kind reduces over (a multilabel example's cells)."""
    task, target, pred = make(kind)
    task.cfg.label_smoothing = 0.1 if kind == "classification" else 0.0
    weight = torch.tensor([2, 0, 3, 1, 1, 4])
    repeat = torch.arange(len(target)).repeat_interleave(weight)
    torch.testing.assert_close(task.loss(pred, target, weight.float()), task.loss(pred[repeat], target[repeat]))
    zero = task.loss(pred.requires_grad_(), target, torch.zeros(len(target)))
    assert zero == 0 and zero.requires_grad  # every weight 0: no signal, still in the graph


def test_single_label_kinds_give_classes_and_correctness(kind):
    task, target, pred = make(kind)
    spec = task.spec
    if not spec.single_label:
        assert task.train_stats(pred, target) == {}
        return
    index = spec.class_index(target)
    assert index.dtype == torch.int64 and index[MISSING_ROW] == -1 and (index[rows_labeled(task, target)] >= 0).all()
    right = spec.correct(pred, target)
    assert right.shape == (len(target),) and right.dtype == torch.bool
    correct, count = task.train_stats(pred, target)["accuracy"]
    assert count == len(target) - 1 and correct == (right & spec.labeled(target)).sum()


def test_divergence_is_a_per_example_kl_or_none(kind):
    task, _, pred = make(kind)
    if task.spec.divergence is None:
        return
    torch.manual_seed(1)
    other = pred + torch.randn_like(pred)
    kl = task.spec.divergence(pred, other)
    assert kl.shape == (len(pred),) and (kl >= 0).all() and (kl > 0).any()
    torch.testing.assert_close(task.spec.divergence(pred, pred), torch.zeros(len(pred)), atol=1e-6, rtol=0)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown task kind 'ordinal' .*classification"):
        get_kind("ordinal")


# --- one home: no module but the kinds compares or tabulates a kind's name --------------------------

SRC = Path(hydranet.__file__).parent
# the config schema names the default kind of a task
EXEMPT = {SRC / "config" / "sections.py"}
# `.kind == "<literal>"` (flagged when the literal names a task kind: `info.kind != "image"` is the data's kind,
# image or table, another concept) and `.kind in (…)` (always flagged)
# words that name a kind and, in one package, something else stored in files users already have
OTHER_MEANING = {("edges", "monitor"): "a histogram's bin edges in reference.json"}
KIND_TEST = re.compile(r"\.kind\s*(?:==|!=)\s*[\"'](\w+)[\"']|\.kind\s+(?:not\s+)?in\s*[(\[{]")


def outside_kinds() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if (SRC / "kinds") not in p.parents and p not in EXEMPT]


def test_no_module_branches_on_a_kind_name():
    """A kind's name as a string literal (`kind == "binary"`, `{"regression": …}`) outside `hydranet/kinds`.

    `raw.kind == "image"` is another concept (image or table data) and names no task kind.
    """
    found = []
    for path in outside_kinds():
        text = path.read_text()
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            word = token.string.strip("\"'")
            if token.type == tokenize.STRING and word in KINDS and (word, path.relative_to(SRC).parts[0]) not in OTHER_MEANING:
                found.append(f"{path.relative_to(SRC)}:{token.start[0]}: {token.line.strip()}")
        for number, line in enumerate(text.splitlines(), 1):
            if any(m.group(1) is None or m.group(1) in KINDS for m in KIND_TEST.finditer(line)):
                found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, "ask the task's kind record instead:\n" + "\n".join(found)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_metrics_of_non_finite_predictions_are_nan_not_an_error(kind, bad):
    """A diverged model's outputs: scikit-learn raises on them (roc_auc_score on NaN), the metrics must not."""
    task, target, pred = make(kind)
    for poisoned in (pred.clone().fill_(bad), _poison_row(pred, 0, bad)):
        metrics = task.metrics(poisoned, target)
        assert list(metrics) == list(task.spec.metric_names)
        assert all(np.isnan(v) for k, v in metrics.items() if k != "loss"), metrics


def test_a_non_finite_prediction_of_an_unlabeled_example_changes_no_metric(kind):
    task, target, pred = make(kind)
    assert task.metrics(_poison_row(pred, MISSING_ROW, float("nan")), target) == task.metrics(pred, target)


def test_huge_finite_predictions_have_metrics(kind):
    """Finite outputs near float32's limit are scored, not refused (regression decodes them in float64)."""
    task, target, pred = make(kind)
    metrics = task.metrics(torch.full_like(pred, 3e38), target)
    assert list(metrics) == list(task.spec.metric_names)
    assert np.isfinite(metrics[task.spec.main_metric])


def _poison_row(pred: torch.Tensor, row: int, value: float) -> torch.Tensor:
    out = pred.clone()
    out[row] = value
    return out
