"""Text and numeric-sequence runs export: token ids + attention mask (or values + mask) with a dynamic batch and
length, the tokenizer beside the model, and predict_onnx.py reproducing `hydranet predict` without hydranet. The
recurrent trunks export through an unpacked formulation that must equal packing."""

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tests.export.exportruns import text_frame, train_sequence, train_text, write_series
from tests.export.test_standalone import assert_same_predictions, standalone_predictions
from torch import nn

import hydranet as hn
from hydranet.models.sequence import Recurrent, RecurrentOptions, unpacked


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, True), (2, False)])
def test_the_unpacked_recurrent_formulation_equals_packing(cell, layers, bidirectional):
    """Outputs at every real step and each direction's final state, for sequences of 1 to 10 real steps."""
    torch.manual_seed(0)
    options = RecurrentOptions(width=6, embedding=5, layers=layers, bidirectional=bidirectional, vocab_size=300)
    trunk = Recurrent(options, (10,), cell).eval()
    x = torch.randint(4, 300, (6, 10))
    for row, length in enumerate([1, 2, 5, 9, 10, 3]):
        x[row, length:] = 0
    with torch.no_grad():
        outputs, last, keep = trunk.run(x)  # packed
        ours, our_last = unpacked(trunk.rnn, *trunk.inputs(x))
    torch.testing.assert_close(ours, outputs, atol=1e-6, rtol=0)
    torch.testing.assert_close(our_last, last, atol=1e-6, rtol=0)


def test_a_text_export_takes_ids_and_a_mask_of_any_length_and_reproduces_predict(cli, text_run, tmp_path):
    folder = text_run / "export"
    spec = json.loads((folder / "outputs.json").read_text())
    assert [(i["name"], i["shape"]) for i in spec["inputs"]] == [("input_ids", ["batch", "sequence"]),
                                                              ("attention_mask", ["batch", "sequence"])]
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] and parity["batch_sizes"][-1] == 1
    info = json.loads((text_run / "data.json").read_text())
    assert (folder / "tokenizer.json").read_text() == info["tokenizer"]
    new = text_frame(30, seed=1).drop(columns=["topic", "words"])  # 1 to 11 words, cut at 10 tokens
    new.loc[3, "title"] = "never seen words"  # [UNK]s
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    code, _, err = cli("predict", text_run, path, "-o", tmp_path / "predict.csv")
    assert code == 0, err
    ours = pd.read_csv(tmp_path / "predict.csv", keep_default_na=False)
    assert_same_predictions(ours, standalone_predictions(tmp_path, folder, path))


def test_padding_beyond_the_mask_changes_nothing(text_run):
    """Ids under attention_mask 0 are padding whatever they hold: a caller may pad with any id."""
    session = ort.InferenceSession(str(text_run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[1, 5, 6, 7, 0, 0], [1, 8, 0, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    padded = session.run(None, {"input_ids": ids, "attention_mask": mask})
    junk = session.run(None, {"input_ids": np.where(mask == 1, ids, 9), "attention_mask": mask})
    trimmed = session.run(None, {"input_ids": ids[1:, :2], "attention_mask": mask[1:, :2]})
    for a, b, c in zip(padded, junk, trimmed):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a[1:], c, atol=1e-5)


@pytest.mark.slow
def test_a_gru_text_run_exports_within_tolerance(tmp_path):
    result = hn.load(train_text(tmp_path, "gru")).export()
    assert result["passed"] and max(result["max_abs_diff"].values()) <= 1e-4


@pytest.mark.slow
def test_a_sequence_export_reproduces_predict(cli, tmp_path):
    run_dir = train_sequence(tmp_path)
    result = hn.load(run_dir).export()
    assert result["passed"]
    path = write_series(tmp_path / "new.npz", 20, seed=1)
    code, _, err = cli("predict", run_dir, path, "-o", tmp_path / "predict.csv")
    assert code == 0, err
    ours = pd.read_csv(tmp_path / "predict.csv", keep_default_na=False)
    assert_same_predictions(ours, standalone_predictions(tmp_path, run_dir / "export", path))
