"""The space attacks work in: raw pixels in [0, 1] (`PixelSpace`; the model sees `x + δ / std`), the L∞ and L2
eps-balls (steepest-ascent step, projection, random start) and `frozen`, the eval mode an attack runs in.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from hydranet.data.info import DataInfo
from hydranet.errors import UserError

NORMS = ("linf", "l2")


@dataclass
class PixelSpace:
    """Raw pixels in [0, 1] ↔ normalized model inputs, from a run's `data.json` (mean, std per channel)."""

    mean: Tensor  # (1, C, 1, 1)
    std: Tensor  # (1, C, 1, 1)

    @classmethod
    def from_info(cls, info: DataInfo, device: torch.device | str = "cpu") -> "PixelSpace":
        if info.kind != "image":
            # A table's encoded columns (one-hot, standardized) have no common valid range or distance.
            raise UserError("attacks need an image run (this run was trained on a table)")
        view = (1, -1, 1, 1)
        return cls(torch.tensor(info.mean, device=device).view(view), torch.tensor(info.std, device=device).view(view))

    def raw(self, x: Tensor) -> Tensor:
        """Normalized (B, C, H, W) → raw pixels in [0, 1]; the clamp absorbs float round-off."""
        return (x * self.std + self.mean).clamp(0, 1)

    def model_input(self, x: Tensor, delta: Tensor) -> Tensor:
        """The normalized input with a raw-space perturbation added: exactly `x` when δ = 0."""
        return x + delta / self.std


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm uses, never updates, its running statistics; no dropout), restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# --- norm geometry: steepest-ascent step, projection on the eps-ball, random start -------------------


def _norms(t: Tensor) -> Tensor:
    """Per-example L2 norms, shaped (B, 1, 1, 1) to broadcast over (B, C, H, W)."""
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.dim() - 1)).clamp_min(1e-12)


def ascent(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit norm: sign(g) for L∞, g/‖g‖₂ for L2."""
    return grad.sign() if norm == "linf" else grad / _norms(grad)


def project(delta: Tensor, x_raw: Tensor, eps: float | Tensor, norm: str) -> Tensor:
    """Onto the eps-ball, then into [0, 1]: clamping x+δ only shrinks |δᵢ|, so δ stays in the ball."""
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, torch.as_tensor(eps)), -torch.as_tensor(eps))
    else:
        delta = delta * (eps / _norms(delta)).clamp(max=1.0)
    return (x_raw + delta).clamp(0, 1) - x_raw


def random_start(x_raw: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """Uniform in the L∞ ball, or uniform in the L2 ball (Gaussian direction, radius eps·u^(1/d))."""
    if norm == "linf":
        noise = torch.rand(x_raw.shape, generator=generator, device=x_raw.device) * 2 - 1
        return project(noise * eps, x_raw, eps, norm)
    direction = torch.randn(x_raw.shape, generator=generator, device=x_raw.device)
    radius = torch.rand(len(x_raw), generator=generator, device=x_raw.device) ** (1 / x_raw[0].numel())
    return project(direction / _norms(direction) * eps * radius.view(-1, *[1] * (x_raw.dim() - 1)), x_raw, eps, norm)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise UserError(f"--norm: {norm!r} is not a norm (expected {' or '.join(NORMS)})")
    return norm
