"""`hydranet report` of text and numeric-sequence runs: the usual sections, a few test texts as the source file
holds them with predict's predictions and their labels, the texts beside the highest losses, token attributions
(computed, or read from what `hydranet explain` wrote into the run), and step attributions of sequences."""

import html
import re
import shutil

import pandas as pd
import pytest
from tests.export.exportruns import train_sequence
from tests.report.test_report import section_body

import hydranet as hn
from hydranet.data.text import CLS_ID, encode_texts
from hydranet.explain import Settings, explain_run
from hydranet.explain import report_sections  # noqa: F401 (registers the Attributions section)
from hydranet.registry import _TABLES
from hydranet.report.run import write_report
from hydranet.train import load_run


def cells(fragment):
    """The rows of an HTML table as lists of cell texts (header cells as well)."""
    return [[html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", fragment)]


def only(monkeypatch, *names):
    """Keep the report to these sections (the registry is restored after the test): the others are checked on
    the text run's whole report, and each costs figures."""
    monkeypatch.setitem(_TABLES, "report_section", {name: _TABLES["report_section"][name] for name in names})


def source_texts(run_dir):
    """The run's CSV as written, with each row's text joined as training joins title and body."""
    frame = pd.read_csv(run_dir.parent / "texts.csv")
    frame["text"] = [" ".join(str(v) for v in (t, b) if isinstance(v, str)) for t, b in zip(frame["title"], frame["body"])]
    return frame


@pytest.fixture(scope="module")
def text_report(text_run, tmp_path_factory):
    result = write_report(text_run, tmp_path_factory.mktemp("text-report") / "r.html")
    return result, result["path"].read_text(encoding="utf-8")


def test_a_text_report_shows_test_texts_with_predicts_predictions_and_their_labels(text_run, text_report):
    result, page = text_report
    assert {"overview", "data", "curves", "metrics", "confusion", "reliability", "residuals", "texts", "highest_loss",
            "attributions"} <= set(result["sections"])
    assert result["sections"].index("texts") == result["sections"].index("residuals") + 1
    body = section_body(page, "texts")
    assert 'class="note"' not in body
    header, *rows = cells(body)
    assert header == ["row", "text", "topic predicted", "topic label", "words predicted", "words label"]
    assert len(rows) == 8
    source = source_texts(text_run)
    shown = source.iloc[[int(row[0]) for row in rows]]
    predicted = hn.load(text_run).predict(shown[["title", "body"]])  # predict's own path, from the raw columns
    for row, (_, truth), (_, answer) in zip(rows, shown.iterrows(), predicted.iterrows()):
        assert row[1] == truth["text"]
        assert row[2].split()[0] == answer["topic"] and row[2].endswith("%")
        assert row[3] == truth["topic"]
        assert float(row[4]) == pytest.approx(answer["words"], rel=1e-2, abs=1e-2)  # shown to 3 digits
        assert float(row[5]) == truth["words"]


def test_the_highest_loss_table_of_a_text_run_shows_each_text(text_run, text_report):
    _, page = text_report
    source = source_texts(text_run)
    for task in ("topic", "words"):
        block = section_body(page, "highest_loss").split(f"<h3>{task}</h3>")[1].split("<h3>")[0]
        header, *rows = cells(block)
        assert header == ["row", "loss", "predicted", "label", "text"] and len(rows) == 8
        assert all(row[4] == source["text"][int(row[0])] for row in rows)


def test_a_text_reports_attributions_shade_every_token_of_the_drawn_texts(text_run, text_report):
    """Integrated Gradients of 4 test texts per task (two tasks), one shaded span per token the model read."""
    _, page = text_report
    body = section_body(page, "attributions")
    assert 'class="note"' not in body
    info = load_run(text_run).info
    texts = re.findall(r"<p class='muted'>test\[(\d+)\] \(row (\d+)\)", body)
    assert len(texts) == 2 * 4
    source = source_texts(text_run)
    rows = [int(row) for _, row in texts]
    ids = encode_texts(info.tokenizer, list(source["text"].iloc[rows]), info.max_length)
    assert body.count('<span style="background:rgba(') == int((ids > CLS_ID).sum())
    for task in ("topic", "words"):
        assert f"<h3>{task} · Integrated Gradients of 4 test texts</h3>" in body
    assert body.count("the attributions of 4 of 4 examples add up") == 2


def test_token_attributions_that_explain_wrote_into_the_run_are_shown(text_run, tmp_path, monkeypatch):
    """Saliency of 3 test texts for `topic` read from RUN/explain/topic-saliency/tokens.csv: each token's shade is
    its attribution over its text's largest; `words`, never explained there, is computed."""
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    explain_run(load_run(run), split="test", task="topic", n=3, settings=Settings(method="saliency"))
    only(monkeypatch, "attributions")
    body = section_body(write_report(run)["path"].read_text(encoding="utf-8"), "attributions")
    assert "<h3>topic · saliency, read from explain/topic-saliency/tokens.csv</h3>" in body
    assert "<h3>words · Integrated Gradients of 4 test texts</h3>" in body
    block = body.split("<h3>topic")[1].split("<h3>")[0]
    tokens = pd.read_csv(run / "explain" / "topic-saliency" / "tokens.csv", keep_default_na=False)
    peaks = tokens.groupby("input", sort=False)["attribution"].transform(lambda a: a.abs().max())
    assert re.findall(r'title="([+-]\d\.\d{3})"', block) == [f"{v:+.3f}" for v in tokens["attribution"] / peaks]
    assert block.count(" · predicted ") == 3 and block.count("explaining the logit of") == 3


@pytest.mark.slow  # trains a sequence run (about 10 s on a busy machine)
def test_a_sequence_report_draws_step_attributions_and_no_text_sections(tmp_path, monkeypatch, one_thread):
    run = train_sequence(tmp_path)
    only(monkeypatch, "metrics", "texts", "highest_loss", "attributions")
    result = write_report(run, tmp_path / "r.html")
    page = result["path"].read_text(encoding="utf-8")
    assert result["sections"] == ["metrics", "highest_loss", "attributions"]  # no texts
    body = section_body(page, "attributions")
    assert 'class="note"' not in body
    assert 'alt="attributions of label"' in body and 'alt="attributions of value"' in body
    assert re.search(r"completeness \(.*\): label 4 of 4; value 4 of 4", body)
    assert "<th>text</th>" not in section_body(page, "highest_loss")
