"""What the data builder learned about one task on the train split: `TaskInfo`.

It lives with the kinds because each kind's `encode` makes one and its losses, decoding and metrics read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TaskInfo:
    """What the data builder learned about a task on the train split (JSON-able, saved with the run).

    `outputs`: classes (classification), labels (multilabel) or 1 (binary, regression). `classes`: class or
    label names; for binary [negative, positive]. `mean`/`std` standardize regression targets.
    """

    kind: str
    outputs: int
    classes: list[str] | None = None
    mean: float = 0.0
    std: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskInfo":
        return cls(**data)
