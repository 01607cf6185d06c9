"""Token attributions of text runs: one task's score as a function of the trunk's token embeddings, so the image
and table methods (saliency, integrated gradients) attribute to each token's embedding vector, and the written
results (tokens.csv, tokens.html).

Ids are integers and have no gradient; the embedding output is the first continuous quantity, as in Captum's
LayerIntegratedGradients. The model input given to a method is (N, T, E + 1): each position's embedding and a last
channel that is 1 on real positions, which keeps the padding mask without the ids. Integrated Gradients' baseline
keeps [CLS] and [PAD] as they are and sets every token's embedding to zero, so the attributions of the tokens add
up to f(x) − f(baseline), the completeness checked as for images and tables.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from hydranet.data import DataInfo
from hydranet.data.text import CLS_ID, PAD_ID, WORD_END, load_tokenizer
from hydranet.errors import UserError
from hydranet.explain.methods import check_per_element
from hydranet.explain.target import TaskScores
from hydranet.files import write_csv, write_text



class EmbeddedScores(nn.Module):
    """`scores` (one task's head) of (N, T, E + 1) embeddings and realness instead of (N, T) ids: the model runs
    on stand-in ids (1 on real positions, [PAD] after, so the trunk derives the same mask) with the token
    embedding's output replaced by the given vectors."""

    def __init__(self, scores: TaskScores, embedding: nn.Embedding):
        super().__init__()
        self.scores, self.embedding = scores, embedding

    def forward(self, inputs: Tensor) -> Tensor:
        vectors, real = inputs[..., :-1], inputs[..., -1] > 0.5
        handle = self.embedding.register_forward_hook(lambda module, args, out: vectors.to(out.dtype))
        try:
            return self.scores(real.long())  # stand-in ids: CLS_ID (1) on real positions, PAD_ID (0) after
        finally:
            handle.remove()

    def rows(self, part: slice) -> "EmbeddedScores":
        return self


def embedded(scores: TaskScores, model: nn.Module, ids: Tensor) -> tuple[EmbeddedScores, Tensor]:
    """The scores of embeddings and the (N, T, E + 1) embeddings of `ids` with their realness channel."""
    embedding = getattr(getattr(model, "trunk", None), "token_embedding", None)
    if embedding is None:
        raise UserError("RUN: explaining a text run needs a trunk with a token embedding (transformer, gru, lstm)")
    with torch.no_grad():
        vectors = embedding(ids.to(embedding.weight.device)).float()
    real = (ids != PAD_ID).to(vectors)[..., None]
    return EmbeddedScores(scores, embedding), torch.cat([vectors, real], dim=-1)


def baseline(inputs: Tensor, ids: Tensor) -> Tensor:
    """The inputs with every token's embedding set to zero; [CLS] and padding kept (they get no attribution)."""
    token = ((ids != PAD_ID) & (ids != CLS_ID)).to(inputs.device)[..., None]
    vectors = inputs[..., :-1] * ~token
    return torch.cat([vectors, inputs[..., -1:]], dim=-1)


def check_method(method: str, baseline_name: str | None) -> None:
    check_per_element(method, baseline_name, runs="text", attributed="attributions on the token embeddings",
                      kind="text", zeros="every token's embedding zero, [CLS] and [PAD] kept")


def token_table(info: DataInfo, ids: Tensor, values: Tensor, inputs: list[str], targets: list[str]) -> pd.DataFrame:
    """One row per token of each example ([CLS] and padding left out): input, target, position, token, and its
    attribution (the sum over its embedding vector)."""
    tokenizer = load_tokenizer(info.tokenizer)
    per_token = values[..., :-1].sum(-1)  # (N, T)
    rows = []
    for i, (row, scores) in enumerate(zip(ids.tolist(), per_token.tolist())):
        for position, (token, score) in enumerate(zip(row, scores)):
            if token not in (PAD_ID, CLS_ID):
                rows.append({"input": inputs[i], "target": targets[i], "position": position,
                             "token": shown(tokenizer.id_to_token(token)), "attribution": score})
    return pd.DataFrame(rows, columns=["input", "target", "position", "token", "attribution"])


def shown(token: str | None) -> str:
    """A token as read: BPE's end-of-word mark dropped."""
    return (token or "?").removesuffix(WORD_END)


def write_tokens(folder: Path, table: pd.DataFrame, titles: list[str], method: str) -> None:
    """tokens.csv, and tokens.html: each example's tokens shaded by attribution (red raises the score, blue
    lowers it; scaled per example), a self-contained page."""
    write_csv(folder / "tokens.csv", table)
    sections = []
    for (name, tokens), title in zip(table.groupby("input", sort=False), titles):
        sections.append(f"<h2>{html.escape(str(name))}</h2><p>{html.escape(title)}</p>"
                        f"<p class=t>{token_spans(tokens)}</p>")
    page = (f"<!doctype html><meta charset=utf-8><title>token attributions ({method})</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}.t span{padding:2px 3px;"
            "border-radius:3px;line-height:2}</style>"
            f"<h1>Token attributions: {html.escape(method)}</h1>{''.join(sections)}")
    write_text(folder / "tokens.html", page)


def token_spans(tokens: pd.DataFrame) -> str:
    """One example's rows of a token table as HTML: each token shaded by its attribution, scaled by the example's
    largest |attribution| (red raises the score, blue lowers it), the share on hover (tokens.html, the report)."""
    peak = max(float(tokens["attribution"].abs().max()), 1e-12)
    return " ".join(_span(str(token), score / peak) for token, score in zip(tokens["token"], tokens["attribution"]))


def _span(token: str, share: float) -> str:
    colour = "220,50,47" if share >= 0 else "38,139,210"
    return (f'<span style="background:rgba({colour},{abs(share):.3f})" title="{share:+.3f}">'
            f"{html.escape(token)}</span>")
