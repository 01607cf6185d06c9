"""`hydranet monitor` of a text run: each text described by its token count and its share of unknown tokens,
against the train sample the run stored; texts like the train texts flag nothing, texts of words the tokenizer
never learned flag both features and the predictions. Numeric-sequence runs are refused in one line."""

import json

import pandas as pd
from tests.export.exportruns import text_frame, train_sequence


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


def test_a_sequence_run_is_refused_in_one_line(cli, tmp_path):
    run_dir = train_sequence(tmp_path)
    code, _, err = cli("monitor", run_dir, tmp_path / "s.npz")
    assert code == 2 and err.strip() == ("error: RUN: hydranet monitor does not handle sequence runs yet (image, "
                                         "table, text runs only; see docs/sequence.md)")
