"""Texts → token ids: a Hugging Face `tokenizers` tokenizer trained on the train split (BPE or WordPiece) or
byte-level (nothing trained), kept as its JSON in data.json so `predict` and a server tokenize identically.

Every text becomes `max_length` int64 ids: `[CLS]` first, cut or padded with `[PAD]` (id 0). The pad id is what
marks padding: a sequence trunk derives its attention mask from `ids != PAD_ID`, so `x` stays one tensor and every
consumer of batches keeps working. `[MASK]` is reserved for masked-token pretraining (ssl/methods/mlm.py): id 3 of a
trained vocabulary, the id after the 256 bytes of the byte tokenizer (so a byte trunk of 259 rows still fits texts);
tokenizers saved in runs made before it have none, so every reader asks the tokenizer for its specials by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from hydranet.config import TextConfig
from hydranet.errors import UserError
from hydranet.rundir import RunDir

PAD, CLS, UNK, MASK = "[PAD]", "[CLS]", "[UNK]", "[MASK]"
SPECIALS = [PAD, CLS, UNK]  # ids 0, 1, 2 in every vocabulary
TRAINED_SPECIALS = [*SPECIALS, MASK]  # a trained vocabulary's first ids; the byte tokenizer appends [MASK]
PAD_ID, CLS_ID, UNK_ID = 0, 1, 2
BYTES = 256
WORD_END = "</w>"


def train_tokenizer(cfg: TextConfig, texts: Iterable[str]) -> str:
    """The tokenizer `cfg` asks for as its JSON; bpe and wordpiece learn their vocabulary from `texts` (the
    train split's only, so val and test words stay unseen as they would be in use)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if cfg.tokenizer == "byte":
        # a fixed vocabulary: the specials, then one token per byte value (ByteLevel maps bytes to visible chars)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        vocab = {token: i for i, token in enumerate([*SPECIALS, *sorted(alphabet), MASK])}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer.to_str()
    if cfg.tokenizer == "bpe":
        # the end-of-word suffix marks where words end, so decoding puts the spaces back
        tokenizer = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix=WORD_END))
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=TRAINED_SPECIALS, show_progress=False,
                                      end_of_word_suffix=WORD_END)
        tokenizer.decoder = decoders.BPEDecoder(suffix=WORD_END)
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, special_tokens=TRAINED_SPECIALS,
                                            show_progress=False)
        tokenizer.decoder = decoders.WordPiece()
    steps = [normalizers.NFKC(), *([normalizers.Lowercase()] if cfg.lowercase else [])]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return tokenizer.to_str()


def run_tokenizer(path: str | Path, field: str) -> str:
    """The tokenizer JSON of the text run at `path` (read as every run is read); `field` names the setting."""
    info = RunDir.open(path).read_data_info()
    if info.get("tokenizer") is None:
        raise UserError(f"{field}: {path} is a {info.get('kind', 'table')} run, which has no tokenizer (expected a "
                        f"text run's directory)")
    return info["tokenizer"]


def load_tokenizer(saved: str):
    """The tokenizer of a JSON string that `train_tokenizer` returned."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(saved)


def vocabulary_size(saved: str) -> int:
    """How many ids the tokenizer gives (a trunk's embedding needs at least this many rows)."""
    return load_tokenizer(saved).get_vocab_size(with_added_tokens=True)


def special_ids(saved: str) -> dict[str, int]:
    """The special tokens this tokenizer has, by name → id ([MASK] is absent from tokenizers saved before it)."""
    tokenizer = load_tokenizer(saved)
    found = {name: tokenizer.token_to_id(name) for name in TRAINED_SPECIALS}
    return {name: i for name, i in found.items() if i is not None}


def encode_texts(saved: str, texts: list[str], max_length: int) -> torch.Tensor:
    """(N, max_length) int64 ids: [CLS], the text's tokens cut to fit, [PAD] after; batched in Rust."""
    tokenizer = load_tokenizer(saved)
    ids = np.full((len(texts), max_length), PAD_ID, dtype=np.int64)
    ids[:, 0] = CLS_ID
    for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        tokens = encoding.ids[: max_length - 1]
        ids[row, 1:1 + len(tokens)] = tokens
    return torch.from_numpy(ids)


def decode_ids(saved: str, ids: torch.Tensor) -> list[str]:
    """Texts back from (N, T) ids, specials dropped: what a model saw, for reading and round-trip checks."""
    specials = set(special_ids(saved).values())
    return load_tokenizer(saved).decode_batch([[i for i in row if i not in specials] for row in ids.tolist()])


def joined_texts(columns: dict[str, np.ndarray], names: list[str], separator: str, where: str) -> list[str]:
    """One text per row: the columns `names` joined by `separator`; a row whose text is empty (every column
    missing or blank) is refused with its row number: it would train on [CLS] alone."""
    parts = [[_cell(v) for v in columns[name]] for name in names]
    texts = [separator.join(p for p in row if p) for row in zip(*parts)]
    empty = next((i for i, text in enumerate(texts) if not text.strip()), None)
    if empty is not None:
        raise UserError(f"{where}: row {empty + 1} has no text in column(s) {', '.join(map(repr, names))}; "
                        f"expected a non-empty text in every row")
    return texts


def _cell(value: object) -> str:
    """A cell as text; missing (None, NaN) as ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()
