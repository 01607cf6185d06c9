"""Token attributions of text runs (Integrated Gradients and saliency on the token embeddings): the keyword that
decides a toy task gets the largest attribution, IG's completeness holds per example, and the folder holds
tokens.csv and tokens.html; methods and baselines that mean nothing for token ids are refused in one line."""

import json

import numpy as np
import pandas as pd
import pytest

import hydranet as hn
from hydranet.explain import Settings, explain_run
from hydranet.train import load_run

FILLER = ["the", "film", "was", "and", "plot", "some", "very", "with"]


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory):
    """`mood` is "good" exactly when the text holds "superb", anywhere among 3 to 8 filler words."""
    folder = tmp_path_factory.mktemp("keyword")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        words = list(rng.choice(FILLER, size=rng.integers(3, 9)))
        if i % 2:
            words.insert(int(rng.integers(0, len(words) + 1)), "superb")
        rows.append({"text": " ".join(words), "mood": "good" if i % 2 else "bad"})
    pd.DataFrame(rows).to_csv(folder / "reviews.csv", index=False)
    config = {"name": "keyword", "data": {"source": "text", "path": str(folder / "reviews.csv"),
                                          "text": {"columns": ["text"], "vocab_size": 300, "max_length": 12}},
              "tasks": {"mood": {}},
              "model": {"trunk": {"name": "transformer", "width": 16, "heads": 2, "depth": 1, "vocab_size": 300}},
              "train": {"epochs": 6, "batch_size": 32, "optimizer": {"lr": 0.003}, "progress": False,
                        "threads": 1}}
    return hn.Experiment(config).fit(folder / "run").dir


def test_the_deciding_keyword_gets_the_largest_attribution(keyword_run, tmp_path):
    """Integrated Gradients, in every test text predicted "good"; its completeness holds for every example."""
    result = explain_run(load_run(keyword_run), split="test", n=16, out=tmp_path / "out")
    tokens = pd.read_csv(tmp_path / "out" / "tokens.csv")
    good = tokens[tokens["target"] == "logit of good"]
    top = good.loc[good.groupby("input")["attribution"].idxmax()]
    assert len(top) >= 4 and (top["token"] == "superb").all(), top
    check = result["completeness"]["mood"]
    assert check["within_bound"] == check["examples"] == 16


def test_saliency_gives_each_token_its_gradient_magnitude(keyword_run, tmp_path):
    """Saliency is a sensitivity (|∂ score / ∂ embedding| summed over the vector), not a signed share."""
    explain_run(load_run(keyword_run), split="test", n=4, out=tmp_path / "out", settings=Settings(method="saliency"))
    tokens = pd.read_csv(tmp_path / "out" / "tokens.csv")
    assert tokens["input"].nunique() == 4 and (tokens["attribution"] > 0).all()


def test_a_text_explanation_writes_tokens_and_a_page(text_run, cli, tmp_path):
    code, _, err = cli("explain", text_run, "--split", "test", "--task", "words", "--n", "4", "-o", tmp_path / "out")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert summary["method"] == "integrated_gradients" and summary["settings"]["baseline"] == "zeros"
    tokens = pd.read_csv(tmp_path / "out" / "tokens.csv")
    assert list(tokens.columns) == ["input", "target", "position", "token", "attribution"]
    assert tokens["input"].nunique() == 4 and (tokens["position"] >= 1).all()  # [CLS] (position 0) left out
    page = (tmp_path / "out" / "tokens.html").read_text()
    assert page.count("<h2>") == 4 and "<script" not in page
    for example, gap, delta in zip(summary["inputs"], summary["completeness"]["words"]["gap"],
                                   summary["completeness"]["words"]["delta"]):  # the tokens add up to the gap
        assert tokens.loc[tokens["input"] == example, "attribution"].sum() == pytest.approx(gap + delta, abs=1e-4)


@pytest.mark.parametrize("option, words", [
    (["--method", "kernel_shap"], "--method: 'kernel_shap' does not explain text runs"),
    (["--baseline", "mean"], "--baseline: 'mean' is not a text baseline"),
    (["--global"], "--global: global importance is for table runs"),
])
def test_what_means_nothing_for_tokens_is_refused_in_one_line(text_run, cli, tmp_path, option, words):
    code, _, err = cli("explain", text_run, "--split", "test", "--task", "topic", *option, "-o", tmp_path / "out")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and words in err, err
    assert not (tmp_path / "out").exists()
