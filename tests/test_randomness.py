"""hydranet.randomness: one named stream per purpose, depending only on (seed, purpose, counters)."""

import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from hydranet.randomness import COUNTERS, Purpose, numpy_stream, purpose_seed, seed_global, stream

SRC = Path(__file__).resolve().parents[1] / "src" / "hydranet"


# seeded by the bare seed before the table (each its own generator), kept so published numbers reproduce
BARE = {Purpose.INIT, Purpose.ROWS, Purpose.EVAL_ATTACK_START, Purpose.ATTACK_TARGETS, Purpose.PROBE_HOLDOUT}


def counters(purpose: Purpose, epoch: int) -> tuple[int, ...]:
    return tuple(epoch + i for i in range(len(COUNTERS.get(purpose, ()))))


def test_purposes_are_distinct():
    values = [p.value for p in Purpose.__members__.values()]  # aliases (a repeated value) show up here only
    assert len(values) == len(set(values))
    for seed in (0, 1, 42):
        for epoch in (0, 1, 7):
            seeds = {p: purpose_seed(seed, p, *counters(p, epoch)) for p in Purpose if p not in BARE}
            assert len(set(seeds.values()) | {seed}) == len(seeds) + 1, seeds


def test_a_stream_depends_only_on_seed_purpose_and_counters():
    first = torch.randperm(50, generator=stream(3, Purpose.SHUFFLE, 2))
    torch.rand(100)  # draws elsewhere, from the global generator or other streams, change nothing
    torch.rand(10, generator=stream(3, Purpose.AUGMENT, 2))
    assert torch.equal(torch.randperm(50, generator=stream(3, Purpose.SHUFFLE, 2)), first)
    assert not torch.equal(torch.randperm(50, generator=stream(3, Purpose.SHUFFLE, 3)), first)
    assert not torch.equal(torch.randperm(50, generator=stream(4, Purpose.SHUFFLE, 2)), first)
    assert np.array_equal(numpy_stream(3, Purpose.SPLIT).random(5), numpy_stream(3, Purpose.SPLIT).random(5))
    seed_global(3, Purpose.DROPOUT, 2)
    a = torch.rand(5)
    seed_global(3, Purpose.DROPOUT, 2)
    assert torch.equal(torch.rand(5), a)


def test_counters_are_checked():
    with pytest.raises(ValueError, match="SHUFFLE stream: expected counters"):
        stream(0, Purpose.SHUFFLE)  # without its epoch, a per-epoch stream would look like a per-run one
    with pytest.raises(ValueError, match="SPLIT stream"):
        purpose_seed(0, Purpose.SPLIT, 1)


def test_the_numbers_existing_runs_depend_on_are_kept():
    """Splits of existing run directories, training draws of resumed runs and initial weights stay as they were."""
    def old(*entropy):
        return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])

    seed, epoch = 5, 3
    for purpose, word in ((Purpose.SHUFFLE, 1), (Purpose.AUGMENT, 2), (Purpose.DROPOUT, 3), (Purpose.ATTACK_START, 4),
                          (Purpose.GUARD_START, 5)):
        assert purpose_seed(seed, purpose, epoch) == old(seed, epoch, word)
    for purpose, word in ((Purpose.SPLIT, 1), (Purpose.LIMIT, 2), (Purpose.LABELS, 3), (Purpose.PAIRS, 7)):
        assert numpy_stream(seed, purpose).random() == np.random.default_rng(np.random.SeedSequence([seed, word])).random()
    for purpose, name in ((Purpose.RLW, b"rlw"), (Purpose.PCGRAD, b"pcgrad")):
        assert purpose_seed(seed, purpose) == old(seed, zlib.crc32(name))
    assert all(purpose_seed(seed, purpose) == seed for purpose in BARE)  # kept: published evaluations reproduce


def test_nothing_else_seeds_a_generator():
    pattern = re.compile(r"manual_seed\(|SeedSequence\(|default_rng\(|Generator\(|RandomState\(|random\.seed\(")
    offenders = [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
                 for path in sorted(SRC.rglob("*.py")) if path.name != "randomness.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, "draw from hydranet.randomness streams instead:\n" + "\n".join(offenders)
