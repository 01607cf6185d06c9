"""The `unet` trunk: a ResNet encoder and a small FPN-style decoder, giving a feature map at the input resolution.

Dense tasks (segmentation, depth, edges, normals) put their conv heads on that map and image-level tasks pool it, so
under `hard` sharing every encoder and decoder parameter is shared and the gradient balancers treat them as such.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.models.trunks import ACTIVATIONS, BasicBlock, TrunkOptions, _image_shape
from hydranet.registry import register


class UNetOptions(TrunkOptions):
    """Options of `model.trunk: {name: unet, …}`."""

    widths: ClassVar[tuple[str, ...]] = ("channels",)
    channels: list[int] = Field([16, 32, 64], description="encoder stage widths (one residual block each; stride 2 between stages)")
    decoder: int = Field(32, ge=1, description="width of the decoder's feature map (and of every dense head)")


def conv_bn(in_ch: int, out_ch: int, kernel: int, activation: str) -> nn.Sequential:
    """Conv → BatchNorm → activation, padded so the map keeps its size."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch),
                         ACTIVATIONS[activation]())


class UNet(nn.Module):
    """Encoder: stem 3×3 conv, then one BasicBlock per stage (stride 2 from the second on), keeping each stage's
    output. Decoder (Lin et al., 2017, FPN): a 1×1 lateral conv per stage to `decoder` channels, the coarser
    sum upsampled (bilinear) and added top-down, then one 3×3 conv on the finest, full-resolution map.

    `forward` gives (B, decoder, H, W), `out_dim` being its channels; `feature_map` tells the heads so
    (`ModelParts.model`). No `stages()`: the skip connections do not split into stages that compose; `stage` and
    `decode` are the parts cross-stitch mixes between (one unit after every encoder stage and one after the decoder).
    """

    feature_map = True
    any_size = True  # every layer works at the picture's own size: an exported graph takes any height and width

    def __init__(self, cfg: UNetOptions, input_shape: tuple[int, ...]):
        super().__init__()
        c, _, _ = _image_shape("unet", input_shape)
        if not cfg.channels:
            raise UserError("model.trunk.channels: unet needs at least one encoder stage width")
        self.stem = conv_bn(c, cfg.channels[0], 3, cfg.activation)
        widths = [cfg.channels[0], *cfg.channels]
        # `encoder`, not `stages`: a trunk's `stages()` is a method whose parts compose to the forward (cross-stitch,
        # train.freeze), which the skip connections rule out here
        self.encoder = nn.ModuleList(BasicBlock(widths[i], widths[i + 1], 1 if i == 0 else 2, cfg.activation)
                                     for i in range(len(cfg.channels)))
        self.laterals = nn.ModuleList(nn.Conv2d(width, cfg.decoder, 1) for width in cfg.channels)
        self.smooth = conv_bn(cfg.decoder, cfg.decoder, 3, cfg.activation)
        self.out_dim = cfg.decoder
        self.n_stages = len(cfg.channels)  # how many `stage`s the encoder has

    def stage(self, index: int, h: Tensor) -> Tensor:
        """Encoder stage `index` (the stem runs before the first): (B, C, H, W) → (B, C_index, H / 2^index, …)."""
        return self.encoder[index](self.stem(h) if index == 0 else h)

    def decode(self, skips: list[Tensor]) -> Tensor:
        """Every stage's output, finest first, → the full-resolution map (B, decoder, H, W)."""
        top = self.laterals[-1](skips[-1])
        for skip, lateral in zip(reversed(skips[:-1]), reversed(self.laterals[:-1])):
            top = lateral(skip) + F.interpolate(top, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(top)

    def forward(self, x: Tensor) -> Tensor:
        skips, h = [], x
        for index in range(self.n_stages):
            h = self.stage(index, h)
            skips.append(h)  # (B, C_i, H / 2^i, W / 2^i)
        return self.decode(skips)  # (B, decoder, H, W)


@register("trunk", "unet", options=UNetOptions)
def unet(cfg: UNetOptions, input_shape: tuple[int, ...]) -> UNet:
    return UNet(cfg, input_shape)
