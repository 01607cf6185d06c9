"""Shared feature extractors (trunks) registered by name: mlp, cnn, resnet.

A trunk factory takes `(options, input_shape)` and returns an nn.Module whose forward gives
(B, out_dim) features and whose int attribute `out_dim` sizes the task heads. A trunk may also offer
`stages()`: modules that, applied in order, equal `forward` (cross-stitch mixes columns between them).
Each trunk's options (`model.trunk: {name: cnn, channels: […], …}`) are declared next to it; `widths` names the
options that mixture-of-experts sharings scale to make narrower experts.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import Options
from hydranet.errors import UserError
from hydranet.models.embeddings import PLR, EmbeddedColumns, PLROptions
from hydranet.registry import register

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
Activation = Literal["relu", "gelu", "silu"]


class TrunkOptions(Options):
    """What every built-in trunk takes; `widths`: the list-of-widths options an expert's width multiplier scales."""

    widths: ClassVar[tuple[str, ...]] = ()
    activation: Activation = Field("relu", description="activation function: relu, gelu, silu")


class MLPOptions(TrunkOptions):
    """Options of `model.trunk: {name: mlp, …}`."""

    widths: ClassVar[tuple[str, ...]] = ("hidden",)
    hidden: list[int] = Field([256, 128], description="widths of the hidden layers")
    batch_norm: bool = Field(False, description="batch normalization after each linear layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before each hidden layer but the first")
    embedding: Literal["none", "plr"] = Field("none", description="front-end per numeric input: none (the numbers as they are) | plr (periodic embeddings, Gorishniy et al. 2022; with data.encoder.categorical: embedding the category codes get their own vectors instead)")
    plr: PLROptions = Field(default_factory=PLROptions, description="the plr embedding's options")
    category_dim: int = Field(16, ge=1, description="width of each category column's learned vector (data.encoder.categorical: embedding)")


class CNNOptions(TrunkOptions):
    """Options of `model.trunk: {name: cnn, …}`."""

    widths: ClassVar[tuple[str, ...]] = ("channels", "dense")
    channels: list[int] = Field([32, 64], description="conv widths (each conv is followed by 2x2 max-pool)")
    kernel_size: int = Field(3, ge=1, description="convolution kernel size")
    padding: Literal["valid", "same"] = Field("same", description="convolution padding (Keras' default is valid)")
    dense: list[int] = Field([64], description="widths of the dense layers after flatten")
    batch_norm: bool = Field(False, description="batch normalization after each conv and dense layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before each dense layer")


class ResNetOptions(TrunkOptions):
    """Options of `model.trunk: {name: resnet, …}`."""

    widths: ClassVar[tuple[str, ...]] = ("channels",)
    channels: list[int] = Field([32, 64], description="stage widths (stride 2 between stages)")
    blocks: list[int] = Field([1, 1], description="residual blocks per stage")


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Convolutional trunks need (C, H, W); a table's (F,) is a config mistake, not a crash."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise UserError(f"model.trunk.name: {name} needs image inputs (C, H, W), got shape {shape}; use mlp for tables")
    return shape  # type: ignore[return-value]


def _split_after(modules: list[nn.Module], ends: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    """Group consecutive modules into stages, each closed by a module of a type in `ends`.

    Trailing modules (a Flatten) join the last stage: a stage boundary right after a reshape adds nothing.
    The stages hold the trunk's own modules, so they share its parameters and state-dict keys.
    """
    groups: list[list[nn.Module]] = []
    current: list[nn.Module] = []
    for module in modules:
        current.append(module)
        if isinstance(module, ends):
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1] += current
        else:
            groups.append(current)
    return [nn.Sequential(*group) for group in groups]


def _dense_block(in_dim: int, width: int, cfg: MLPOptions | CNNOptions, dropout_first: bool) -> list[nn.Module]:
    """[Dropout] → Linear → [BatchNorm1d] → activation; the bias is redundant before BatchNorm."""
    layers: list[nn.Module] = [nn.Dropout(cfg.dropout)] if dropout_first and cfg.dropout > 0 else []
    layers.append(nn.Linear(in_dim, width, bias=not cfg.batch_norm))
    if cfg.batch_norm:
        layers.append(nn.BatchNorm1d(width))
    layers.append(ACTIVATIONS[cfg.activation]())
    return layers


class MLP(nn.Module):
    """Flatten → [category vectors, PLR embedding] → (Linear → [BatchNorm] → activation) per hidden width.

    Dropout sits before every dense layer but the first: dropping raw table features rarely helps, and
    the features leaving the trunk get the heads' own dropout. `cardinalities` (one per input, 0 for a number)
    marks the inputs that hold category codes: each gets a learned vector of `category_dim`.
    """

    def __init__(self, cfg: MLPOptions, input_shape: tuple[int, ...], cardinalities: tuple[int, ...] = ()):
        super().__init__()
        in_dim = int(torch.Size(input_shape).numel())
        layers: list[nn.Module] = [nn.Flatten()]
        plr = cfg.plr if cfg.embedding == "plr" else None
        if any(cardinalities):
            layers.append(EmbeddedColumns(cardinalities, cfg.category_dim, plr))
            in_dim = layers[-1].out_dim
        elif plr is not None:  # part of the first stage: the embedding feeds the first hidden layer only
            layers.append(PLR(in_dim, plr))
            in_dim = layers[-1].out_dim
        for i, width in enumerate(cfg.hidden):
            layers += _dense_block(in_dim, width, cfg, dropout_first=i > 0)
            in_dim = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, ...) → (B, out_dim)

    def stages(self) -> list[nn.Module]:
        """One stage per hidden layer, ending at its activation (Flatten opens the first)."""
        return _split_after(list(self.layers), tuple(ACTIVATIONS.values()))


class CNN(nn.Module):
    """Per width: Conv → [BatchNorm] → activation → MaxPool(2); then Flatten → dense layers.

    With channels [32, 64], kernel 3, padding valid and dense [64] this is exactly the TensorFlow CNN
    tutorial's Conv32-Pool-Conv64-Pool-Flatten-Dense64 (122,912 parameters on 32×32×3 images).
    With ReLU the pool runs first: max and a non-decreasing activation commute, so the output and the
    gradients are the same, and the ReLU and its backward touch a quarter of the values (on a 2-core
    CPU, 1 thread, bf16: +31% images/s on that model at batch 256, +1–8% at batch 32).
    """

    def __init__(self, cfg: CNNOptions, input_shape: tuple[int, ...]):
        super().__init__()
        c, _, _ = _image_shape("cnn", input_shape)
        padding = 0 if cfg.padding == "valid" else "same"
        pool_first = cfg.activation == "relu"  # GELU and SiLU are not monotonic: they do not commute with max
        convs: list[nn.Module] = []
        for width in cfg.channels:
            convs.append(nn.Conv2d(c, width, cfg.kernel_size, padding=padding, bias=not cfg.batch_norm))
            if cfg.batch_norm:
                convs.append(nn.BatchNorm2d(width))
            act = ACTIVATIONS[cfg.activation]()
            convs += [nn.MaxPool2d(2), act] if pool_first else [act, nn.MaxPool2d(2)]
            c = width
        self._block_end = ACTIVATIONS[cfg.activation] if pool_first else nn.MaxPool2d  # closes each conv block
        convs.append(nn.Flatten())
        self.features = nn.Sequential(*convs)
        self.channels = list(cfg.channels)
        in_dim = self._flat_dim(input_shape)
        dense: list[nn.Module] = []
        for width in cfg.dense:
            dense += _dense_block(in_dim, width, cfg, dropout_first=True)
            in_dim = width
        self.dense = nn.Sequential(*dense)
        self.out_dim = in_dim

    def _flat_dim(self, input_shape: tuple[int, ...]) -> int:
        """Size after Flatten, from a dummy forward (eval mode: BatchNorm needs no batch statistics)."""
        self.features.eval()
        try:
            with torch.no_grad():
                flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        except RuntimeError:  # a conv kernel or pool window larger than what is left of the image
            flat = 0
        finally:
            self.features.train()
        if flat == 0:
            raise UserError(
                f"model.trunk.channels: input {tuple(input_shape)} shrinks to nothing after {len(self.channels)} "
                "conv/pool layers; use model.trunk.padding=same, a smaller kernel_size or fewer channels"
            )
        return int(flat)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.features(x))  # (B, C, H, W) → (B, out_dim)

    def stages(self) -> list[nn.Module]:
        """One stage per conv block (ending at its pool), then one per dense layer: where Misra et al.
        (2016) put cross-stitch units in AlexNet, after pooling and fully connected layers."""
        convs = _split_after(list(self.features), (self._block_end,))
        return convs + _split_after(list(self.dense), tuple(ACTIVATIONS.values()))


class BasicBlock(nn.Module):
    """Two 3×3 convs with BatchNorm and an identity (or 1×1 projection) shortcut (He et al., 2016)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act = ACTIVATIONS[activation]()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv3×3 → stages of BasicBlocks (stride 2 between stages) → global average pool.

    Sized for 32×32 images (CIFAR-style, no stem pooling), and still valid on 8×8 digits: padded
    stride-2 convs never shrink a side below 1.
    """

    def __init__(self, cfg: ResNetOptions, input_shape: tuple[int, ...]):
        super().__init__()
        c, _, _ = _image_shape("resnet", input_shape)
        if not cfg.channels or len(cfg.channels) != len(cfg.blocks):
            raise UserError(
                f"model.trunk.blocks: resnet needs one block count per stage width in model.trunk.channels, "
                f"got channels {cfg.channels} and blocks {cfg.blocks}"
            )
        width = cfg.channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), ACTIVATIONS[cfg.activation]()
        )
        blocks: list[nn.Module] = []
        for stage, (out_ch, n) in enumerate(zip(cfg.channels, cfg.blocks)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(width, out_ch, stride, cfg.activation))
                width = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = width
        self._init_weights()

    def _init_weights(self) -> None:
        # Kaiming init suits ReLU-family convs (He et al., 2015). Zeroing each block's last BatchNorm
        # scale starts every residual branch as the identity, which speeds early training (Goyal et al., 2017).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.blocks(self.stem(x)))  # (B, C, H, W) → (B, out_dim)

    def stages(self) -> list[nn.Module]:
        """The stem, then one stage per residual block; the global pool joins the last one."""
        parts = [self.stem, *self.blocks]
        return [*parts[:-1], nn.Sequential(parts[-1], self.pool)]


@register("trunk", "mlp", options=MLPOptions)
def mlp(cfg: MLPOptions, input_shape: tuple[int, ...], cardinalities: tuple[int, ...] = ()) -> MLP:
    return MLP(cfg, input_shape, cardinalities)


mlp.embeds_categories = True  # takes `cardinalities`: reads data.encoder.categorical: embedding (sharing/base.py)


@register("trunk", "cnn", options=CNNOptions)
def cnn(cfg: CNNOptions, input_shape: tuple[int, ...]) -> CNN:
    return CNN(cfg, input_shape)


@register("trunk", "resnet", options=ResNetOptions)
def resnet(cfg: ResNetOptions, input_shape: tuple[int, ...]) -> ResNet:
    return ResNet(cfg, input_shape)
