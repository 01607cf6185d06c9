"""The `threshold` mitigation: the stored rules are Fairlearn's ThresholdOptimizer's (same probabilities, the same
decision wherever its choice is not random), each row's draw depends on the row alone, predict / evaluate / audit
agree, the demographic-parity gap falls on a biased table, calibration does not move a decision, and a missing
sensitive column or unknown group is one line."""

import json
import shutil
from pathlib import Path

import fairlearn.metrics as fl
import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.postprocessing import ThresholdOptimizer

import hydranet as hn
from hydranet.calibrate import calibrate_run
from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.fairness.audit import audit_run
from hydranet.fairness.threshold import Rule, Thresholds, _Scores, fit_rules, row_draws, split_decisions
from hydranet.train import load_run
from hydranet.train.evaluation import predict_batches
from tests.fairness.conftest import fair_config


def biased_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels and groups where group b has a higher base rate and higher scores."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["a", "b"], n, p=[0.4, 0.6])
    labels = (rng.random(n) < np.where(groups == "b", 0.5, 0.2)).astype(int)
    scores = labels * 1.5 + (groups == "b") * 0.7 + rng.normal(size=n)
    return scores, labels, groups


@pytest.mark.parametrize("constraint", ["demographic_parity", "equalized_odds"])
def test_stored_rules_are_threshold_optimizers(constraint):
    scores, labels, groups = biased_scores(3000)
    rules = {g: Rule.from_json(json.loads(json.dumps(r.to_json()))) for g, r in
             fit_rules(scores, labels, groups, constraint).items()}  # through JSON, as thresholds.json holds them
    oracle = ThresholdOptimizer(estimator=_Scores(), constraints=constraint, objective="accuracy_score", prefit=True,
                                predict_method="predict").fit(scores[:, None], labels, sensitive_features=groups)
    new_scores, _, new_groups = biased_scores(2000, seed=1)
    expected = oracle._pmf_predict(new_scores[:, None], sensitive_features=new_groups)[:, 1]
    probability = np.zeros(len(new_scores))
    for group, rule in rules.items():
        probability[new_groups == group] = rule.positive_probability(new_scores[new_groups == group])
    np.testing.assert_allclose(probability, expected, atol=1e-12)
    ours = (row_draws(torch.from_numpy(new_scores[:, None]), new_groups, seed=0) < probability).astype(int)
    theirs = oracle.predict(new_scores[:, None], sensitive_features=new_groups, random_state=0)
    certain = (expected == 0) | (expected == 1)
    assert certain.mean() > 0.5 and (ours[certain] == theirs[certain]).all()
    for group in ("a", "b"):  # in distribution: the share decided positive is the rule's mean probability
        rows = new_groups == group
        assert ours[rows].mean() == pytest.approx(expected[rows].mean(), abs=0.03)


def test_a_rows_draw_depends_on_the_row_and_seed_alone():
    x = torch.randn(50, 4)
    groups = np.array(["a", "b"] * 25)
    whole = row_draws(x, groups, seed=3)
    np.testing.assert_array_equal(row_draws(x[7:9], groups[7:9], seed=3), whole[7:9])
    assert (row_draws(x, groups, seed=4) != whole).all() and ((whole >= 0) & (whole < 1)).all()
    assert 0.3 < whole.mean() < 0.7


@pytest.fixture(scope="module")
def biased_csv(tmp_path_factory):
    """2,000 rows where the label depends on x1, and x1 on sex: a demographic-parity gap the model learns."""
    rng = np.random.default_rng(0)
    n = 2000
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    x1 = rng.normal(size=n) + 1.0 * (sex == "M")
    frame = pd.DataFrame({"x1": x1, "x2": rng.normal(size=n), "sex": sex,
                          "income": np.where(x1 + rng.normal(scale=0.5, size=n) > 1.0, ">50K", "<=50K"),
                          "size": 2 * x1 + rng.normal(size=n)})
    path = tmp_path_factory.mktemp("biased") / "biased.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def thresholded(biased_csv):
    """Training with fairness.mitigation threshold (demographic parity, the default): a two-task run whose
    training ends by writing thresholds.json."""
    cfg = fair_config(biased_csv, fairness={"sensitive": ["sex"], "mitigation": {"name": "threshold"}},
                      train={"epochs": 3, "batch_size": 64, "progress": False, "precision": "fp32"})  # compared exactly
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hn.Experiment(cfg).fit(biased_csv.parent / "run")
    finally:
        torch.set_num_threads(before)
    return load_run(biased_csv.parent / "run")


def test_training_fits_thresholds_and_the_dp_gap_falls(thresholded):
    stored = json.loads((thresholded.dir / "thresholds.json").read_text())
    assert stored["constraint"] == "demographic_parity" and list(stored["tasks"]) == ["income"]  # size: regression
    report = audit_run(thresholded, split="test")
    after = report["tasks"]["income"]["attributes"]["sex"]["summary"]["demographic_parity_difference"]["value"]
    data = build_dataset(thresholded.config)
    test = data.index["test"]
    logits = predict_batches(thresholded.model, data.split("test")["x"], 256)["income"]
    before = fl.demographic_parity_difference(data.targets["income"][test].numpy(), (logits > 0).int().numpy(),
                                              sensitive_features=pd.read_csv(thresholded.config.data.path)["sex"][test.numpy()])
    assert before > 0.25 and after < 0.08, (before, after)
    assert report["mitigated_tasks"] == ["income"] and report["thresholds"] == "demographic_parity"
    assert not report["tasks"]["size"]["mitigated"]


def test_predict_evaluate_and_audit_decide_alike(thresholded, biased_csv, cli):
    code, _, err = cli("predict", thresholded.dir, biased_csv, "-o", "all.csv")
    assert code == 0, err
    predicted = pd.read_csv(Path("all.csv"))  # the cli fixture runs in tmp_path
    assert list(predicted.columns) == ["input", "income_p(>50K)", "income_decision", "size"]
    data = build_dataset(thresholded.config)
    outputs = predict_batches(thresholded.model, data.split("test")["x"], 256)
    decisions, _ = split_decisions(thresholded, data, "test", outputs)
    test = data.index["test"].numpy()
    np.testing.assert_array_equal(predicted["income_decision"].to_numpy()[test] == ">50K", decisions["income"] == 1)
    few = pd.read_csv(biased_csv).iloc[test[:5]]  # a row's decision does not depend on the other rows given
    python = hn.load(thresholded.dir).predict(few)
    np.testing.assert_array_equal(python["income_decision"].to_numpy() == ">50K", decisions["income"][:5] == 1)
    code, _, err = cli("evaluate", thresholded.dir)
    assert code == 0, err
    accuracy = json.loads((thresholded.dir / "eval-test.json").read_text())["income"]["accuracy"]
    assert accuracy == pytest.approx(np.mean(decisions["income"] == data.targets["income"][test].numpy()))


def test_calibrating_after_thresholding_moves_no_decision(thresholded, tmp_path):
    copy = Path(shutil.copytree(thresholded.dir, tmp_path / "run"))
    frame = pd.read_csv(thresholded.config.data.path)
    before = hn.load(copy).predict(frame)
    calibrate_run(load_run(copy, calibrated=False))
    after = hn.load(copy).predict(frame)
    assert not np.allclose(before["income_p(>50K)"], after["income_p(>50K)"])  # T moved the probabilities
    assert (before["income_decision"] == after["income_decision"]).all()


def test_missing_sensitive_column_at_predict_is_one_line(thresholded, biased_csv, cli, tmp_path):
    pd.read_csv(biased_csv).drop(columns="sex").head(20).to_csv(tmp_path / "nosex.csv", index=False)
    code, _, err = cli("predict", thresholded.dir, tmp_path / "nosex.csv", "-o", "out.csv")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {tmp_path / 'nosex.csv'}: no column 'sex', which this run's fairness thresholds "
                          f"need"), err
    assert not (tmp_path / "out.csv").exists()
    unknown = pd.read_csv(biased_csv).head(3).assign(sex=["F", "X", "M"])
    with pytest.raises(UserError, match=r"^input: row 2 is in group 'X', which the fairness thresholds were not "):
        hn.load(thresholded.dir).predict(unknown)


def test_corrupt_thresholds_file_is_one_line_naming_it(thresholded, tmp_path, cli):
    copy = Path(shutil.copytree(thresholded.dir, tmp_path / "run"))
    stored = json.loads((copy / "thresholds.json").read_text())
    stored["tasks"]["income"]["groups"]["F"]["p0"] = 1.5
    (copy / "thresholds.json").write_text(json.dumps(stored))
    code, _, err = cli("evaluate", copy)
    assert code == 2 and err.startswith(f"error: {copy / 'thresholds.json'}: ") and err.count("\n") == 1, err


def test_threshold_cli_refuses_a_non_binary_task_and_a_bad_constraint(thresholded, cli):
    code, _, err = cli("threshold", thresholded.dir, "--tasks", "size")
    assert code == 2 and err.startswith("error: --tasks: thresholds need a binary task, and 'size' is regression"), err
    code, _, err = cli("threshold", thresholded.dir, "--constraint", "parity")
    assert code == 2 and err.startswith("error: --constraint: 'parity' is not a constraint"), err


def test_server_answers_the_decisions_of_predict(thresholded, biased_csv, cli, tmp_path):
    from fastapi.testclient import TestClient  # lazy: only this test serves

    from hydranet.serve.app import create_app
    from hydranet.serve.settings import ServeSettings

    frame = pd.read_csv(biased_csv).drop(columns=["income", "size"]).head(40)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    assert cli("predict", thresholded.dir, tmp_path / "rows.csv", "-o", "rows-out.csv")[0] == 0
    expected = pd.read_csv(Path("rows-out.csv"))["income_decision"].tolist()
    with TestClient(create_app(thresholded, ServeSettings())) as client:
        answered = client.post("/predict", json={"rows": frame.to_dict("records")})
        assert answered.status_code == 200, answered.text
        assert [row["income"]["label"] for row in answered.json()["predictions"]] == expected
        missing = client.post("/predict", json={"rows": frame.drop(columns="sex").to_dict("records")})
        assert missing.status_code == 422 and "no column 'sex'" in missing.text


def test_a_group_with_one_label_in_val_is_one_line():
    scores, labels, groups = biased_scores(400)
    labels[groups == "a"] = 0  # Fairlearn raises a bare ValueError ("Degenerate labels") here
    with pytest.raises(UserError, match=r"^fairness.sensitive: group 'a' has a single label in the val split"):
        fit_rules(scores, labels, groups, "equalized_odds")
