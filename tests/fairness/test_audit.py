"""`hydranet audit`: every number equals Fairlearn's own function on the same predictions, the vectorized bootstrap
statistics equal them on the unresampled split, groups (bins, missing cells, intersections), and bad sensitive
columns as one-line errors or named warnings."""

import json
from pathlib import Path

import fairlearn.metrics as fl
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from hydranet.config import FairnessConfig, load_config
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.fairness.audit import audit_run
from hydranet.fairness.groups import MISSING, attribute_groups, check_groups, group_table
from hydranet.fairness.metrics import BinaryAudit, RegressionAudit, Scored, group_rates
from hydranet.train import fit
from hydranet.train.evaluation import predict_batches
from tests.fairness.conftest import fair_config, write_fair_csv


@pytest.fixture(scope="module")
def fair_run(tmp_path_factory):
    """One trained run for the module's audits (they only read it, into folders of their own)."""
    folder = tmp_path_factory.mktemp("fair")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = fair_config(write_fair_csv(folder / "fair.csv"), fairness={"sensitive": ["sex", "race"], "bootstrap": 200})
    yield fit(load_config(cfg), folder / "run", progress=False)
    torch.set_num_threads(before)


def test_every_audited_number_is_fairlearns(fair_run, tmp_path):
    report = audit_run(fair_run, split="test", out_dir=tmp_path / "audit")
    data = build_dataset(fair_run.config)
    test = data.index["test"]
    frame = pd.read_csv(fair_run.config.data.path)
    outputs = predict_batches(fair_run.model, data.split("test")["x"], 1024)
    y_true = data.targets["income"][test].numpy().astype(int)
    logits = outputs["income"].numpy()
    y_pred = (logits > 0).astype(int)
    income = report["tasks"]["income"]["attributes"]
    for attribute, groups in (("sex", frame["sex"].to_numpy()[test]), ("race", frame["race"].to_numpy()[test]),
                              ("sex×race", (frame["sex"] + ", " + frame["race"]).to_numpy()[test])):
        found = income[attribute]
        both = dict(y_true=y_true, y_pred=y_pred, sensitive_features=groups)
        assert found["summary"]["demographic_parity_difference"]["value"] == fl.demographic_parity_difference(**both)
        assert found["summary"]["demographic_parity_ratio"]["value"] == fl.demographic_parity_ratio(**both)
        assert found["summary"]["equalized_odds_difference"]["value"] == fl.equalized_odds_difference(**both)
        by_group = fl.MetricFrame(metrics={"selection_rate": fl.selection_rate, "tpr": fl.true_positive_rate,
                                           "fpr": fl.false_positive_rate, "accuracy": skm.accuracy_score}, **both)
        for group, row in by_group.by_group.iterrows():
            for metric, value in row.items():
                assert found["groups"][group][metric] == pytest.approx(value, abs=0, rel=0), (attribute, group, metric)
            mask = groups == group
            if len(np.unique(y_true[mask])) == 2:
                assert found["groups"][group]["roc_auc"] == skm.roc_auc_score(y_true[mask], logits[mask])
        assert found["summary"]["worst_group_accuracy"]["value"] == by_group.group_min()["accuracy"]
        low, high = found["summary"]["demographic_parity_difference"]["low"], found["summary"]["demographic_parity_difference"]["high"]
        assert low <= high
    size = report["tasks"]["size"]["attributes"]["sex"]
    mae = fl.MetricFrame(metrics=skm.mean_absolute_error, y_true=data.targets["size"][test].numpy(),
                         y_pred=fair_run.tasks["size"].decode(outputs["size"]).numpy(),
                         sensitive_features=frame["sex"].to_numpy()[test])
    assert size["summary"]["worst_group_mae"]["value"] == pytest.approx(mae.group_max(), rel=1e-6)
    written = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert written["tasks"]["income"]["attributes"]["sex"]["summary"] == income["sex"]["summary"]
    assert (tmp_path / "audit" / "audit.png").stat().st_size > 0 and "demographic_parity_difference" in (
        tmp_path / "audit" / "audit.md").read_text()


@pytest.mark.parametrize("audit", [BinaryAudit, RegressionAudit])
def test_vectorized_bootstrap_statistics_equal_fairlearn_on_the_unresampled_split(audit):
    """The bootstrap computes the summaries from per-group rates; on the identity 'resample' they are Fairlearn's."""
    rng = np.random.default_rng(1)
    n = 500
    groups = rng.choice(["a", "b", "c"], n, p=[0.5, 0.4, 0.1])
    y_true = (rng.random(n) < np.where(groups == "a", 0.3, 0.6)).astype(int)
    scores = rng.normal(size=n) + y_true
    scored = (Scored(y_true, (scores > 0.5).astype(int), scores) if audit is BinaryAudit
              else Scored(y_true + rng.normal(size=n), scores))
    names, codes = np.unique(groups, return_inverse=True)
    rates = group_rates(audit.rates(scored), codes, len(names), np.arange(n)[None])
    frame = fl.MetricFrame(metrics=audit.frame_metrics(fl) | {"roc_auc": lambda t, p: 0.0}, y_true=scored.y_true,
                           y_pred=scored.y_pred, sensitive_features=groups)
    expected = audit.fairlearn_summary(fl, scored, groups, frame)
    for name, values in audit.summary(rates).items():
        assert values[0] == pytest.approx(expected[name], rel=1e-12), name


def test_groups_bins_missing_cells_and_intersections():
    ages = np.array([18, 30, 45, 70, None, "?"], dtype=object)
    assert list(attribute_groups(ages, "age", [25, 45, 65])) == ["<25", "25–45", "45–65", "≥65", MISSING, MISSING]
    fairness = FairnessConfig(sensitive=["sex", "age"], bins={"age": [40]})
    table = group_table(fairness, {"sex": np.array(["F", "M", "F", "M", "F", "M"], dtype=object), "age": ages},
                        ["sex", "age"])
    assert list(table) == ["sex", "age", "sex×age"]
    assert list(table["sex×age"]) == ["F, <40", "M, <40", "F, ≥40", "M, ≥40", f"F, {MISSING}", f"M, {MISSING}"]


def test_unbinned_age_and_text_in_binned_column_are_one_line_errors():
    with pytest.raises(UserError, match=r"fairness.bins: sensitive column 'age' is numeric with 60 distinct values; "
                                        r"give its bin edges"):
        attribute_groups(np.arange(20, 80), "age")
    with pytest.raises(UserError, match=r"fairness.bins.age: column 'age' has 'old' in row 2; bins need numbers"):
        attribute_groups(np.array([30, "old"], dtype=object), "age", [40])


def test_constant_column_is_refused_and_small_groups_are_named_with_their_size():
    with pytest.raises(UserError, match=r"fairness.sensitive: 'sex' has a single group \('M', 3 examples\) in the test split"):
        check_groups("sex", np.array(["M", "M", "M"]), "the test split", 30)
    warnings = check_groups("race", np.array(["A"] * 40 + ["B"] * 2), "the test split", 30)
    assert warnings == ["race: group 'B' has 2 examples in the test split (fewer than fairness.min_group_size 30); "
                        "its numbers are unreliable"]


def test_cli_audit_writes_its_files_and_warns_of_the_small_group(fair_run, cli):
    code, out, err = cli("audit", fair_run.dir, "--split", "test", "--output", "cli-audit")
    assert code == 0, err
    report = json.loads(Path("cli-audit/audit.json").read_text())  # the cli fixture runs in tmp_path
    assert any(w.startswith("race: group 'C' has ") for w in report["warnings"]), report["warnings"]
    assert "warning: race: group 'C'" in " ".join(out.split())


@pytest.mark.parametrize("args, message", [
    (["--sensitive", "gender"], "error: fairness.sensitive: "),
    (["--sensitive", "income"], "error: --sensitive: 'income' is a task column"),
    (["--split", "dev"], "error: --split: 'dev' is not a split (expected train, val, test)"),
])
def test_cli_audit_bad_input_is_one_line_and_exit_2(fair_run, cli, args, message):
    before = sorted(p.name for p in fair_run.dir.iterdir())
    code, out, err = cli("audit", fair_run.dir, *args)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert sorted(p.name for p in fair_run.dir.iterdir()) == before  # nothing written


def test_cli_audit_of_a_constant_column_is_one_line(fair_csv, tmp_path, cli, one_thread):
    frame = pd.read_csv(fair_csv).assign(country="US")
    frame.to_csv(tmp_path / "const.csv", index=False)
    run = fit(load_config(fair_config(tmp_path / "const.csv", train={"epochs": 1, "progress": False})),
              tmp_path / "const", progress=False)
    code, _, err = cli("audit", run.dir, "--sensitive", "country")
    assert code == 2 and err.startswith("error: fairness.sensitive: 'country' has a single group ('US', ")


def test_sensitive_column_needs_a_table_source():
    cfg = load_config("quickstart", ["fairness.sensitive=[sex]"])
    with pytest.raises(UserError, match="fairness.sensitive: source digits has no column 'sex'"):
        build_dataset(cfg)
