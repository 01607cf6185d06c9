"""Training batches: the train split on the device, served epoch by epoch shuffled, normalized and augmented.

The trainer only asks for an epoch's batches; the random choices of epoch n depend on (seed, n) alone, so a
resumed run trains on exactly the batches of an uninterrupted one. Under torchrun every rank draws the same global
batches and keeps its contiguous share of each, so W ranks see together what one process sees.
"""

from __future__ import annotations

from functools import partial
from typing import Iterator

import torch
from torch import Tensor

from hydranet.config import AugmentConfig
from hydranet.data.augment import apply, apply_to_target, draw_epoch
from hydranet.data.dataset import Dataset
from hydranet.distributed.context import rank, world_size
from hydranet.errors import UserError
from hydranet.kinds import get_kind, is_dense, mirror_values
from hydranet.randomness import Purpose, stream


def on_device(split: dict[str, Tensor], device: torch.device, channels_last: bool = False) -> dict[str, Tensor]:
    """A split's tensors on `device`, images in channels_last when asked (faster convolutions on CPUs)."""
    out = {k: v.to(device) for k, v in split.items()}
    if channels_last and out["x"].ndim == 4:
        out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
    return out


def check_global_batch(batch_size: int, world: int) -> None:
    """`train.batch_size` is the global batch: the processes must be able to share it evenly."""
    if batch_size % world:
        raise UserError(f"train.batch_size: {batch_size} is the global batch and must divide evenly among the "
                        f"{world} processes (a multiple of {world})")


class Batches:
    """The train split of `data`, moved to `device` once (images stay as stored, usually uint8: a quarter of
    float32's memory), cut into shuffled batches of `batch_size` that become model inputs one at a time.

    `batch_size` is the global batch: rank r of W (`shard`, by default this process's place in torchrun's group)
    is served examples [r·b, (r + 1)·b) of every batch, b = batch_size / W, so a config means the same at any
    world size (and the learning rate needs no rescaling)."""

    def __init__(self, data: Dataset, device: torch.device, batch_size: int, augment: AugmentConfig, seed: int,
                 channels_last: bool = False, shard: tuple[int, int] | None = None):
        self.rank, self.world = shard or (rank(), world_size())
        check_global_batch(batch_size, self.world)
        self.split = on_device(data.split("train", stored=True), device, channels_last)
        self.inputs = data.normalizer(device)  # stored images → normalized floats; None for tables (stored encoded)
        self.device, self.batch_size, self.augment, self.seed = device, batch_size, augment, seed
        self.size = len(self.split["x"])
        self.augmenting = self.split["x"].ndim == 4 and bool(augment.crop_padding or augment.flip or augment.cutout)
        # per-pixel targets must follow every crop and flip of their images
        # (and a kind whose values change in a mirror, normals, says how: `mirror_values`)
        self.dense = {task: partial(mirror_values, get_kind(info.kind)) for task, info in data.info.tasks.items()
                      if is_dense(get_kind(info.kind))}
        self.served = self.size - self._left_out()

    def _left_out(self) -> int:
        """Examples of the last batch left out of each epoch (shuffling picks others each epoch).

        Across W ranks, the last batch keeps a multiple of W examples, so every rank gets an equal share. A share of
        one example per rank (when batches hold more) is left out too: BatchNorm cannot normalize one example
        (PyTorch refuses), and one example's step is mostly noise; but never the only batch of a small split."""
        last = self.size % self.batch_size
        kept = last - last % self.world
        lone = kept == self.world and self.batch_size > self.world and self.size > self.batch_size
        return last if lone else last - kept

    def __len__(self) -> int:
        """Steps per epoch (the last batch may be smaller, but never a single example)."""
        return -(-self.served // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[dict[str, Tensor]]:
        """The batches of 0-based `epoch` as {"x": model inputs, task: targets}.

        Its random choices (the order, then every batch's augmentation) are drawn here, at once, on CPU
        generators (the same numbers on any device) and moved to the device in one copy each: a small copy per
        step would wait for the queued work on a GPU.
        """
        order = torch.randperm(self.size, generator=stream(self.seed, Purpose.SHUFFLE, epoch)).to(self.device)
        choices = None
        if self.augmenting:
            _, _, height, width = self.split["x"].shape
            generator = stream(self.seed, Purpose.AUGMENT, epoch)
            drawn = draw_epoch(self.augment, self.size, self.batch_size, height, width, generator)
            choices = {k: v.to(self.device) for k, v in drawn.items()}
        return self._batches(order, choices)

    def _batches(self, order: Tensor, choices: dict[str, Tensor] | None) -> Iterator[dict[str, Tensor]]:
        for begin in range(0, self.served, self.batch_size):
            end = min(begin + self.batch_size, self.served)
            share = (end - begin) // self.world  # this rank's slice of the global batch
            begin, end = begin + self.rank * share, begin + (self.rank + 1) * share
            idx = order[begin:end]
            batch = {k: v.index_select(0, idx) for k, v in self.split.items()}
            if self.inputs is not None:
                batch["x"] = self.inputs(batch["x"])
            if choices is not None:
                drawn = {k: v[begin:end] for k, v in choices.items()}
                batch["x"] = apply(batch["x"], self.augment, drawn)
                batch.update({task: apply_to_target(batch[task], self.augment, drawn, mirror)
                              for task, mirror in self.dense.items()})
            yield batch
