"""`hydranet monitor` of a text run: each text described by its token count and its share of unknown tokens,
against the train sample the run stored; texts like the train texts flag nothing, texts of words the tokenizer
never learned flag both features and the predictions. Numeric-sequence runs: each sequence described by its steps
and each feature's mean and std in the data's units."""

import json

import numpy as np
import pandas as pd
from tests.export.exportruns import text_frame, train_sequence, write_series

from hydranet.data import to_model_inputs
from hydranet.data.info import SEQUENCE, DataInfo
from hydranet.data.sequences import padded_series
from hydranet.monitor.reference import sequence_features


def test_texts_of_unknown_words_drift_and_texts_like_train_do_not(text_run, cli, tmp_path):
    text_frame(80, seed=3).to_csv(tmp_path / "same.csv", index=False)
    pd.DataFrame({"title": ["zzq qqx"] * 80, "body": ["xxyy vvww"] * 80}).to_csv(tmp_path / "odd.csv", index=False)
    reports = {}
    for name in ("same", "odd"):
        code, out, err = cli("monitor", text_run, tmp_path / f"{name}.csv", "-o", tmp_path / name)
        assert code == 0, err
        reports[name] = json.loads((tmp_path / name / "drift.json").read_text())
    assert "stored at training time" in reports["same"]["reference"]
    drifted = {name: {f["feature"] for f in r["features"]["features"] if f["drift"]} for name, r in reports.items()}
    assert drifted == {"same": set(), "odd": {"tokens", "unknown_rate"}}
    assert reports["odd"]["predictions"]["drifted"] >= 1 and (tmp_path / "odd" / "drift.html").is_file()


def test_sequences_of_other_lengths_and_levels_drift_and_sequences_like_train_do_not(cli, tmp_path):
    """Train sequences: 1 to 12 steps of two features about 5 ± 3. New ones drawn alike flag no input feature;
    12-step sequences whose f0 sits at 50 flag their steps and f0's mean."""
    run_dir = train_sequence(tmp_path)
    reference = json.loads((run_dir / "reference.json").read_text())
    assert list(reference["features"]) == ["steps", "mean_f0", "mean_f1", "std_f0", "std_f1"]
    assert reference["sample_rows"] > 0
    write_series(tmp_path / "same.npz", 80, seed=3)
    odd = dict(np.load(tmp_path / "same.npz"))
    odd["x"][..., 0] += 45
    odd["lengths"][:] = 12
    np.savez(tmp_path / "odd.npz", **odd)
    reports = {}
    for name in ("same", "odd"):
        code, out, err = cli("monitor", run_dir, tmp_path / f"{name}.npz", "-o", tmp_path / name)
        assert code == 0, err
        reports[name] = json.loads((tmp_path / name / "drift.json").read_text())
    assert "stored at training time" in reports["same"]["reference"]
    drifted = {name: {f["feature"] for f in r["features"]["features"] if f["drift"]} for name, r in reports.items()}
    assert drifted["same"] == set() and {"steps", "mean_f0"} <= drifted["odd"]


def test_sequence_features_are_the_steps_and_each_features_mean_and_std_in_the_datas_units():
    """Two sequences of 2 and 3 steps (padded to 4), standardized with mean (10, 0) and std (2, 1)."""
    info = DataInfo(SEQUENCE, (4, 3), mean=[10.0, 0.0], std=[2.0, 1.0])
    raw = np.array([[[12.0, 1.0], [14.0, 3.0], [0, 0], [0, 0]], [[10.0, -1.0], [10.0, -1.0], [16.0, 2.0], [0, 0]]])
    x = to_model_inputs(info, series=padded_series(raw, np.array([2, 3]), "test"))
    features = sequence_features(info, x)
    expected = pd.DataFrame({"steps": [2.0, 3.0], "mean_f0": [13.0, 12.0], "mean_f1": [2.0, 0.0],
                             "std_f0": [1.0, np.sqrt(8.0)], "std_f1": [1.0, np.sqrt(2.0)]})
    pd.testing.assert_frame_equal(features, expected, atol=1e-5, check_dtype=False)
