"""Episodes: N-way K-shot tasks drawn from a pool of classes, or sinusoid regression tasks, whole meta-batches at
once as tensor ops (no per-example Python), each draw from a named random stream so a resumed run redraws them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Finn et al. 2017, section 5.1: amplitude, phase and input ranges of the sinusoid tasks.
AMPLITUDE, PHASE, X_RANGE = (0.1, 5.0), (0.0, math.pi), (-5.0, 5.0)


@dataclass
class Episodes:
    """T tasks: support (x, y) to adapt on and query (x, y) to score; `classes` are the pool's class ids (T, N)
    behind the episode labels 0..N-1 (empty for regression)."""

    support_x: Tensor  # (T, S, *shape)
    support_y: Tensor  # (T, S) class labels 0..N-1, or (T, S, 1) regression targets
    query_x: Tensor  # (T, Q, *shape)
    query_y: Tensor  # (T, Q) or (T, Q, 1)
    classes: Tensor  # (T, N) pool class ids, or (T, 0)

    @property
    def tasks(self) -> int:
        return self.support_x.shape[0]

    def to(self, device: torch.device) -> Episodes:
        return Episodes(*(t.to(device) for t in (self.support_x, self.support_y, self.query_x, self.query_y,
                                                 self.classes)))

    def slice(self, start: int, stop: int) -> Episodes:
        """Tasks start..stop-1 (evaluation scores many episodes in meta-batch sized chunks)."""
        return Episodes(*(t[start:stop] for t in (self.support_x, self.support_y, self.query_x, self.query_y,
                                                  self.classes)))


@dataclass
class ClassPool:
    """Classes with the same number of examples each: `images` is (C, M, *shape); `names` says what each class is
    (an Omniglot `alphabet/character` and its rotation), so tests and users can see which classes a split holds."""

    images: Tensor
    names: list[str]

    def __post_init__(self) -> None:
        if self.images.shape[0] != len(self.names):
            raise ValueError(f"{self.images.shape[0]} classes of images but {len(self.names)} names")

    @property
    def classes(self) -> int:
        return self.images.shape[0]

    @property
    def per_class(self) -> int:
        return self.images.shape[1]


def with_rotations(pool: ClassPool) -> ClassPool:
    """Every class rotated by 0°, 90°, 180° and 270° as four classes (Santoro et al. 2016; ProtoNets' and MAML's
    Omniglot setup). Rotate after the meta-train/test split, so no rotated test character is trained on."""
    images = torch.cat([pool.images.rot90(k, dims=(-2, -1)) for k in range(4)])
    names = [f"{name}@{90 * k}" for k in range(4) for name in pool.names]
    return ClassPool(images, names)


def sample_classes(pool: ClassPool, tasks: int, ways: int, shots: int, queries: int, generator: torch.Generator) -> Episodes:
    """`tasks` episodes of `ways` distinct classes with `shots` support and `queries` query examples each, all
    distinct: a random permutation per task of the classes, and per class of its examples (argsort of uniforms)."""
    need = shots + queries
    if ways > pool.classes:
        raise ValueError(f"{ways}-way episodes need {ways} classes; the pool has {pool.classes}")
    if need > pool.per_class:
        raise ValueError(f"{shots} shots + {queries} queries need {need} examples per class; the pool has {pool.per_class}")
    classes = torch.rand(tasks, pool.classes, generator=generator).argsort(1)[:, :ways]  # (T, N)
    picks = torch.rand(tasks, ways, pool.per_class, generator=generator).argsort(2)[..., :need]  # (T, N, K+Q)
    x = pool.images[classes[..., None], picks]  # (T, N, K+Q, *shape)
    labels = torch.arange(ways).view(1, ways, 1).expand(tasks, ways, need)
    return Episodes(x[:, :, :shots].flatten(1, 2), labels[:, :, :shots].flatten(1, 2),
                    x[:, :, shots:].flatten(1, 2), labels[:, :, shots:].flatten(1, 2), classes)


def sample_sinusoids(tasks: int, shots: int, queries: int, generator: torch.Generator) -> Episodes:
    """Finn et al.'s regression tasks y = A·sin(x − φ): `shots` support and `queries` query points per task."""
    def uniform(low_high: tuple[float, float], *shape: int) -> Tensor:
        low, high = low_high
        return low + (high - low) * torch.rand(*shape, generator=generator)

    amplitude, phase = uniform(AMPLITUDE, tasks, 1, 1), uniform(PHASE, tasks, 1, 1)
    x = uniform(X_RANGE, tasks, shots + queries, 1)  # (T, K+Q, 1)
    y = amplitude * torch.sin(x - phase)
    return Episodes(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], torch.zeros(tasks, 0, dtype=torch.long))
