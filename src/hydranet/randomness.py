"""Named random streams: every draw comes from a generator seeded by (seed, purpose, epoch), the purposes named
in one table so two features never share draws by accident, and a resumed run replays the uninterrupted one.
"""

from __future__ import annotations

import zlib
from enum import IntEnum

import numpy as np
import torch


class Purpose(IntEnum):
    """What a stream is for; each value is used once (tests/test_randomness.py)."""

    INIT = 0  # initial weights of models and probe heads (torch's global generator)
    SHUFFLE = 1  # order of the train examples, per epoch
    AUGMENT = 2  # crops, flips and cutout of the train batches, per epoch
    DROPOUT = 3  # dropout masks (torch's global generator), per epoch
    ATTACK_START = 4  # adversarial training's random starts, per epoch
    GUARD_START = 5  # the robustness guard's PGD random starts, per epoch
    SSL_VIEWS = 6  # self-supervised views and corruptions, per epoch (4, ATTACK_START's, until this table)
    SPLIT = 7  # which examples are train, val and test
    LIMIT = 8  # the examples `data.limit` keeps
    LABELS = 9  # the labeled train examples `data.labels_fraction` keeps
    PAIRS = 10  # multidigits: which two digits each image overlays, and where
    ROWS = 11  # `random_rows`: the examples an evaluation looks at (attack --limit, the guard, the kNN monitor)
    EVAL_ATTACK_START = 12  # random starts of `hydranet attack` (seeded by its own seed)
    ATTACK_TARGETS = 13  # the random target class per example of a targeted attack
    PROBE_HOLDOUT = 14  # the held-out fifth of train a linear probe without val chooses its L2 strength on
    RLW = 15  # random loss weights, per step, from one checkpointed generator
    PCGRAD = 16  # PCGrad's task order, per step, from one checkpointed generator
    TUNE_SAMPLER = 17  # the Optuna sampler of one worker's session
    MONITOR = 18  # the reference rows `hydranet monitor` draws from a run's train split
    EXPLAIN = 19  # explanations: examples drawn from a split, KernelSHAP/LIME coalitions and perturbations
    AUDIT = 20  # fairness audit: bootstrap resamples of the confidence intervals
    SERVE_WINDOW = 21  # the server's reservoir sample of recent inputs for drift
    EPISODES = 22  # meta-learning: the tasks (classes, examples, sinusoids) of each meta-training iteration
    META_EVAL = 23  # meta-learning: the episodes a meta-validation or `hydranet meta eval` scores
    THRESHOLD = 24  # fairness thresholds: the key of each row's hashed draw between a group's two thresholds
    BASELINE = 25  # `hydranet baseline`: the boosted trees' and linear models' own random states
    GRADVAC = 26  # GradVac's task order, per step, from one checkpointed generator
    GRADDROP = 27  # GradDrop's per-coordinate uniform draws, per step, from one checkpointed generator
    SCENES = 28  # the `scenes` source: every image's background, shapes, their depths and places
    RANK_DROPOUT = 29  # dropout masks of one process of a distributed run, per (epoch, rank)
    MLM_MASK = 34  # masked-token pretraining: which tokens are chosen and what replaces them, per epoch
    WAVES = 36  # the `waves` source: every sequence's pattern, frequency, phase, amplitude, length and noise


# What a stream depends on besides the seed; every other purpose has one stream per run.
COUNTERS: dict[Purpose, tuple[str, ...]] = {
    **dict.fromkeys((Purpose.SHUFFLE, Purpose.AUGMENT, Purpose.DROPOUT, Purpose.ATTACK_START, Purpose.GUARD_START,
                     Purpose.SSL_VIEWS, Purpose.MLM_MASK), ("epoch",)),
    Purpose.TUNE_SAMPLER: ("worker", "trials"),
    Purpose.EPISODES: ("iteration",),
    Purpose.RANK_DROPOUT: ("epoch", "rank"),
}
# The number a stream mixes into its seed is its value, except where runs made before this table mixed
# another: kept, so an existing run directory rebuilds the same split and a resumed run the same draws.
# No word but INIT's is 0: numpy's SeedSequence pads short entropy with zeros, so [s, 1] and [s, 1, 0] are one stream.
_LEGACY_WORDS = {Purpose.SPLIT: 1, Purpose.LIMIT: 2, Purpose.LABELS: 3, Purpose.PAIRS: 7,
                 Purpose.RLW: zlib.crc32(b"rlw"), Purpose.PCGRAD: zlib.crc32(b"pcgrad")}


def _entropy(seed: int, purpose: Purpose, counters: tuple[int, ...]) -> list[int]:
    """[seed, *counters, word]: streams of different purposes differ in their word or in their length."""
    expected = COUNTERS.get(purpose, ())
    if len(counters) != len(expected):
        raise ValueError(f"{purpose.name} stream: expected counters {expected or '()'}, got {counters}")
    return [seed, *counters, _LEGACY_WORDS.get(purpose, int(purpose))]


# Streams that were seeded with the bare seed before this table, each its own generator: kept, so a seed keeps
# its initial weights and the published evaluations (attack --limit rows, starts and targets) reproduce.
_BARE_SEED = frozenset({Purpose.INIT, Purpose.ROWS, Purpose.EVAL_ATTACK_START, Purpose.ATTACK_TARGETS,
                        Purpose.PROBE_HOLDOUT})


def purpose_seed(seed: int, purpose: Purpose, *counters: int) -> int:
    """A 32-bit seed for (seed, purpose, counters); the bare seed for the few purposes listed above."""
    entropy = _entropy(seed, purpose, counters)
    return seed if purpose in _BARE_SEED else int(np.random.SeedSequence(entropy).generate_state(1)[0])


def stream(seed: int, purpose: Purpose, *counters: int, device: torch.device | str | None = None) -> torch.Generator:
    """A torch generator (on `device`; CPU by default) for one purpose: `stream(cfg.seed, Purpose.SHUFFLE, epoch)`."""
    return torch.Generator(device=device or "cpu").manual_seed(purpose_seed(seed, purpose, *counters))


def numpy_stream(seed: int, purpose: Purpose, *counters: int) -> np.random.Generator:
    """A numpy generator for one purpose (data splits and subsets are drawn with numpy)."""
    return np.random.default_rng(np.random.SeedSequence(_entropy(seed, purpose, counters)))


def seed_global(seed: int, purpose: Purpose, *counters: int) -> None:
    """Seed torch's global generators, for draws that take no generator argument (weight init, dropout)."""
    torch.manual_seed(purpose_seed(seed, purpose, *counters))
