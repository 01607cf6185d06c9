"""Checks that fail when an attribution method is wrong: Integrated Gradients' completeness, KernelSHAP against
exact Shapley values, the model-randomization test (Adebayo et al. 2018), and known evidence found where it is."""

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.explain import METHODS, Settings, explain_batch, explain_run
from hydranet.explain import sampling
from hydranet.explain.methods import NEAR_ZERO_GAP, Request
from hydranet.explain.tables import source_columns
from hydranet.explain.target import TaskScores
from hydranet.randomness import Purpose, stream
from hydranet.train.run import fresh_model
from tests.data.datafiles import SHARED_DATA
from tests.explain.conftest import fit_quietly


def split_inputs(model, count=24):
    """The first `count` examples of the run's test split as model inputs."""
    return build_dataset(model.config).split("test")["x"][:count]


def train_mean(model):
    return lambda: build_dataset(model.config).split("train")["x"].mean(0, keepdim=True)


def assert_complete(model, task, count):
    """Every example: |Σ attributions − (f(x) − f(baseline))| ≤ 1% of |f(x) − f(baseline)| in fp32, f computed
    from the model itself; where that gap is under NEAR_ZERO_GAP, ≤ 1% of NEAR_ZERO_GAP (and the report says
    so). Captum's own delta and the steps reported per example agree."""
    x = split_inputs(model, count)
    explained = explain_batch(model.run, x, task, Settings(method="integrated_gradients"), train_mean(model))
    baseline = torch.zeros_like(x) if model.run.info.is_image else train_mean(model)().expand_as(x)
    with torch.no_grad():
        scores = TaskScores(model.run.model.eval(), task)
        column = explained.target.index[:, None]
        gap = (scores(x).gather(1, column) - scores(baseline).gather(1, column))[:, 0]
    error = (explained.values.flatten(1).sum(1) - gap).abs()
    relative = gap.abs() >= NEAR_ZERO_GAP
    assert (error[relative] <= 0.01 * gap.abs()[relative]).all()
    assert (error[~relative] <= 0.01 * NEAR_ZERO_GAP).all()
    assert torch.allclose(explained.delta.abs(), error, atol=1e-4)
    assert (explained.steps >= 50).all() and explained.steps.shape == (count,)
    return explained


@pytest.mark.parametrize("fixture, task", [("digits_model", "digit"), ("digits_model", "parity"),
                                           ("digits_model", "ink"), ("table_model", "label"),
                                           ("table_model", "value")])
def test_integrated_gradients_complete(request, fixture, task):
    """The issue's bound, per example, for a class logit, a binary logit and a regression output of a trained
    digits CNN (the quickstart's tasks) and a table MLP; 50 steps to start with, doubled where an example needs."""
    assert_complete(request.getfixturevalue(fixture), task, 24)


def exact_shapley(scores, x, baseline, target, groups):
    """Shapley values of each feature group by enumerating every coalition (2^groups forward rows per example):
    a group outside the coalition takes the baseline's values."""
    n = int(groups.max()) + 1
    coalitions = torch.tensor(list(itertools.product([0, 1], repeat=n)), dtype=torch.bool)  # (2^n, n)
    weights = {s: math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)}
    values = []
    for row, base, t in zip(x, baseline, target):
        inside = coalitions[:, groups[0]]  # (2^n, F)
        with torch.no_grad():
            v = scores(torch.where(inside, row, base))[:, t]
        index = {tuple(c.tolist()): i for i, c in enumerate(coalitions)}
        phi = torch.zeros(n)
        for c in coalitions:
            for i in np.flatnonzero(~c.numpy()):
                with_i = c.clone()
                with_i[i] = True
                phi[i] += weights[int(c.sum())] * (v[index[tuple(with_i.tolist())]] - v[index[tuple(c.tolist())]])
        values.append(phi)
    return torch.stack(values)


@pytest.mark.parametrize("task", ["label", "value"])
def test_kernel_shap_matches_exact_shapley(table_model, task):
    """On the 5-column table (a one-hot group as one player), KernelSHAP's estimate is within a few percent of the
    exact Shapley values with the same baseline (the train mean), and orders the columns the same."""
    run = table_model.run
    x = split_inputs(table_model, 4)
    baseline = train_mean(table_model)().expand_as(x)
    columns, groups = source_columns(run.info)
    explained = explain_batch(run, x, task, Settings(method="kernel_shap", samples=600), train_mean(table_model))
    estimate = torch.zeros(len(x), len(columns)).index_add_(1, groups[0], explained.values)
    exact = exact_shapley(TaskScores(run.model.eval(), task), x, baseline, explained.target.index, groups)
    scale = exact.abs().max()
    assert (estimate - exact).abs().max() <= 0.03 * scale
    # Same order of |φ| for every pair of columns the exact values tell apart (by > 5% of the largest): a
    # near-tie (noise columns near 0, or `a` and `b` of label = a + b > 0) may swap.
    apart = (exact.abs()[:, :, None] - exact.abs()[:, None, :]).abs() > 0.05 * scale
    same_order = (estimate.abs()[:, :, None] > estimate.abs()[:, None, :]) == (exact.abs()[:, :, None] > exact.abs()[:, None, :])
    assert same_order[apart].all()


@pytest.mark.filterwarnings("ignore:An input array is constant")
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam"])
def test_attributions_depend_on_the_weights(digits_model, method):
    """Model randomization (Adebayo et al. 2018): |attributions| of the trained model and of the same architecture
    re-initialized are rank-correlated below 0.5 on average; an edge detector that ignores the weights fails."""
    run = digits_model.run
    x = split_inputs(digits_model, 16)
    torch.manual_seed(1)
    random = dataclasses.replace(run, model=fresh_model(run.config, run.info, run.tasks, torch.device("cpu")))
    trained = explain_batch(run, x, "digit", Settings(method=method)).values.abs().flatten(1)
    untrained = explain_batch(random, x, "digit", Settings(method=method)).values.abs().flatten(1)
    # A constant map (Grad-CAM of an untrained net is often all 0) ranks nothing: it counts as uncorrelated.
    correlation = np.mean([np.nan_to_num(spearmanr(a, b).statistic) for a, b in zip(trained.numpy(), untrained.numpy())])
    assert correlation < 0.5


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam"])
def test_image_evidence_found_in_its_quadrant(quadrant_model, method):
    """The class (plus or square) is told by the top-left quadrant only; most attribution mass lands there."""
    x = split_inputs(quadrant_model, 16)
    heat = explain_batch(quadrant_model.run, x, "shape", Settings(method=method)).values.abs().sum(1)  # (N, H, W)
    half = heat.shape[-1] // 2
    mapped = heat.sum((1, 2)) > 0  # Grad-CAM's map is empty where no channel speaks for the class (ReLU of < 0)
    share = heat[mapped, :half, :half].sum((1, 2)) / heat[mapped].sum((1, 2))
    assert mapped.float().mean() >= 0.25 and share.mean() > 0.5


@pytest.mark.parametrize("method", [m for m in METHODS if m != "gradcam"])
def test_global_importance_ranks_the_two_columns_first(table_model, tmp_path, method):
    """The table's tasks depend on `a` and `b` only: every method ranks them above the noise and `shade`."""
    result = explain_run(table_model.run, split="test", n=16, out=tmp_path / "out", global_=True,
                         settings=Settings(method=method, samples=60))
    importance = pd.read_csv(tmp_path / "out" / "importance.csv")
    assert result["tasks"] == ["label", "value"]
    for task in ("label", "value"):
        assert set(importance.sort_values(task, ascending=False)["column"][:2]) == {"a", "b"}


@pytest.mark.slow
def test_integrated_gradients_complete_on_adult(tmp_path):
    """The same per-example completeness bound on the real UCI Adult table (one epoch of the built-in `adult`
    experiment), with categorical one-hot groups and the train-mean baseline."""
    adult = SHARED_DATA / "adult" / "adult.csv.gz"
    if not adult.exists():
        pytest.skip(f"{adult} is not on this machine")
    model = fit_quietly(hn.Experiment("adult").config.model_dump(mode="json")
                        | {"data": {"source": "csv", "path": str(adult), "split": {"val": 0.1, "stratify": "income"}},
                           "train": {"epochs": 1, "batch_size": 256, "progress": False}}, tmp_path / "adult")
    assert_complete(model, "income", 64)


def test_occlusion_of_a_one_hot_group_is_the_score_change(table_model):
    """Occlusion's value for a source column is f(x) − f(x with that column's encoded features set to the
    baseline), whether the column is one feature (`a`) or a one-hot group (`shade`, three features)."""
    run = table_model.run
    x = split_inputs(table_model, 6)
    baseline = train_mean(table_model)().expand_as(x)
    columns, groups = source_columns(run.info)
    explained = explain_batch(run, x, "value", Settings(method="occlusion"), train_mean(table_model))
    per_column = torch.zeros(len(x), len(columns)).index_add_(1, groups[0], explained.values)
    scores = TaskScores(run.model.eval(), "value")
    for name in ("a", "shade"):
        inside = groups[0] == columns.index(name)
        with torch.no_grad():
            change = scores(x)[:, 0] - scores(torch.where(inside, baseline, x))[:, 0]
        assert torch.allclose(per_column[:, columns.index(name)], change, atol=1e-5)


def test_lime_matches_captum_given_the_same_coalitions(table_model):
    """The batched LIME (coalitions, cosine kernel, weighted Lasso for all examples at once) gives Captum's Lime
    coefficients when Captum is fed the same coalitions, example by example."""
    from captum.attr import Lime

    run = table_model.run
    x = split_inputs(table_model, 3)
    baseline = train_mean(table_model)().expand_as(x)
    _, groups = source_columns(run.info)
    explained = explain_batch(run, x, "value", Settings(method="lime", samples=80), train_mean(table_model))
    ours = torch.zeros(len(x), int(groups.max()) + 1).index_add_(1, groups[0], explained.values)
    count, width = sampling.live_groups(groups, len(x))
    present = sampling.lime_coalitions(count, width, 80, stream(run.config.seed, Purpose.EXPLAIN))
    scores = TaskScores(run.model.eval(), "value")
    for i in range(len(x)):
        coalitions = iter(present[i].long())
        captum = Lime(scores, perturb_func=lambda *_, **__: next(coalitions)[None]).attribute(
            x[i:i + 1], baselines=baseline[i:i + 1], target=0, feature_mask=groups, n_samples=80,
            return_input_shape=False)
        assert torch.allclose(ours[i], captum[0].float(), atol=2e-4 * float(captum.abs().max()) + 1e-6)


@pytest.mark.parametrize("method", ["kernel_shap", "lime"])
def test_sampled_attributions_repeat_given_the_seed(table_model, method):
    """Same seed, same values, however the coalitions are batched into forward passes (`rows`); another seed
    draws other coalitions."""
    run = table_model.run
    x = split_inputs(table_model, 5)
    baseline = train_mean(table_model)().expand_as(x)
    scores = TaskScores(run.model.eval(), "value")
    target = torch.zeros(len(x), dtype=torch.long)

    def attributions(rows, seed=0):
        request = Request(scores, x, target, baseline, source_columns(run.info)[1], samples=50, rows=rows, seed=seed)
        return METHODS[method](request).values

    assert torch.equal(attributions(1024), attributions(1024))
    assert torch.allclose(attributions(1024), attributions(7), atol=1e-5)
    assert not torch.allclose(attributions(1024), attributions(1024, seed=1))
