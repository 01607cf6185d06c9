"""Synchronized BatchNorm (`train.sync_batch_norm`): batch statistics over every rank's examples, so N ranks ×
batch B normalize exactly as one process × N·B. torch's nn.SyncBatchNorm runs only on GPUs (it raises on CPU
tensors), so CPU runs (gloo) get `CPUSyncBatchNorm`, which all-reduces three sums per channel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from hydranet.distributed.context import world_size
from hydranet.distributed.gather import all_reduce_with_grad


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics are those of all ranks' examples together: each rank's per-channel
    sum, sum of squares and count are all-reduced (differentiably, so each input's gradient includes what every
    rank's loss says about the shared mean and variance), then normalize as nn.BatchNorm does and update the
    running statistics with the global mean and unbiased variance. Evaluation, and training in one process, are
    plain BatchNorm. Any input of 2 or more dimensions (N, C, …); the same parameters, buffers and state-dict keys
    as nn.BatchNorm1d/2d/3d, so checkpoints load either way."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions (N, C, …), got {x.dim()}")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        mean, var, count = _global_moments(x)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.detach())
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel, broadcast over batch and positions
        y = (x.float() - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        """As nn.BatchNorm: an exponential average with `momentum` (a cumulative one when it is None), the variance
        unbiased (n / (n − 1))."""
        self.num_batches_tracked.add_(1)
        rate = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), rate)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), rate)


def _global_moments(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel mean and (biased) variance of every rank's `x` together, and the number of values per channel;
    in float32, whatever the input's precision. One all-reduce of [Σx, Σx², n]."""
    channels, dims = x.shape[1], [0, *range(2, x.dim())]
    values = x.float()
    count = torch.full((1,), x.numel() // channels, dtype=values.dtype, device=x.device)
    total = all_reduce_with_grad(torch.cat([values.sum(dims), (values * values).sum(dims), count]))
    sums, squares, n = total[:channels], total[channels:2 * channels], total[2 * channels:]
    mean = sums / n
    return mean, (squares / n - mean * mean).clamp(min=0), n


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm inside `module` replaced, in place, by a synchronized one: torch's nn.SyncBatchNorm on CUDA
    (NCCL), `CPUSyncBatchNorm` elsewhere. The new layers hold the very same parameters and buffers, so an optimizer,
    a freezer or a target network built before keeps working. Nothing changes in one process. Returns `module`
    (or its replacement, if it is itself a BatchNorm)."""
    if world_size() == 1:
        return module
    return _replace(module, nn.SyncBatchNorm if device.type == "cuda" else CPUSyncBatchNorm)


def _replace(module: nn.Module, synced: type[_BatchNorm]) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
        return _synced_copy(module, synced)
    for name, child in module.named_children():
        module.add_module(name, _replace(child, synced))
    return module


def _synced_copy(bn: _BatchNorm, synced: type[_BatchNorm]) -> _BatchNorm:
    """A `synced` layer sharing `bn`'s settings, parameters, buffers and train/eval mode."""
    new = synced(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        new.running_mean, new.running_var, new.num_batches_tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
    return new.train(bn.training)
