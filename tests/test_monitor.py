"""Drift tests (`hydranet.monitor.drift`) against scipy and hand-computed cases, their error rates, and the
`hydranet monitor` command."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import chi2, ks_2samp

import hydranet as hn
from tests.conftest import tiny_table_config

ADULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "adult"
from hydranet.monitor.drift import column_drift, frame_drift, uses_stat_tests


def test_hand_computed_cases():
    ref, cur = pd.Series(list("aabb")), pd.Series(list("aaab"))
    # counts [[2, 2], [3, 1]]; expected [[2.5, 1.5], [2.5, 1.5]]: chi² = 2 (0.25/2.5 + 0.25/1.5), one degree of freedom
    assert column_drift(ref, cur, True, True)["p_value"] == pytest.approx(chi2.sf(2 * (0.1 + 0.25 / 1.5), 1))
    m = np.array([0.625, 0.375])  # mean of (1/2, 1/2) and (3/4, 1/4); JS distance in nats, as Evidently
    kl = lambda p: float(np.sum(p * np.log(p / m)))
    expected = math.sqrt((kl(np.array([0.5, 0.5])) + kl(np.array([0.75, 0.25]))) / 2)
    assert column_drift(ref, cur, True, False)["distance"] == pytest.approx(expected)
    numbers = pd.Series([0.0, 1.0, 2.0, 3.0])  # shift by 1: Wasserstein 1, population std √1.25
    assert column_drift(numbers, numbers + 1, False, False)["distance"] == pytest.approx(1 / math.sqrt(1.25))
    assert uses_stat_tests(1000) and not uses_stat_tests(1001)  # "≤ 1,000 rows": tests; beyond: distances
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.2, size=200)
    assert column_drift(pd.Series(a), pd.Series(b), False, True)["p_value"] == pytest.approx(ks_2samp(a, b).pvalue)


def test_category_new_to_the_reference_is_drift_and_missing_cells_are_ignored():
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    assert column_drift(reference, pd.Series(["a"] * 20 + ["b"] * 20 + [None] * 30), True, True)["p_value"] == 1.0
    assert column_drift(reference, pd.Series(["a"] * 20 + ["b"] * 20 + ["c"] * 10), True, True)["drift"]


def frame(rng, n, shift=0.0):
    """Two numeric columns and one categorical; `shift` moves `age` by that many standard deviations."""
    hours, color = rng.normal(40, 5, n), rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame({"hours": hours, "color": color, "age": rng.normal(40 + 10 * shift, 10, n)})  # age last


def test_shifted_feature_is_flagged_first():
    rng = np.random.default_rng(1)
    for ref_rows in (1000, 5000):  # statistical tests, then distances
        report = frame_drift(frame(rng, ref_rows), frame(rng, 500, shift=0.5), ["color"])
        assert report["features"][0]["feature"] == "age" and report["features"][0]["drift"]
    assert report["drifted"] == 1 and report["share_drifted"] == pytest.approx(1 / 3)  # distances: age only


def test_small_reference_false_positive_rate_is_nominal():
    """Unshifted 100-row samples against 1,000-row references, both drawn afresh: each test flags about 5% of 200
    seeded draws (a binomial band of 1%–10%, about ±3 standard deviations), neither always nor never.
"""
    flagged = {name: 0 for name in ("age", "hours", "color")}
    for draw in range(200):
        rng = np.random.default_rng(1000 + draw)
        for result in frame_drift(frame(rng, 1000), frame(rng, 100), ["color"])["features"]:
            flagged[result["feature"]] += result["drift"]
    assert all(2 <= count <= 20 for count in flagged.values()), flagged


def test_large_reference_unshifted_sample_is_not_flagged():
    rng = np.random.default_rng(3)
    reference = frame(rng, 20000)
    for _ in range(20):
        assert frame_drift(reference, frame(rng, 1000), ["color"])["drifted"] == 0


def test_monitor_command(cli, tiny_csv, tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_table_config(tiny_csv)))
    run = tmp_path / "run"
    assert cli("train", exp, "--run-dir", run, "-q")[0] == 0
    new = pd.read_csv(tiny_csv)
    new["x1"] += 2.0  # shifts the input and, through it, the predicted class
    new.to_csv(tmp_path / "new.csv", index=False)
    code, out, err = cli("monitor", run, tmp_path / "new.csv", "-o", tmp_path / "drift")
    assert code == 0, err
    report = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert [f["feature"] for f in report["features"]["features"] if f["drift"]] == ["x1"]
    assert report["features"]["features"][0]["method"] == "Kolmogorov-Smirnov"
    assert report["predictions"]["tasks"][0]["feature"] == "kind_p(up)" and report["predictions"]["tasks"][0]["drift"]
    page = (tmp_path / "drift" / "drift.html").read_text()
    assert "<script" not in page and "x1" in page

    in_python = hn.load(run).drift(new)  # the same report from a DataFrame, nothing written
    assert in_python["features"] == report["features"] and in_python["data"] == "input"

    new.drop(columns=["x2"]).to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = cli("monitor", run, tmp_path / "bad.csv", "-o", tmp_path / "drift")
    assert code == 2 and err.count("\n") == 1 and "'x2'" in err
    assert json.loads((tmp_path / "drift" / "drift.json").read_text()) == report  # nothing saved is lost


@pytest.mark.slow
def test_adult_shifted_age_is_flagged_first_and_unshifted_is_not():
    """The issue's checks on adult itself: its test split against its train split, age moved by ten years."""
    from hydranet.data.sources.table import read_table, table_format

    path = ADULT / "adult.csv.gz"
    rows = read_table(path, table_format(path))
    features = [c for c in rows.columns if c not in ("income", "split")]
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(rows[c])]
    train, test = rows[rows.split == "train"][features], rows[rows.split == "test"][features]
    small = train.sample(1000, random_state=0)
    shifted = frame_drift(small, test.assign(age=test.age + 10), categorical)
    assert [f["feature"] for f in shifted["features"] if f["drift"]] == ["age"]
    assert frame_drift(train, test, categorical)["drifted"] == 0  # all train rows: distances
