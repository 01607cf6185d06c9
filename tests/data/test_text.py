"""Text and sequence data: tokenizers round-trip and tokenize identically after a run is loaded; the text and
sequence sources refuse empty texts, missing columns and ragged or inconsistent arrays with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import hydranet as hn
from hydranet.config import TextConfig, load_config
from hydranet.data import DataInfo, build_dataset, to_model_inputs
from hydranet.data.sequences import padded_series
from hydranet.data.text import CLS_ID, PAD_ID, decode_ids, encode_texts, load_tokenizer, train_tokenizer
from hydranet.errors import UserError

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "zeta", "kappa"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 9))) for _ in range(n)]


@pytest.fixture
def text_csv(tmp_path):
    """Two text columns, a topic (does the first word come before the last one alphabetically) and a length."""
    texts = sentences(120)
    frame = pd.DataFrame({"title": [t.split()[0] for t in texts], "body": [" ".join(t.split()[1:]) for t in texts],
                          "topic": ["up" if t.split()[0] < t.split()[-1] else "down" for t in texts],
                          "words": [len(t.split()) for t in texts]})
    path = tmp_path / "texts.csv"
    frame.to_csv(path, index=False)
    return path


def text_config(path, **text) -> dict:
    return {"name": "texts", "data": {"source": "text", "path": str(path),
                                      "text": {"columns": ["title", "body"], "vocab_size": 300, "max_length": 12, **text}},
            "tasks": {"topic": {}, "words": {"kind": "regression"}},
            "model": {"trunk": {"name": "transformer", "width": 16, "heads": 2, "depth": 1, "vocab_size": 300}},
            "train": {"epochs": 1, "batch_size": 32, "progress": False, "threads": 1}}


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "byte"])
def test_tokenizers_round_trip(kind):
    texts = sentences(50)
    if kind == "byte":  # nothing trained: any UTF-8 text comes back exactly, capitals and accents included
        texts = ["Héllo wörld, 42 — ok?", "ÆØÅ tab\tend"]
    saved = train_tokenizer(TextConfig(tokenizer=kind, vocab_size=300), texts)
    ids = encode_texts(saved, texts, 64)
    assert (ids[:, 0] == CLS_ID).all() and ids.dtype == torch.int64
    assert decode_ids(saved, ids) == texts


def test_texts_are_cut_and_padded_to_max_length():
    saved = train_tokenizer(TextConfig(tokenizer="byte"), ["x"])
    ids = encode_texts(saved, ["abcdefgh", "ab"], 5)
    assert ids.shape == (2, 5) and decode_ids(saved, ids) == ["abcd", "ab"] and ids[1, 3:].tolist() == [PAD_ID] * 2


def test_a_loaded_run_tokenizes_exactly_as_training_did(tmp_path, text_csv, one_thread):
    """The tokenizer travels in data.json: a loaded run turns the raw rows into the training ids, and predict on
    a CSV of texts reads only the text columns."""
    cfg = text_config(text_csv)
    run = hn.Experiment(cfg).fit(tmp_path / "run")
    data = build_dataset(load_config(cfg))
    info = DataInfo.from_dict(json.loads((run.dir / "data.json").read_text()))
    rows = pd.read_csv(text_csv)
    assert torch.equal(to_model_inputs(info, frame=rows), data.x)
    predicted = hn.load(run.dir).predict(rows[["body", "title"]])
    assert list(predicted.columns) == ["topic", "words"] and len(predicted) == len(rows)


def test_the_tokenizer_learns_from_the_train_split_only(text_csv, tmp_path):
    """A word only val/test rows hold is not in the vocabulary (it would leak the held-out texts)."""
    frame = pd.read_csv(text_csv)
    frame["split"] = ["train"] * 100 + ["test"] * 20
    frame.loc[100:, "body"] = "unseenword"
    frame.to_csv(tmp_path / "split.csv", index=False)
    info = build_dataset(load_config(text_config(tmp_path / "split.csv"))).info
    assert "unseenword</w>" not in load_tokenizer(info.tokenizer).get_vocab()


@pytest.mark.parametrize("change,message", [
    (lambda f: f.assign(title=f["title"].where(f.index != 4, ""), body=f["body"].where(f.index != 4, " ")),
     r"texts.csv: row 5 has no text in column\(s\) 'title', 'body'; expected a non-empty text in every row"),
    (lambda f: f.drop(columns="body"), r"data.text.columns: .*texts.csv: no column 'body' \(columns: title, topic, words\)"),
    (lambda f: f.drop(columns="topic"), r"texts.csv: no column 'topic'"),
])
def test_the_text_source_refuses(text_csv, change, message):
    change(pd.read_csv(text_csv)).to_csv(text_csv, index=False)
    with pytest.raises(UserError, match=message):
        build_dataset(load_config(text_config(text_csv)))


def test_a_headerless_csv_takes_its_column_names_from_data_text_header(text_csv):
    pd.read_csv(text_csv).to_csv(text_csv, index=False, header=False)
    cfg = text_config(text_csv, header=["title", "body", "topic", "words"])
    assert len(build_dataset(load_config(cfg)).x) == 120


def test_a_trunk_too_small_for_the_vocabulary_is_refused_before_training(text_csv):
    cfg = text_config(text_csv, vocab_size=1000)
    with pytest.raises(UserError, match="model.trunk.vocab_size: 300 rows cannot embed data.text.vocab_size 1000"):
        load_config(cfg)


def sequence_npz(path, **changes):
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, size=40)
    x = rng.normal(3.0, 2.0, size=(40, 8, 2))
    arrays = {"x": x, "lengths": lengths, "label": np.where(x[:, 0, 0] > 3, "hi", "lo"), **changes}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("changes,message", [
    ({"x": np.array([np.zeros((3, 2)), np.zeros((5, 2))], dtype=object)}, "not a readable .npz file without pickled objects"),
    ({"lengths": np.full(40, 9)}, r"lengths\[0\] is 9; expected 1..8 \(the steps of x\)"),
    ({"lengths": np.arange(39)}, r"array 'lengths' has shape \(39,\) and dtype int64; expected \(40,\) integers"),
    ({"label": np.array(["a"] * 39)}, r"array 'label' has shape \(39,\); expected \(40,\), one value per sequence"),
    ({"x": np.zeros((40, 8))}, r"array 'x' has shape \(40, 8\); expected \(N, T, F\)"),
])
def test_the_sequence_source_refuses(tmp_path, make_cfg, changes, message):
    path = sequence_npz(tmp_path / "seq.npz", **changes)
    with pytest.raises(UserError, match=message):
        build_dataset(make_cfg("sequence", path))


def test_sequences_are_standardized_on_train_steps_and_padding_stays_zero(tmp_path, make_cfg):
    data = build_dataset(make_cfg("sequence", sequence_npz(tmp_path / "seq.npz")))
    train = data.x[data.index["train"]]
    valid = train[..., -1] > 0.5
    assert data.x.shape == (40, 8, 3) and (data.x[~(data.x[..., -1] > 0.5)] == 0).all()
    assert torch.allclose(train[..., :2][valid].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(train[..., :2][valid].std(0, correction=0), torch.ones(2), atol=1e-4)


def test_a_sequence_run_predicts_from_an_npz(tmp_path, cli, one_thread):
    path = sequence_npz(tmp_path / "seq.npz")
    experiment = {"name": "seq", "data": {"source": "sequence", "path": str(path)}, "tasks": {"label": {}},
                  "model": {"trunk": {"name": "lstm", "width": 8}}, "train": {"epochs": 1, "threads": 1}}
    (tmp_path / "seq.yaml").write_text(json.dumps(experiment))  # JSON is YAML
    code, _, err = cli("train", tmp_path / "seq.yaml", "--run-dir", tmp_path / "run", "-q")
    assert code == 0, err
    code, _, err = cli("predict", tmp_path / "run", path, "--output", tmp_path / "p.csv")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "p.csv")) == 40
    code, _, err = cli("predict", tmp_path / "run", tmp_path / "p.csv")
    assert code == 2 and err.strip().splitlines() == ["error: INPUT: this run was trained on sequences; give one .npz "
                                                      "file with arrays x and lengths"]


def test_padded_series_marks_the_real_steps():
    series = padded_series(np.ones((2, 3, 1)), np.array([1, 3]), "x.npz")
    assert series[..., -1].tolist() == [[1, 0, 0], [1, 1, 1]] and series[0, 1:, 0].tolist() == [0, 0]
