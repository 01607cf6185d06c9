"""What a Dataset learned about its inputs and tasks on the train split (`DataInfo`), kept as data.json.

Typed, so readers ask `info.input_shape` or `info.is_image` instead of string keys; `to_dict`/`from_dict` keep the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydranet.errors import UserError
from hydranet.kinds import TaskInfo

IMAGE, TABLE, TEXT, SEQUENCE = "image", "table", "text", "sequence"


@dataclass
class DataInfo:
    """Everything `predict` needs to turn new inputs into model inputs, and what each task predicts.

    Images are stored as read (usually uint8) and become model inputs as `(x / scale − mean) / std` per
    channel (mean 0 and std 1 when `data.normalize` is off); `size` is (height, width). Tables are encoded
    by the fitted `TableEncoder` whose JSON state is `encoder`, reading the raw columns `features`.
    Texts are the columns `features` joined by `separator`, tokenized by the Hugging Face tokenizer whose JSON is
    `tokenizer` into `max_length` ids (data/text.py). Numeric sequences are standardized per feature (`mean`, `std`)
    and carry a validity channel last (data/sequences.py).
    """

    kind: str  # IMAGE, TABLE, TEXT or SEQUENCE
    input_shape: tuple[int, ...]  # one example as the model sees it: (C, H, W), (F,), (T,) token ids or (T, F + 1)
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    scale: float = 1.0
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    channels: int | None = None
    size: tuple[int, int] | None = None
    encoder: dict[str, Any] | None = None
    features: list[str] = field(default_factory=list)
    tokenizer: str | None = None
    separator: str = " "
    max_length: int | None = None

    @property
    def is_image(self) -> bool:
        return self.kind == IMAGE

    @property
    def is_sequential(self) -> bool:
        """Texts (token ids) and numeric sequences: inputs of a variable length with a mask."""
        return self.kind == TEXT or self.kind == SEQUENCE

    def require_image_or_table(self, command: str, *more: str) -> None:
        """Refuse a run of another kind than images, tables and `more` in a command that only knows those (one
        line, before any work), instead of failing deep inside it."""
        accepted = (IMAGE, TABLE, *more)
        if self.kind not in accepted:
            raise UserError(f"RUN: {command} does not handle {self.kind} runs yet ({', '.join(accepted)} runs only; "
                            f"see docs/sequence.md)")

    def to_dict(self) -> dict[str, Any]:
        """data.json's layout (keys in the order runs have always written them)."""
        out: dict[str, Any] = {"tasks": {t: i.to_dict() for t, i in self.tasks.items()}, "kind": self.kind}
        if self.is_image:
            out.update(scale=self.scale, mean=list(self.mean), std=list(self.std), channels=self.channels,
                       size=list(self.size) if self.size is not None else None)
        elif self.kind == TEXT:
            out.update(features=list(self.features), separator=self.separator, max_length=self.max_length,
                       tokenizer=self.tokenizer)
        elif self.kind == SEQUENCE:
            out.update(mean=list(self.mean), std=list(self.std))
        else:
            out.update(encoder=self.encoder, features=list(self.features))
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataInfo:
        """A data.json (or a Dataset.info dict of older code); absent fields keep their defaults."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["tasks"] = {t: TaskInfo.from_dict(i) for t, i in data.get("tasks", {}).items()}
        known["input_shape"] = tuple(data["input_shape"])
        if known.get("size") is not None:
            known["size"] = tuple(known["size"])
        return cls(**known)
