"""Denoising autoencoder (Vincent et al. 2008, "Extracting and Composing Robust Features with Denoising
Autoencoders", ICML) as a pretraining method: reconstruct the clean input from a corrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.distributed.draws import rand_rows, randn_rows
from hydranet.distributed.gather import mean_over_ranks
from hydranet.errors import UserError
from hydranet.registry import register
from hydranet.ssl.views import ViewMaker


class DenoisingOptions(Options):
    """Options of `ssl.method: {name: denoising, …}`."""

    mask_ratio: float = Field(0.3, ge=0, lt=1, description="fraction of input values set to zero (the train mean) before reconstruction")
    noise_std: float = Field(0.1, ge=0, description="std of the Gaussian noise added to the (normalized) input; a table's category codes (categorical: embedding) are masked or kept, never noised, and not reconstructed")
    decoder_hidden: int = Field(512, ge=1, description="hidden width of the MLP decoder from features back to the input")


@register("ssl", "denoising", options=DenoisingOptions)
class Denoising(nn.Module):
    """Denoising autoencoder (Vincent et al. 2008): zero a random share of the input values and add
    Gaussian noise, encode with the trunk, reconstruct the clean input with a light MLP decoder (MSE)."""

    name = "denoising"

    def __init__(self, options: DenoisingOptions, trunk: nn.Module, views: ViewMaker):
        super().__init__()
        self.options, self.views = options, views
        self.coded = bool(views.codes.any())  # decided once: no device sync per step
        self.register_buffer("numbers", torch.nonzero(~views.codes).flatten(), persistent=False)  # what is rebuilt
        if self.coded and bool(views.codes.all()):
            raise UserError("ssl.method: denoising reconstructs numbers, and every input of this table is a category "
                            "code (data.encoder.categorical: embedding); use categorical: onehot or another method")
        size = int(torch.Size(views.input_shape).numel())
        self.decoder = nn.Sequential(nn.Linear(trunk.out_dim, options.decoder_hidden), nn.ReLU(),
                                     nn.Linear(options.decoder_hidden, size))

    def on_epoch_start(self, trainer) -> None:
        self.views.on_epoch_start(trainer)

    def corrupt(self, x: Tensor) -> Tensor:
        """Zero `mask_ratio` of the values and add noise to the numbers. A category code (an embedded table column)
        is masked to 0, its unknown slot, or kept as it is: noise would turn code c into c − 1 half the time."""
        keep = (rand_rows(self.views.generator, *x.shape) >= self.options.mask_ratio).to(x.device)
        noise = randn_rows(self.views.generator, *x.shape).to(x.device) * self.options.noise_std
        if self.coded:
            noise = noise.masked_fill(self.views.codes, 0.0)
        return torch.where(keep, x, torch.zeros((), device=x.device)) + noise

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["x"]
        with self.views.cast(x):
            recon = self.decoder(model.trunk(self.corrupt(x)))
        errors = F.mse_loss(recon.float(), x.flatten(1).float(), reduction="none")
        if self.coded:  # a code's distance to another code means nothing: the numbers are reconstructed
            errors = errors.index_select(1, self.numbers)
        return {self.name: mean_over_ranks(errors.mean(1).sum(), len(x))}
