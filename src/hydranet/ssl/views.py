"""Random views of a batch for self-supervised methods: whole batches at once, no per-example Python.

Images (normalized (B, C, H, W)): random resized crop with flip through one affine `grid_sample`, then
colour jitter and greyscale in raw pixel space [0, 1] (SimCLR's CIFAR recipe without blur and hue,
Chen et al. 2020). Tables (encoded (B, F)): SCARF corruption, each feature replaced with probability p by
the same feature of another random row, i.e. a draw from its empirical marginal (Bahri et al. 2022).
Random numbers come from a CPU generator, so a seed gives the same views on any device, and are drawn for
the global batch, each process of a distributed run keeping its rows (`distributed/draws.py`), so an example's
views depend on its place in the global batch, not on the world size. `ViewMaker` holds the settings, the
per-epoch generator and the run's precision that every self-supervised method shares.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


from hydranet.config import SSLConfig
from hydranet.data.info import DataInfo
from hydranet.data.tabular import cardinalities
from hydranet.distributed.draws import rand_rows, randint_rows
from hydranet.distributed.gather import all_gather_with_grad
from hydranet.randomness import Purpose, stream
from hydranet.train.precision import autocast

GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, what PIL's convert("L") uses


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * rand_rows(generator, n)


def crop_flip(x: Tensor, scale_min: float, flip: bool, generator: torch.Generator) -> Tensor:
    """Random resized crops (area fraction in [scale_min, 1], aspect ratio in [3/4, 4/3]), resized back to
    the input size by bilinear sampling, each mirrored with probability 1/2 when `flip`."""
    b = x.shape[0]
    area = _uniform(b, scale_min, 1.0, generator)
    log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), generator)
    ratio = log_ratio.exp()
    width = (area * ratio).sqrt().clamp(max=1.0)  # half-extent in grid units [-1, 1] is `width`
    height = (area / ratio).sqrt().clamp(max=1.0)
    cx = (2 * rand_rows(generator, b) - 1) * (1 - width)  # the window stays inside the image
    cy = (2 * rand_rows(generator, b) - 1) * (1 - height)
    sign = torch.where(rand_rows(generator, b) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _grey(raw: Tensor) -> Tensor:
    """(B, 3, H, W) → luma (B, 1, H, W); a one-channel image is its own grey."""
    if raw.shape[1] != 3:
        return raw
    weights = torch.tensor(GREY, device=raw.device, dtype=raw.dtype).view(1, 3, 1, 1)
    return (raw * weights).sum(1, keepdim=True)


def colour(raw: Tensor, strength: float, grey_p: float, generator: torch.Generator) -> Tensor:
    """Brightness, contrast and saturation factors in [1 − s, 1 + s] (each view with probability 0.8, as
    SimCLR), then greyscale with probability `grey_p`; raw pixels in [0, 1] stay in [0, 1]."""
    b = raw.shape[0]

    def factor() -> Tensor:
        f = _uniform(b, 1 - strength, 1 + strength, generator)
        return torch.where(jitter, f, torch.ones(b)).view(b, 1, 1, 1).to(raw.device, raw.dtype)

    if strength > 0:
        jitter = rand_rows(generator, b) < 0.8
        brightness, contrast, saturation = factor(), factor(), factor()
        raw = (raw * brightness).clamp(0, 1)
        mean = _grey(raw).mean(dim=(1, 2, 3), keepdim=True)
        raw = (mean + contrast * (raw - mean)).clamp(0, 1)
        grey = _grey(raw)
        raw = (grey + saturation * (raw - grey)).clamp(0, 1)
    if grey_p > 0:
        to_grey = (rand_rows(generator, b) < grey_p).view(b, 1, 1, 1).to(raw.device)
        raw = torch.where(to_grey, _grey(raw).expand_as(raw), raw)
    return raw


def image_view(x: Tensor, cfg: SSLConfig, mean: Tensor, std: Tensor, generator: torch.Generator) -> Tensor:
    """One random view of a normalized image batch, normalized again."""
    x = crop_flip(x, cfg.crop_scale, cfg.flip, generator)
    if cfg.color_jitter > 0 or cfg.grayscale > 0:
        raw = (x * std + mean).clamp(0, 1)
        x = (colour(raw, cfg.color_jitter, cfg.grayscale, generator) - mean) / std
    return x


def scarf(x: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Replace each value with probability p by the same column's value in a random row of the global batch
    (every rank's rows, gathered: one process would draw from all of them)."""
    b, f = x.shape
    everyone = all_gather_with_grad(x).rows  # (N, F)
    replace = (rand_rows(generator, b, f) < p).to(x.device)
    rows = randint_rows(generator, len(everyone), b, f).to(x.device)
    return torch.where(replace, everyone.gather(0, rows), x)


class ViewMaker(nn.Module):
    """Random views or corruptions for a self-supervised method: a generator reseeded every epoch (so a resumed
    pretraining replays the same views), image or table views, and the run's precision for forward passes.

    A method holds one as a submodule (its mean/std buffers follow the method to the device) and forwards its
    `on_epoch_start` hook to it.
    """

    def __init__(self, cfg: SSLConfig, seed: int, precision: str, info: DataInfo):
        super().__init__()
        self.cfg, self.seed, self.precision = cfg, seed, precision
        self.input_shape = info.input_shape
        self.is_image = info.is_image
        self.tokenizer = info.tokenizer  # texts: the tokenizer's JSON, where masked-token pretraining finds [MASK]
        # tables: which inputs hold category codes (data.encoder.categorical: embedding), not numbers
        codes = [size > 0 for size in cardinalities(info.encoder)]
        self.register_buffer("codes", torch.tensor(codes, dtype=torch.bool), persistent=False)
        if self.is_image:
            self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)
        self.generator = stream(seed, Purpose.SSL_VIEWS, 0)

    def on_epoch_start(self, trainer) -> None:
        self.generator = stream(self.seed, Purpose.SSL_VIEWS, trainer.epoch)

    def cast(self, x: Tensor):
        return autocast(x.device, self.precision)

    def pair(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Two views: two random image views, or for tables the row and its SCARF corruption."""
        if self.is_image:
            return (image_view(x, self.cfg, self.mean, self.std, self.generator),
                    image_view(x, self.cfg, self.mean, self.std, self.generator))
        return x, scarf(x, self.cfg.corruption, self.generator)
