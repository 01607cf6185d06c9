"""Masked-token pretraining (`ssl.method: mlm`): BERT's 15% and 80/10/10 on a large sample, padding and specials
never chosen; a tiny pretraining lowers its loss; `model.init_from` takes the trunk and its tokenizer; the errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hydranet.config import SSLConfig, TextConfig
from hydranet.data.info import DataInfo
from hydranet.data.text import SPECIALS, decode_ids, encode_texts, load_tokenizer, special_ids, train_tokenizer, vocabulary_size
from hydranet.errors import UserError
from hydranet.files import read_tensors
from hydranet.models.hydranet import HydraNet
from hydranet.models.sequence import TransformerOptions, transformer
from hydranet.randomness import Purpose, stream
from hydranet.ssl.methods.mlm import MLM, MLMOptions, corrupt
from hydranet.ssl.views import ViewMaker

ANIMALS, PLACES = ["cat", "dog", "bird", "fish"], ["mat", "park", "tree", "pond"]


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """`count` successes of `n` draws agree with probability p (binomial, ±5σ: a false alarm about once in 3.5 M)."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_bert_rule_on_a_large_sample():
    """200,000 positions, a quarter padding and a column of [CLS]: 15% of the real tokens chosen; of those 80% shown
    as [MASK], 10% as a random ordinary token, 10% unchanged; padding and specials never chosen nor drawn."""
    vocabulary, mask_id = 500, 3
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocabulary, (2000, 100), generator=generator)
    ids[:, 75:] = 0  # trailing padding
    ids[:, 0] = 1  # [CLS]
    special = torch.tensor([0, 1, 2, mask_id])
    regular = torch.arange(4, vocabulary)
    shown, chosen = corrupt(ids, special, regular, mask_id, MLMOptions(), stream(0, Purpose.MLM_MASK, 0))
    candidates = ~torch.isin(ids, special)
    assert not chosen[~candidates].any() and torch.equal(shown[~candidates], ids[~candidates])
    n, k = int(candidates.sum()), int(chosen.sum())
    assert within(k, n, 0.15)
    as_mask = int((shown[chosen] == mask_id).sum())
    unchanged = int((shown[chosen] == ids[chosen]).sum())
    changed = chosen & (shown != ids) & (shown != mask_id)
    assert within(as_mask, k, 0.8) and within(int(changed.sum()), k, 0.1 * (1 - 1 / len(regular)))
    assert within(unchanged, k, 0.1 + 0.1 / len(regular))  # a random draw may hit the original token
    assert not torch.isin(shown[changed], special).any()
    assert torch.equal(shown[~chosen], ids[~chosen])


def test_masks_come_from_the_epochs_stream():
    ids = torch.randint(4, 300, (8, 20), generator=torch.Generator().manual_seed(1))
    special, regular = torch.tensor([0, 1, 2, 3]), torch.arange(4, 300)

    def draw(epoch: int):
        return corrupt(ids, special, regular, 3, MLMOptions(), stream(5, Purpose.MLM_MASK, epoch))

    assert torch.equal(draw(2)[0], draw(2)[0]) and not torch.equal(draw(2)[0], draw(3)[0])


def sentences(n: int, seed: int = 0) -> list[str]:
    """'the cat sat on the mat' style texts in which each animal has its own place: a masked word is predictable."""
    rng = np.random.default_rng(seed)
    return [f"the {ANIMALS[i]} sat on the {PLACES[i]}" for i in rng.integers(0, 4, size=n)]


@pytest.fixture
def animals_csv(tmp_path):
    texts = sentences(200)
    frame = pd.DataFrame({"text": texts, "animal": [t.split()[1] for t in texts]})
    frame.to_csv(tmp_path / "animals.csv", index=False)
    return tmp_path / "animals.csv"


def animals_experiment(path, tmp_path) -> str:
    cfg = {"name": "animals", "data": {"source": "text", "path": str(path), "text": {"vocab_size": 300, "max_length": 10}},
           "tasks": {"animal": {"kind": "classification"}},
           "model": {"trunk": {"name": "transformer", "width": 32, "heads": 2, "depth": 1, "vocab_size": 300, "dropout": 0.0}},
           "train": {"epochs": 4, "batch_size": 32, "threads": 1, "optimizer": {"lr": 0.003}}}
    (tmp_path / "animals.yaml").write_text(json.dumps(cfg))
    return "animals.yaml"


def test_pretraining_lowers_the_loss_and_init_from_takes_trunk_and_tokenizer(cli, tmp_path, animals_csv):
    experiment = animals_experiment(animals_csv, tmp_path)
    code, _, err = cli("pretrain", experiment, "--set", "ssl.method=mlm", "--set", "train.optimizer.lr=0.01",
                       "--run-dir", "pre", "-q")
    assert code == 0, err
    losses = [json.loads(line)["train"]["mlm"]["loss"] for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    tokens = vocabulary_size(json.loads((tmp_path / "pre" / "data.json").read_text())["tokenizer"])
    # from about ln 300 (uniform over the embedding's rows) to well below ln(the tokens the texts use): measured 4.94 → 2.42
    assert len(losses) == 4 and losses[0] > math.log(tokens) and losses[-1] < 0.7 * math.log(tokens), (losses, tokens)
    trunk = read_tensors(tmp_path / "pre" / "trunk.safetensors")[0]
    assert "trunk.inputs.embed.weight" in trunk  # the tied output layer is the embedding: nothing extra is saved

    # a tenth of the labels: a tokenizer trained on those 14 texts would give other ids than the pretrained embedding's
    code, _, err = cli("train", experiment, "--set", "model.init_from=pre", "--set", "train.freeze=trunk",
                       "--set", "data.labels_fraction=0.1", "--set", "train.epochs=1", "--run-dir", "fine", "-q")
    assert code == 0, err
    fine = read_tensors(tmp_path / "fine" / "model.safetensors")[0]
    assert all(torch.equal(fine[k], v) for k, v in trunk.items())
    tokenizer = {run: json.loads((tmp_path / run / "data.json").read_text())["tokenizer"] for run in ("pre", "fine")}
    assert tokenizer["fine"] == tokenizer["pre"]


def test_a_probe_reads_texts_with_the_trunks_tokenizer(cli, tmp_path, animals_csv, monkeypatch):
    """`hydranet probe` of a text run on a tenth of the labels tokenizes with the run's tokenizer, trains none."""
    experiment = animals_experiment(animals_csv, tmp_path)
    assert cli("pretrain", experiment, "--set", "ssl.method=mlm", "--set", "train.epochs=1", "--run-dir", "pre", "-q")[0] == 0

    def refuse(*args):
        raise AssertionError("a tokenizer was trained for the probe")

    monkeypatch.setattr("hydranet.data.build.train_tokenizer", refuse)
    code, _, err = cli("probe", "pre", "--mode", "knn", "--labels-fraction", "0.1")
    assert code == 0, err


def text_views(tokenizer: str, length: int = 10) -> ViewMaker:
    return ViewMaker(SSLConfig(), 0, "fp32", DataInfo("text", (length,), tokenizer=tokenizer))


def test_an_untrained_tied_head_starts_near_the_uniform_loss():
    """The tied logits are scaled by width^-1/2: with the trunk's unit-variance embedding rows the first loss is about
    ln(rows) (a softmax of unit-variance logits: ln(rows) + about 0.5), not the 3x of unscaled logits that the first steps would spend undoing."""
    tokenizer = train_tokenizer(TextConfig(vocab_size=300), sentences(100))
    torch.manual_seed(0)
    trunk = transformer(TransformerOptions(width=64, heads=2, depth=1, vocab_size=300, dropout=0.0), (10,))
    method = MLM(MLMOptions(), trunk, text_views(tokenizer))
    loss = method(HydraNet(trunk, {}), {"x": encode_texts(tokenizer, sentences(64), 10)})["mlm"]
    assert abs(float(loss.detach()) - math.log(300)) < 1.5, float(loss.detach())  # measured 6.77 (unscaled: 18.1)


def test_a_byte_trunk_needs_a_row_for_mask():
    tokenizer = train_tokenizer(TextConfig(tokenizer="byte"), [])
    assert special_ids(tokenizer)["[MASK]"] == 259  # after the bytes: byte runs of 259 rows keep working
    trunk = transformer(TransformerOptions(width=8, heads=2, depth=1, vocab_size=259), (10,))
    with pytest.raises(UserError, match="model.trunk.vocab_size: 259 rows cannot embed the tokenizer's \\[MASK\\] "
                                        "\\(id 259\\); expected model.trunk.vocab_size ≥ 260"):
        MLM(MLMOptions(), trunk, text_views(tokenizer))


def old_tokenizer(texts: list[str]) -> str:
    """A BPE tokenizer as hydranet trained it before [MASK] existed: [PAD], [CLS], [UNK] only."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False))
    return tokenizer.to_str()


def test_a_tokenizer_saved_before_mask_still_decodes_and_is_refused_by_mlm():
    tokenizer = old_tokenizer(sentences(50))
    assert "[MASK]" not in special_ids(tokenizer)
    word = load_tokenizer(tokenizer).id_to_token(3)  # an ordinary token there, where new tokenizers hold [MASK]
    assert decode_ids(tokenizer, torch.tensor([[1, 3, 0]])) == [word]
    trunk = transformer(TransformerOptions(width=8, heads=2, depth=1, vocab_size=300), (10,))
    with pytest.raises(UserError, match="ssl.method: mlm needs a \\[MASK\\] token, which this tokenizer"):
        MLM(MLMOptions(), trunk, text_views(tokenizer))


def test_mlm_refuses_images_in_one_line(cli):
    code, _, err = cli("pretrain", "quickstart", "--set", "ssl.method=mlm", "--set", "train.epochs=1")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: ssl.method: mlm predicts masked tokens: it needs texts (data.source: text)")


def test_shares_of_the_chosen_tokens_must_fit():
    with pytest.raises(ValueError, match="masked 0.9 \\+ randomized 0.2 exceed 1"):
        MLMOptions(masked=0.9, randomized=0.2)
