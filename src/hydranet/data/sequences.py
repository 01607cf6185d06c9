"""Numeric sequences as model inputs: (N, T, F + 1) float32, the F features standardized with train statistics
and a last validity channel (1 for a real step, 0 for padding) from which a sequence trunk derives its mask.

One tensor carries values and mask, so batches, evaluation and predict treat sequences like any other `x`.
"""

from __future__ import annotations

import numpy as np
import torch

from hydranet.errors import UserError


def padded_series(values: np.ndarray, lengths: np.ndarray, where: str) -> torch.Tensor:
    """(N, T, F) values and (N,) lengths → (N, T, F + 1) with the validity channel; steps past a length are zeroed.

    A length must be a whole number in 1..T: an empty sequence has nothing to pool, and a longer one than the
    array holds has lost steps."""
    if values.ndim != 3:
        raise UserError(f"{where}: array 'x' has shape {values.shape}; expected (N, T, F): N sequences of T steps "
                        f"of F features (pad shorter sequences and give their lengths)")
    n, steps, _ = values.shape
    if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
        raise UserError(f"{where}: array 'lengths' has shape {lengths.shape} and dtype {lengths.dtype}; expected "
                        f"({n},) integers, one length per sequence of x")
    bad = (lengths < 1) | (lengths > steps)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"{where}: lengths[{row}] is {int(lengths[row])}; expected 1..{steps} (the steps of x)")
    valid = np.arange(steps)[None, :] < lengths[:, None]  # (N, T)
    series = np.concatenate([np.where(valid[..., None], values, 0.0), valid[..., None]], axis=2)
    if not np.isfinite(series).all():
        row, step = map(int, np.argwhere(~np.isfinite(series))[0][:2])
        raise UserError(f"{where}: x[{row}, {step}] holds NaN or inf within the sequence's length; expected finite numbers")
    return torch.from_numpy(series.astype(np.float32))


def feature_statistics(series: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per feature mean and std over the real steps of `series` (train's), padding left out; a constant
    feature gets std 1 (it becomes 0, not NaN)."""
    valid = series[..., -1] > 0.5  # (N, T)
    values = series[..., :-1][valid].double()  # (real steps, F)
    mean, std = values.mean(dim=0), values.std(dim=0, correction=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.float().tolist(), std.float().tolist()


def standardized(series: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """`series` with its features standardized, padding kept at 0 and the validity channel as it was."""
    valid = series[..., -1:]
    features = (series[..., :-1] - torch.tensor(mean)) / torch.tensor(std) * valid
    return torch.cat([features, valid], dim=-1).contiguous()
