"""`waves`: noisy periodic signals of varying length, generated in memory from the seed (no download): a
multi-task time-series problem with one label to classify and one to regress.

Each sequence is one of three patterns (`pattern`: sine, square, sawtooth) at a random frequency (`frequency`:
cycles per step, 0.03 to 0.25), phase and amplitude, 24 to 64 steps long (the rest padding), plus Gaussian noise.
"""

from __future__ import annotations

import numpy as np

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.sequences import padded_series
from hydranet.randomness import Purpose, numpy_stream
from hydranet.registry import register

WAVES = 2000  # sequences in all splits together; `data.limit` makes fewer
STEPS = (24, 64)  # shortest and longest sequence (the padded length is the longest)
FREQUENCY = (0.03, 0.25)  # cycles per step: 1.5 to 16 cycles in a 64-step sequence
PATTERNS = ("sine", "square", "sawtooth")
NOISE = 0.15  # std of the noise added to signals of amplitude 0.5 to 1.5


@register("source", "waves")
def load_waves(cfg: Config) -> RawData:
    """`data.limit` (default 2,000) sequences (N, 64, 1 + 1) with labels pattern and frequency."""
    return generate(cfg.data.limit or WAVES, cfg.seed)


def generate(n: int, seed: int) -> RawData:
    """The sequences and labels of `n` waves; the same for the same (n, seed)."""
    rng = numpy_stream(seed, Purpose.WAVES)
    pattern = rng.integers(0, len(PATTERNS), size=n)
    frequency = rng.uniform(*FREQUENCY, size=n)
    phase, amplitude = rng.uniform(0, 1, size=n), rng.uniform(0.5, 1.5, size=n)
    lengths = rng.integers(STEPS[0], STEPS[1] + 1, size=n)
    cycles = frequency[:, None] * np.arange(STEPS[1])[None, :] + phase[:, None]  # (N, T) in cycles
    shapes = np.stack([np.sin(2 * np.pi * cycles), np.sign(np.sin(2 * np.pi * cycles)), 2 * (cycles % 1.0) - 1])
    signal = amplitude[:, None] * shapes[pattern, np.arange(n)] + rng.normal(0, NOISE, size=(n, STEPS[1]))
    labels = {"pattern": np.asarray(PATTERNS)[pattern], "frequency": frequency.astype(np.float32)}
    return RawData(labels=labels, series=padded_series(signal[..., None], lengths, "waves"))


load_waves.inputs = "sequence"  # type: ignore[attr-defined]  # read by the config: the default trunk (gru)
