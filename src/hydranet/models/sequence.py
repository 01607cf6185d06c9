"""Sequence trunks registered by name: transformer (pre-LN encoder, models/attention.py), gru and lstm.

Each reads either token ids (input shape (T,), int64, padding = id 0) or numeric sequences (input shape
(T, F + 1), the last channel 1 on real steps and 0 on padding) and derives the padding mask from the input
itself, so `x` stays one tensor. Padding never changes the features: attention skips padded keys, recurrent
layers run on packed sequences, and pooling (mean, [CLS], last state) reads real positions only.

Besides `forward` (pooled features), every sequence trunk gives `token_features(x)`, the per-position outputs before
pooling, and `token_embedding`, its input embedding of token ids: what masked-token pretraining predicts from and
ties its output layer to.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from hydranet.config import Options
from hydranet.data.text import PAD_ID, SPECIALS, BYTES
from hydranet.errors import UserError
from hydranet.models.attention import Encoder
from hydranet.registry import register


class SequenceOptions(Options):
    """What both sequence trunk families take."""

    vocab_size: int = Field(8192, ge=len(SPECIALS) + BYTES, description="texts: rows of the token embedding (at least data.text.vocab_size; 259 suffice for the byte tokenizer)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the embeddings and inside the layers")


class TransformerOptions(SequenceOptions):
    """Options of `model.trunk: {name: transformer, …}`."""

    width: int = Field(128, ge=1, description="model width (embedding size)")
    depth: int = Field(2, ge=1, description="encoder blocks")
    heads: int = Field(4, ge=1, description="attention heads (width must be a multiple)")
    mlp_ratio: float = Field(4.0, gt=0, description="hidden width of each block's MLP as a multiple of width")
    positions: Literal["learned", "sinusoidal"] = Field("learned", description="learned | sinusoidal (Vaswani et al. 2017) position embeddings")
    pooling: Literal["cls", "mean"] = Field("mean", description="cls: a learned [CLS] vector prepended, its output | mean: mean over real positions")


class RecurrentOptions(SequenceOptions):
    """Options of `model.trunk: {name: gru | lstm, …}`."""

    width: int = Field(128, ge=1, description="hidden units per direction")
    embedding: int = Field(128, ge=1, description="texts: token embedding size")
    layers: int = Field(1, ge=1, description="stacked recurrent layers")
    bidirectional: bool = Field(True, description="also read each sequence backwards (features: both directions)")
    pooling: Literal["last", "mean"] = Field("last", description="last: final hidden state of each direction | mean: mean of the outputs over real steps")


def check_vocabulary(config) -> None:
    """A text run's tokenizer may give ids up to `data.text.vocab_size`: the embedding needs as many rows (checked
    before training, not as an index error in the first step)."""
    text, trunk = config.data.text, config.model.trunk.options
    if config.data.source == "text" and text.tokenizer != "byte" and text.vocab_size > trunk.vocab_size:
        raise UserError(f"model.trunk.vocab_size: {trunk.vocab_size} rows cannot embed data.text.vocab_size "
                        f"{text.vocab_size} tokens; expected model.trunk.vocab_size ≥ {text.vocab_size}")


class SequenceInput(nn.Module):
    """(B, T) token ids or (B, T, F + 1) numbers → (B, T, width) vectors and the (B, T) bool mask of real steps."""

    def __init__(self, input_shape: tuple[int, ...], width: int, vocab_size: int, name: str):
        super().__init__()
        self.tokens = len(input_shape) == 1
        if len(input_shape) not in (1, 2) or (not self.tokens and input_shape[1] < 2):
            raise UserError(f"model.trunk.name: {name} needs token ids (T,) or numeric sequences (T, F + 1), got input "
                            f"shape {tuple(input_shape)}; use data.source text or sequence")
        self.embed = nn.Embedding(vocab_size, width) if self.tokens else nn.Linear(input_shape[1] - 1, width)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.tokens:
            return self.embed(x), x != PAD_ID
        return self.embed(x[..., :-1]), x[..., -1] > 0.5


def sinusoids(steps: int, width: int) -> Tensor:
    """(steps, width) fixed position codes: sin on even, cos on odd dimensions, wavelengths 2π … 10000·2π."""
    position = torch.arange(steps, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    codes = torch.zeros(steps, width)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)[:, : width // 2]
    return codes


def masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    """(B, T, D) values averaged over the real steps of `keep` (B, T) → (B, D)."""
    weights = keep.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


class TokenTrunk(nn.Module):
    """What both sequence trunk families give besides pooled features: `token_embedding`, and `token_features(x)`
    → (B, T, D) outputs per input position before pooling and the (B, T) bool mask of real positions."""

    inputs: SequenceInput

    @property
    def token_embedding(self) -> nn.Embedding | None:
        """The embedding of token ids (None for numeric sequences, which have no vocabulary)."""
        return self.inputs.embed if self.inputs.tokens else None


class Transformer(TokenTrunk):
    """Input embedding + positions → pre-LN encoder blocks → [CLS] or masked-mean pooling."""

    def __init__(self, cfg: TransformerOptions, input_shape: tuple[int, ...]):
        super().__init__()
        if cfg.width % cfg.heads:
            raise UserError(f"model.trunk.width: {cfg.width} is not a multiple of model.trunk.heads {cfg.heads}")
        self.inputs = SequenceInput(input_shape, cfg.width, cfg.vocab_size, "transformer")
        self.token_ids = self.inputs.tokens  # reads token ids (texts), which mmoe and cgc gates cannot read
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.pooling == "cls" else None
        steps = input_shape[0] + (self.cls is not None)
        if cfg.positions == "learned":
            self.positions = nn.Parameter(torch.randn(1, steps, cfg.width) * 0.02)
        else:
            self.register_buffer("positions", sinusoids(steps, cfg.width)[None], persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout)
        self.out_dim = cfg.width

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T', W) encoder outputs and their (B, T') mask; T' = T + 1 with the learned [CLS] vector first."""
        h, keep = self.inputs(x)  # (B, T, W), (B, T)
        if self.cls is not None:
            # h.shape[0], not len(h): len() gives a plain int, which would fix an exported graph's batch size
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1).to(h.dtype), h], dim=1)
            keep = torch.cat([keep.new_ones(keep.shape[0], 1), keep], dim=1)
        return self.encoder(self.drop(h + self.positions[:, : h.shape[1]]), keep), keep

    def token_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, keep = self.encode(x)
        return (h[:, 1:], keep[:, 1:]) if self.cls is not None else (h, keep)  # the input's positions only

    def forward(self, x: Tensor) -> Tensor:
        h, keep = self.encode(x)
        return h[:, 0] if self.cls is not None else masked_mean(h, keep)  # (B, W)


class Recurrent(TokenTrunk):
    """Input embedding → GRU or LSTM layers on packed sequences → last hidden state or masked mean.

    Packing (not a mask after the fact) keeps padding out of the recurrence itself: a backward direction would
    otherwise start from the padding. Padding must trail the real steps (as the text and sequence sources give it).
    """

    def __init__(self, cfg: RecurrentOptions, input_shape: tuple[int, ...], cell: type[nn.GRU] | type[nn.LSTM]):
        super().__init__()
        name = cell.__name__.lower()
        size = cfg.embedding if len(input_shape) == 1 else cfg.width
        self.inputs = SequenceInput(input_shape, size, cfg.vocab_size, name)
        self.token_ids = self.inputs.tokens  # reads token ids (texts), which mmoe and cgc gates cannot read
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = cell(size, cfg.width, cfg.layers, batch_first=True, bidirectional=cfg.bidirectional,
                        dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.pooling, self.directions = cfg.pooling, 2 if cfg.bidirectional else 1
        self.out_dim = cfg.width * self.directions

    def run(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, D·dirs) outputs (0 on padding), (B, D·dirs) the top layer's final state of each direction, and
        the (B, T) mask of real steps.

        Packing is not traceable (its batch sizes per step are data), so while the model is exported
        (`torch.compiler.is_exporting()`) `unpacked` computes the same numbers with ops ONNX knows."""
        h, keep = self.inputs(x)  # (B, T, E), (B, T)
        if torch.compiler.is_exporting():
            return (*unpacked(self.rnn, h, keep), keep)
        lengths = keep.sum(dim=1).clamp_min(1).cpu()  # pack_padded_sequence wants them on the CPU
        packed = pack_padded_sequence(self.drop(h), lengths, batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)
        padded, _ = pad_packed_sequence(outputs, batch_first=True, total_length=keep.shape[1])
        last = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c); (layers·dirs, B, D)
        return padded, torch.cat(list(last[-self.directions:]), dim=-1), keep

    def token_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outputs, _, keep = self.run(x)
        return outputs, keep

    def forward(self, x: Tensor) -> Tensor:
        outputs, last, keep = self.run(x)
        return masked_mean(outputs, keep) if self.pooling == "mean" else last


def unpacked(rnn: nn.GRU | nn.LSTM, h: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """What `rnn` gives on the packed sequences of `h`, in eval mode, without packing: `Recurrent.run`'s outputs and
    last state.

    Padding trails the real steps, so a forward direction run over the padded input sees the real steps first and
    its output at step `length − 1` is its final state. A backward direction runs forward over each sequence
    reversed within its length (padding still last), and its outputs are put back in place by the same reversal.
    Each layer and direction is one single-layer call of the same aten op nn.GRU / nn.LSTM use, on their weights."""
    lengths = keep.sum(dim=1)  # (B,)
    steps = torch.arange(h.shape[1], device=h.device)[None]  # (1, T)
    reverse = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (B, T), an involution
    last = (lengths - 1).clamp_min(0)[:, None]  # (B, 1): the step of a forward direction's final state
    directions = 2 if rnn.bidirectional else 1
    for layer in range(rnn.num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            weights = [getattr(rnn, f"{name}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            seen = _gather_steps(h, reverse) if direction else h
            out = _one_layer(rnn, seen, weights)
            outputs.append(_gather_steps(out, reverse) if direction else out)
        h = torch.cat(outputs, dim=-1)  # (B, T, D·dirs), the next layer's input
    finals = [_gather_steps(outputs[0], last)[:, 0]]  # (B, D)
    if directions == 2:
        finals.append(outputs[1][:, 0])  # the backward direction ends at step 0
    return h * keep[..., None].to(h.dtype), torch.cat(finals, dim=-1)


def _gather_steps(values: Tensor, index: Tensor) -> Tensor:
    """values[b, index[b, t]] for (B, T, D) values and (B, T') step indices."""
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))


def _one_layer(rnn: nn.GRU | nn.LSTM, h: Tensor, weights: list[Tensor]) -> Tensor:
    """(B, T, D) outputs of one layer and direction of `rnn` with `weights`, from a zero state."""
    zeros = h.new_zeros(1, h.shape[0], rnn.hidden_size)
    if isinstance(rnn, nn.LSTM):
        return torch.ops.aten.lstm.input(h, [zeros, zeros], weights, True, 1, 0.0, False, False, True)[0]
    return torch.ops.aten.gru.input(h, zeros, weights, True, 1, 0.0, False, False, True)[0]


@register("trunk", "transformer", options=TransformerOptions)
def transformer(cfg: TransformerOptions, input_shape: tuple[int, ...]) -> Transformer:
    return Transformer(cfg, input_shape)


@register("trunk", "gru", options=RecurrentOptions)
def gru(cfg: RecurrentOptions, input_shape: tuple[int, ...]) -> Recurrent:
    return Recurrent(cfg, input_shape, nn.GRU)


@register("trunk", "lstm", options=RecurrentOptions)
def lstm(cfg: RecurrentOptions, input_shape: tuple[int, ...]) -> Recurrent:
    return Recurrent(cfg, input_shape, nn.LSTM)


for _factory in (transformer, gru, lstm):
    _factory.check_config = check_vocabulary  # type: ignore[attr-defined]  (called by config validation)
    # the input kinds (a source's `inputs`) the trunk reads: token ids (T,) of texts, numeric sequences (T, F + 1);
    # a trunk that declares none reads images and/or tables
    _factory.inputs = ("text", "sequence")  # type: ignore[attr-defined]
