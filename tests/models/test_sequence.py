"""Sequence trunks (transformer, gru, lstm) and the attention blocks: padding never changes the features, in train
and eval mode, for token ids and numeric sequences and every pooling; position matters to the transformer."""

from __future__ import annotations

import pytest
from tests.models.test_sharing import three_tasks
import torch
from torch import nn

from hydranet.config import ModelConfig
from hydranet.errors import UserError
from hydranet.models import build_model
from hydranet.models.attention import EncoderBlock
from hydranet.models.sequence import RecurrentOptions, Transformer, TransformerOptions, gru, lstm, transformer

STEPS, VOCAB = 12, 300
TRANSFORMERS = [dict(pooling=p, positions=q) for p in ("cls", "mean") for q in ("learned", "sinusoidal")]
# two bidirectional layers cover stacking and the backward direction (which must start at the last real step)
RECURRENT = [*((f, dict(pooling=p, bidirectional=True, layers=2)) for f in (gru, lstm) for p in ("last", "mean")),
             (gru, dict(pooling="last", bidirectional=False, layers=1))]


def trunks():
    """Every trunk and pooling, dropout off (dropout draws differ with the tensor's shape, not with padding)."""
    yield from ((transformer, TransformerOptions(width=16, heads=2, depth=2, dropout=0.0, vocab_size=VOCAB, **o))
                for o in TRANSFORMERS)
    yield from ((f, RecurrentOptions(width=8, embedding=8, dropout=0.0, vocab_size=VOCAB, **o)) for f, o in RECURRENT)


def token_batch(padding: int) -> torch.Tensor:
    """Three texts of 3, 5 and 7 tokens, each followed by `padding` pad ids (0)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.zeros(3, 7 + padding, dtype=torch.long)  # the same draws for any padding
    for row, length in enumerate((3, 5, 7)):
        ids[row, :length] = torch.randint(3, VOCAB, (length,), generator=generator)
    return ids


def numeric_batch(padding: int, features: int = 2) -> torch.Tensor:
    """Three sequences of 2, 4 and 6 steps with a validity channel; padded steps hold garbage values, which the
    validity channel alone must make irrelevant."""
    generator = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 6 + 6, features + 1, generator=generator) * 5)[:, : 6 + padding]  # the same real steps
    x[..., -1] = 0.0
    for row, length in enumerate((2, 4, 6)):
        x[row, :length, -1] = 1.0
    return x


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("factory,options", list(trunks()), ids=lambda v: getattr(v, "__name__", None) or str(v))
def test_padding_never_changes_the_features(factory, options, mode):
    for batch, shape in ((token_batch, (STEPS,)), (numeric_batch, (STEPS, 3))):
        torch.manual_seed(0)
        trunk = factory(options, shape).train(mode == "train")
        reference, (tokens, keep) = trunk(batch(0)), trunk.token_features(batch(0))
        for padding in (2, 5):
            assert torch.allclose(trunk(batch(padding)), reference, atol=1e-5), (batch.__name__, padding)
            padded, padded_keep = trunk.token_features(batch(padding))  # what masked-token pretraining reads
            assert torch.equal(padded_keep[:, : keep.shape[1]], keep) and not padded_keep[:, keep.shape[1]:].any()
            assert torch.allclose(padded[:, : keep.shape[1]][keep], tokens[keep], atol=1e-5), (batch.__name__, padding)


def test_attention_ignores_what_padded_keys_hold():
    """The block's mask, not the padded values, decides: changing them changes no real position's output."""
    torch.manual_seed(0)
    block = EncoderBlock(width=8, heads=2)
    x, keep = torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    changed = x.clone()
    changed[0, 3:] = 100.0
    assert torch.allclose(block(x, keep)[0, :3], block(changed, keep)[0, :3], atol=1e-6)


@pytest.mark.parametrize("factory,options", [(transformer, TransformerOptions(width=16, heads=2, vocab_size=VOCAB)),
                                             (gru, RecurrentOptions(width=8, embedding=8, vocab_size=VOCAB))])
def test_trunks_train_under_bf16_autocast(factory, options):
    trunk = factory(options, (STEPS,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = trunk(token_batch(3))
    features.float().sum().backward()
    assert features.shape == (3, trunk.out_dim) and all(p.grad is not None for p in trunk.parameters())


def test_a_tiny_transformer_learns_what_a_bag_of_tokens_cannot(one_thread):
    """"Is the first token larger than the last?" on sequences and their reverses: every bag of tokens occurs with
    both answers, so a model blind to positions stays at chance; the transformer reaches ≥ 90% on held-out pairs."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 13, (600, 6), generator=generator)
    ids = ids[ids[:, 0] != ids[:, -1]][:400]
    ids = torch.stack([ids, ids.flip(1)], dim=1).reshape(-1, 6)  # each sequence, then its reverse
    labels = (ids[:, 0] > ids[:, -1]).long()
    torch.manual_seed(0)
    model = nn.Sequential(Transformer(TransformerOptions(width=32, heads=2, depth=1, dropout=0.0, vocab_size=300), (6,)),
                          nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(25):
        for batch in torch.randperm(600, generator=generator).split(50):
            loss = nn.functional.cross_entropy(model(ids[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    accuracy = (model.eval()(ids[600:]).argmax(1) == labels[600:]).float().mean().item()
    assert accuracy >= 0.9


@pytest.mark.parametrize("sharing", ["hard", "mmoe", "cgc"])
def test_sequence_trunks_work_with_sharing(sharing):
    """Hard sharing for texts and numeric sequences; mmoe and cgc gate on the flattened numbers, so numeric only."""
    cfg = ModelConfig(trunk={"name": "gru", "width": 8, "embedding": 8}, sharing={"name": sharing})
    outputs = build_model(cfg, (STEPS, 3), three_tasks())(numeric_batch(6))
    assert outputs["digit"].shape == (3, 10) and outputs["ink"].shape == (3,)
    if sharing == "hard":
        assert build_model(cfg, (STEPS,), three_tasks())(token_batch(5))["digit"].shape == (3, 10)


def test_trunks_refuse_images_and_uneven_heads():
    with pytest.raises(UserError, match="model.trunk.name: transformer needs token ids"):
        transformer(TransformerOptions(), (3, 8, 8))
    with pytest.raises(UserError, match="model.trunk.width: 30 is not a multiple of model.trunk.heads 4"):
        transformer(TransformerOptions(width=30), (STEPS,))
