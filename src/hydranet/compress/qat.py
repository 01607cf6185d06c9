"""Quantization-aware training: fine-tune a run with int8 fake quantization (the rounding of ONNX Runtime's static
int8, simulated in fp32) through the normal trainer, so the weights learn to live with it; then the int8 export.

torchao is not installed here and torch.ao.quantization is deprecated in torch 2.13, so the fake quantization is a
small wrapper over torch's own `fake_quantize_per_channel_affine` / `fake_quantize_per_tensor_affine` (straight-
through gradients), on exactly the tensors `compress/quantize.py`'s static mode quantizes: each conv and linear
layer's weight (int8, per output channel, symmetric) and its input and output (uint8, per tensor, the range the
calibration would find).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.compress.profile import parameter_counts
from hydranet.compress.prune import PRUNABLE
from hydranet.compress.quantize import quantize_run
from hydranet.compress.run import derived_config, fine_tune, record
from hydranet.config import Options
from hydranet.train import Run, load_run

WEIGHT_LEVELS = 64  # ORT's symmetric int8 weights with reduce_range (quantize.py): q in [-64, 64], scale = max|w| / 64 per output channel
ACTIVATION_LEVELS = 255  # ORT's uint8 activations: q in [0, 255] over [min(lo, 0), max(hi, 0)]
MOMENTUM = 0.1  # how fast an activation's range follows the training batches (PyTorch's moving-average observer's 0.01 is for thousands of steps; fine-tuning takes hundreds)


class QATOptions(Options):
    """Options of `hydranet compress --method qat`."""

    epochs: int = Field(2, ge=1, description="fine-tuning epochs with fake int8 quantization, through the normal trainer")
    calibration: int = Field(512, ge=1, description="train examples that calibrate the int8 export's activation ranges")


def fake_quantize_weight(weight: Tensor) -> Tensor:
    """`weight` rounded to int8 per output channel as ORT's per-channel symmetric quantizer rounds it."""
    absmax = weight.detach().abs().reshape(weight.shape[0], -1).amax(dim=1)
    scale = (absmax / WEIGHT_LEVELS).clamp_min(1e-12).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS)


class Range:
    """An activation's range: a moving average of the batches' min and max while training, fixed in eval mode;
    `__call__` rounds a tensor to the uint8 grid over it (values outside are clipped, with zero gradient)."""

    def __init__(self) -> None:
        self.low: Tensor | None = None
        self.high: Tensor | None = None

    def observe(self, x: Tensor) -> None:
        low, high = x.detach().min().clamp_max(0), x.detach().max().clamp_min(0)
        if self.low is None:
            self.low, self.high = low, high
        else:
            self.low = self.low + MOMENTUM * (low - self.low)
            self.high = self.high + MOMENTUM * (high - self.high)

    def __call__(self, x: Tensor, training: bool) -> Tensor:
        if training or self.low is None:
            self.observe(x)
        scale = ((self.high - self.low) / ACTIVATION_LEVELS).clamp_min(1e-12).float().reshape(1)
        zero = torch.round(-self.low / scale).clamp(0, ACTIVATION_LEVELS).to(torch.int32).reshape(1)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, ACTIVATION_LEVELS)


def quantized_forward(layer: nn.Module, inputs: Range, outputs: Range | None) -> Callable[[Tensor], Tensor]:
    """The conv or linear layer's forward with its input, weight and (unless a BatchNorm follows) output
    fake-quantized."""
    def forward(x: Tensor) -> Tensor:
        x, weight = inputs(x, layer.training), fake_quantize_weight(layer.weight)
        if isinstance(layer, nn.Linear):
            y = F.linear(x, weight, layer.bias)
        else:
            y = layer._conv_forward(x, weight, layer.bias)
        return y if outputs is None else outputs(y, layer.training)
    return forward


def quantized_output(module: nn.Module, outputs: Range) -> Callable[[Tensor], Tensor]:
    """The module's own forward with its output fake-quantized."""
    return lambda x: outputs(type(module).forward(module, x), module.training)


def folded_norms(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """conv → the BatchNorm right after it in a Sequential: the ONNX export folds the two into one conv, whose
    output is what ORT quantizes. (Per-channel symmetric rounding of the weight is the same before and after the
    fold: folding scales each output channel, and so its scale, by one factor.)"""
    pairs = {}
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        children = list(seq)
        for conv, norm in zip(children, children[1:]):
            if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(norm, nn.modules.batchnorm._BatchNorm):
                pairs[conv] = norm
    return pairs


class FakeQuantization:
    """Trainer callback: from the start of fit to its end every conv and linear layer runs `quantized_forward`
    (set on the instance, so parameters, state dict and checkpoints keep their names), in training and in the
    validation that early stopping watches; at the end the layers get their plain forward back, so the run's
    weights are ordinary fp32 ones that the int8 export quantizes. The activation ranges are its state (a resumed
    fit goes on with them)."""

    def __init__(self) -> None:
        self.wrapped: list[nn.Module] = []
        self.ranges: list[Range] = []
        self.saved: dict[str, Tensor] | None = None  # ranges loaded before the layers are wrapped

    def attach(self, model: nn.Module) -> None:
        norms, self.ranges = folded_norms(model), []
        for layer in [m for m in model.modules() if isinstance(m, PRUNABLE)]:
            inputs, outputs = Range(), Range()
            self.ranges += [inputs, outputs]
            layer.forward = quantized_forward(layer, inputs, None if layer in norms else outputs)
            self.wrapped.append(layer)
            if layer in norms:
                norms[layer].forward = quantized_output(norms[layer], outputs)
                self.wrapped.append(norms[layer])
        if self.saved is not None:
            device = next(model.parameters()).device
            for one, low, high in zip(self.ranges, self.saved["low"].to(device), self.saved["high"].to(device)):
                one.low, one.high = (None, None) if torch.isnan(low) else (low, high)

    def detach(self) -> None:
        for module in self.wrapped:
            del module.forward
        self.wrapped = []  # the ranges stay: they are the state a checkpoint written at the end holds

    def state_dict(self) -> dict[str, Tensor]:
        if not self.ranges and self.saved is not None:
            return self.saved
        return {"low": _bounds([r.low for r in self.ranges]), "high": _bounds([r.high for r in self.ranges])}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.saved = state

    def on_fit_start(self, trainer) -> None:
        self.attach(trainer.model)

    def on_fit_end(self, trainer) -> None:
        self.detach()


def _bounds(values: list[Tensor | None]) -> Tensor:
    """One range end per Range, NaN where none was observed yet."""
    return torch.tensor([float("nan") if v is None else float(v) for v in values])


def qat_run(source: str | Path, options: QATOptions, out: str | Path | None, progress: bool = False) -> tuple[Run, dict[str, Any]]:
    """Fine-tune the run at `source` with fake quantization into a new run directory `out`, then quantize its export
    with ORT's static int8 (the scheme the fake quantization simulated) into OUT/export-int8-static; the new run
    and the quantization report."""
    run = load_run(source, calibrated=False)
    before = parameter_counts(run.model)
    cfg = derived_config(run, options.epochs, "qat", options)
    # in fp32 whatever the source trained in: int8 products add up exactly in ORT's int32, and bf16 autocast
    # would round the fake-quantized values (8 significant bits) where the int8 graph keeps them exact
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "fp32"})})
    tuned = fine_tune(run, cfg, out, [FakeQuantization()], progress)
    report = quantize_run(tuned, "static", examples=options.calibration)
    record(tuned, run.dir, "qat", options, before, int8=report["folder"])
    return tuned, report
