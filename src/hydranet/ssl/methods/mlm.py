"""Masked-token pretraining (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL): choose a share of the real tokens, corrupt them, predict the original tokens there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.data.text import MASK, special_ids, vocabulary_size
from hydranet.distributed.draws import rand_rows, randint_rows
from hydranet.distributed.gather import mean_over_ranks
from hydranet.errors import UserError
from hydranet.randomness import Purpose, stream
from hydranet.registry import register
from hydranet.ssl.views import ViewMaker


class MLMOptions(Options):
    """Options of `ssl.method: {name: mlm, …}`; the defaults are BERT's rule."""

    rate: float = Field(0.15, gt=0, lt=1, description="share of the real tokens (padding and specials never) chosen for prediction")
    masked: float = Field(0.8, ge=0, le=1, description="share of the chosen tokens shown as [MASK]")
    randomized: float = Field(0.1, ge=0, le=1, description="share of the chosen tokens shown as a random token (the rest are shown unchanged)")
    tie: bool = Field(True, description="the output layer over the vocabulary is the trunk's input embedding (transposed) plus a bias, as in BERT; false: its own weights")

    @model_validator(mode="after")
    def _shares_fit(self) -> MLMOptions:
        if self.masked + self.randomized > 1:
            raise ValueError(f"masked {self.masked} + randomized {self.randomized} exceed 1 (they are shares of the chosen tokens)")
        return self


def corrupt(ids: Tensor, special: Tensor, regular: Tensor, mask_id: int, options: MLMOptions,
            generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """BERT's rule on a (B, T) batch of ids at once: each token that is not special (padding, [CLS], [UNK], [MASK])
    is chosen with probability `rate`; a chosen token becomes [MASK] with probability `masked`, a token drawn
    uniformly from `regular` with probability `randomized`, else stays. Returns the corrupted ids and the (B, T)
    bool mask of chosen positions. Draws on the CPU `generator` (the same on any device; for the global batch, each
    rank keeping its rows), all in tensor ops."""
    choose, action = rand_rows(generator, *ids.shape), rand_rows(generator, *ids.shape)
    replacement = regular[randint_rows(generator, len(regular), *ids.shape)]
    choose, action, replacement = choose.to(ids.device), action.to(ids.device), replacement.to(ids.device)
    chosen = ~torch.isin(ids, special.to(ids.device)) & (choose < options.rate)
    to_mask = chosen & (action < options.masked)
    to_random = chosen & (action >= options.masked) & (action < options.masked + options.randomized)
    shown = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    return torch.where(to_random, replacement, shown), chosen


@register("ssl", "mlm", options=MLMOptions)
class MLM(nn.Module):
    """Masked-token prediction for text trunks: BERT's head (dense → GELU → LayerNorm → logits over the
    embedding's rows) on the trunk's per-token outputs at the chosen positions, cross-entropy there only."""

    name = "mlm"
    inputs = ("text",)  # token ids only: the contract tests and `hydranet pretrain` run it on texts

    def __init__(self, options: MLMOptions, trunk: nn.Module, views: ViewMaker):
        super().__init__()
        self.options, self.views = options, views
        embedding = _text_embedding(trunk, views)
        specials = special_ids(views.tokenizer)
        if MASK not in specials:
            raise UserError("ssl.method: mlm needs a [MASK] token, which this tokenizer (saved before hydranet "
                            "reserved one) lacks; pretrain with a newly trained tokenizer")
        self.mask_id, rows = specials[MASK], embedding.num_embeddings
        if self.mask_id >= rows:
            raise UserError(f"model.trunk.vocab_size: {rows} rows cannot embed the tokenizer's [MASK] (id "
                            f"{self.mask_id}); expected model.trunk.vocab_size ≥ {self.mask_id + 1} for ssl.method mlm")
        special = torch.tensor(sorted(specials.values()))
        regular = torch.arange(rows)
        # random replacements: ordinary tokens of the tokenizer, never a special one or an embedding row it never gives
        self.register_buffer("special", special, persistent=False)
        tokens = vocabulary_size(views.tokenizer)
        self.register_buffer("regular", regular[~torch.isin(regular, special) & (regular < tokens)], persistent=False)
        # the per-token outputs are as wide as the pooled ones (out_dim) in every sequence trunk
        self.transform = nn.Sequential(nn.Linear(trunk.out_dim, embedding.embedding_dim), nn.GELU(),
                                       nn.LayerNorm(embedding.embedding_dim))
        # tied: the logits read the trunk's embedding at call time (never a second reference that the optimizer
        # would see twice); untied: a decoder of its own
        self.decoder = None if options.tie else nn.Linear(embedding.embedding_dim, rows, bias=False)
        self.bias = nn.Parameter(torch.zeros(rows))
        self.generator = stream(views.seed, Purpose.MLM_MASK, 0)

    def on_epoch_start(self, trainer) -> None:
        self.generator = stream(self.views.seed, Purpose.MLM_MASK, trainer.epoch)  # a resumed run replays the epoch

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ids = batch["x"]  # (B, T) token ids
        shown, chosen = corrupt(ids, self.special, self.regular, self.mask_id, self.options, self.generator)
        with self.views.cast(ids):
            features, _ = model.trunk.token_features(shown)  # (B, T, D)
            hidden = self.transform(features[chosen])  # (M, E): the chosen positions only
            if self.decoder is None:
                # tied: scaled by E^-1/2 as T5 does (Raffel et al. 2020), since the trunk's embedding rows have unit
                # variance (BERT's have 0.02 std): unscaled logits start with a std of √E and a loss far above ln V
                weight, hidden = model.trunk.token_embedding.weight, hidden * hidden.shape[-1] ** -0.5
            else:
                weight = self.decoder.weight
            logits = F.linear(hidden, weight.to(hidden.dtype), self.bias.to(hidden.dtype))  # (M, rows)
        # over the chosen tokens of every rank's share (a batch may choose nothing: a zero loss, not an empty mean's NaN)
        loss = mean_over_ranks(F.cross_entropy(logits.float(), ids[chosen], reduction="sum"), chosen.sum())
        return {self.name: loss}


def _text_embedding(trunk: nn.Module, views: ViewMaker) -> nn.Embedding:
    """The trunk's token embedding; a trunk or data without token ids is refused with one line."""
    embedding = getattr(trunk, "token_embedding", None)
    if embedding is None or not hasattr(trunk, "token_features") or views.tokenizer is None:
        raise UserError("ssl.method: mlm predicts masked tokens: it needs texts (data.source: text) and a sequence "
                        f"trunk (model.trunk.name: transformer, gru or lstm), got {type(trunk).__name__} on "
                        f"inputs of shape {tuple(views.input_shape)}")
    return embedding
