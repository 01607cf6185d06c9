"""Attributions of a batch of model inputs for one task: the target chosen, the method's inputs (baseline, feature
mask) prepared, the examples sent through the method in chunks; `Model.explain` and `hydranet explain` share it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

from hydranet.data.batches import on_device
from hydranet.data.info import IMAGE, SEQUENCE, TABLE, TEXT
from hydranet.errors import UserError
from hydranet.explain import pixels, sequences, texts
from hydranet.explain.methods import GROUPED, Attribution, Request, baseline_input, get_method
from hydranet.explain.segments import SEGMENTATIONS, default_patch, patch_mask, slic
from hydranet.explain.tables import per_column, refuse_gradients_through_codes, source_columns
from hydranet.explain.target import Target, TaskScores, choose_target
from hydranet.train.run import Run

DEFAULT_METHOD = {IMAGE: "integrated_gradients", TABLE: "kernel_shap", TEXT: "integrated_gradients",
                  SEQUENCE: "integrated_gradients"}  # by input kind
ROWS = 1024  # rows per forward pass when a method batches its steps or coalitions


@dataclass
class Settings:
    """How to explain, as `hydranet explain` takes it; the defaults are the command's."""

    method: str | None = None  # None: integrated_gradients for images and texts, kernel_shap for tables
    target: str | None = None  # class or label (name or index); None: the predicted one
    baseline: str | None = None  # None: zeros for images and texts, the train mean for tables (see `baseline_for`)
    steps: int = 50  # integrated_gradients: points on the path to start with, doubled where an example needs more
    samples: int = 200
    layer: str | None = None
    region: str | None = None  # per-pixel tasks: "predicted" (None), "all" or a box "R0:R1,C0:C1" (explain/pixels.py)
    patch: int | None = None  # images, segments "grid": side of the square patches kernel_shap, lime, occlusion switch
    segments: str = "grid"  # images: the groups those methods switch, "grid" (patches) or "slic" (superpixels)
    n_segments: int = 64  # images, segments "slic": about this many superpixels per image

    def method_for(self, kind: str) -> str:
        """The method asked for, else the default of the run's input kind (DataInfo.kind)."""
        return self.method or DEFAULT_METHOD[kind]

    def baseline_for(self, kind: str) -> str:
        """Images: zeros, the mean colour of the normalized train set. Texts: zeros, every token's embedding
        (explain/texts.py). Numeric sequences: zeros, every feature at its train mean (explain/sequences.py).
        Tables: the mean train row, each one-hot group at its category frequencies; zeros would switch every
        category off, a row the model never saw, and credit the categorical columns for that alone."""
        return self.baseline or ("mean" if kind == TABLE else "zeros")


@dataclass
class Explained:
    """One task's attributions of a batch, with what they are for."""

    values: Tensor  # like x (gradcam: (N, 1, H, W)), on the CPU
    target: Target
    scores: Tensor  # (N, K) raw outputs of the task
    gap: Tensor  # (N,) f(x) − f(baseline) of the explained score
    delta: Tensor | None = None  # integrated_gradients' completeness error per example
    groups: str | None = None  # what a grouped method (kernel_shap, lime, occlusion) switched on and off
    segments: Tensor | None = None  # images, grouped methods: (N, H, W) group id of every pixel, on the CPU
    steps: Tensor | None = None  # integrated_gradients' points on the path per example
    regions: Tensor | None = None  # per-pixel tasks: (N, H, W) bool, the pixels whose score was explained


def explain_batch(run: Run, x: Tensor, task: str, settings: Settings,
                  train_mean: Callable[[], Tensor] | None = None) -> Explained:
    """Attributions of `x` (model inputs) for one task, chunked by the run's eval batch size (a per-pixel task:
    one example per method call, each with its own region). `train_mean` gives the mean train input (baseline
    "mean"); it is only called when that baseline is asked for."""
    check_task(run, task)
    image, kind = run.info.is_image, run.info.kind
    name = settings.method_for(kind)
    method = get_method(name)
    dense = run.tasks[task].dense
    if settings.region is not None and not dense:
        raise UserError(f"--region: task {task!r} ({run.tasks[task].kind}) predicts one value per example; --region "
                        f"is for per-pixel tasks")
    if not image and name not in GROUPED:
        refuse_gradients_through_codes(run.info, name)
    device = next(run.model.parameters()).device
    scores = TaskScores(run.model, task)
    ids = x if kind == TEXT else None
    if ids is not None:  # attributions on the token embeddings: ids have no gradient
        texts.check_method(name, settings.baseline)
        scores, x = texts.embedded(scores, run.model, ids)
    elif kind == SEQUENCE:
        sequences.check_method(name, settings.baseline)
    size = run.config.train.eval_batch_size
    was_training = run.model.training
    run.model.eval()
    regions = None
    try:
        # channels_last as in training: the run's convolutions are laid out for it (about 2x faster on CPUs)
        x = on_device({"x": x.float()}, device, run.config.train.channels_last)["x"]
        if dense:  # one number per example from its map: a region's sum or mean, the region fixed from x's prediction
            scores, target, regions = pixels.regional(run.model, run.tasks[task], forward_all(scores, x, size),
                                                      settings.region, settings.target)
            outputs = forward_all(scores, x, size)
        else:
            outputs = forward_all(scores, x, size)
            target = choose_target(run.tasks[task], outputs, settings.target)
        if ids is not None:
            baseline = texts.baseline(x, ids)
        elif kind == SEQUENCE:
            baseline = sequences.baseline(x)
        else:
            baseline = baseline_input(settings.baseline_for(kind), x, train_mean or _no_mean, image)
        grouped = name in GROUPED
        mask, note = feature_mask(run, settings, x) if grouped else (None, None)
        with warnings.catch_warnings():  # Captum's advice (one example at a time, inputs set to require grad)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
            parts = [method(request(scores, x, target.index, baseline, mask, settings, run, sl))
                     for sl in chunks(len(x), 1 if dense else size)]
        base_scores = forward_all(scores, baseline, size)
    finally:
        run.model.train(was_training)
    column = target.index.to(device)[:, None]
    gap = (outputs.gather(1, column) - base_scores.gather(1, column))[:, 0].cpu()
    segments = mask.expand(len(x), *mask.shape[1:])[:, 0].cpu() if grouped and image else None
    return Explained(joined(p.values for p in parts), target, outputs.cpu(), gap, joined(p.delta for p in parts),
                     note, segments, joined(p.steps for p in parts), regions)


def joined(parts: Iterable[Tensor | None]) -> Tensor | None:
    """The chunks' tensors as one, on the CPU; None for what the method does not return."""
    parts = list(parts)
    return None if parts[0] is None else torch.cat(parts).detach().cpu()


def request(scores: TaskScores, x: Tensor, target: Tensor, baseline: Tensor, mask: Tensor | None,
            settings: Settings, run: Run, rows: slice) -> Request:
    mask = mask[rows] if mask is not None and len(mask) > 1 else mask  # superpixels: one mask per example
    return Request(scores.rows(rows), x[rows], target[rows].to(x.device), baseline[rows], mask, steps=settings.steps,
                   samples=settings.samples, layer=settings.layer, rows=ROWS, seed=run.config.seed)


@torch.no_grad()
def forward_all(scores: TaskScores, x: Tensor, size: int) -> Tensor:
    """The task's (N, K) scores of all of x (a per-pixel task's `TaskScores`: its maps), `size` examples per
    forward pass."""
    return torch.cat([scores.rows(part)(x[part]) for part in chunks(len(x), size)])


def chunks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def feature_mask(run: Run, settings: Settings, x: Tensor) -> tuple[Tensor, str]:
    """The groups switched as one, on x's device: the source columns (tables); on images a grid of square patches
    (one mask for all) or SLIC superpixels of each image (one mask per example)."""
    if not run.info.is_image:
        _, mask = source_columns(run.info)
        return mask.to(x.device), "source columns (a one-hot group as one feature)"
    shape = tuple(run.info.input_shape)
    if settings.segments == "slic":
        if not 1 <= settings.n_segments <= shape[1] * shape[2]:
            raise UserError(f"--n-segments: {settings.n_segments} does not fit {shape[1]}x{shape[2]} images "
                            f"(expected 1..{shape[1] * shape[2]})")
        return slic(x, settings.n_segments), (f"SLIC superpixels, about {settings.n_segments} per image "
                                              f"(k-means in colour and position; all channels together)")
    if settings.segments != "grid":
        raise UserError(f"--segments: {settings.segments!r} is not a segmentation (expected {' or '.join(SEGMENTATIONS)})")
    patch = settings.patch or default_patch(shape)
    if patch < 1 or patch > max(shape[1:]):
        raise UserError(f"--patch: {patch} does not fit {shape[1]}x{shape[2]} images (expected 1..{max(shape[1:])})")
    return patch_mask(shape, patch).to(x.device), f"grid of {patch}x{patch}-pixel patches (all channels together)"


def check_task(run: Run, task: str) -> None:
    if task not in run.tasks:
        raise UserError(f"--task: {task!r} is not a task of this run (expected {', '.join(run.tasks)})")


def default_task(run: Run, task: str | None) -> str:
    """`--task`, or the run's only task; a run with several needs it named."""
    if task is not None:
        check_task(run, task)
        return task
    if len(run.tasks) == 1:
        return next(iter(run.tasks))
    raise UserError(f"--task: this run has {len(run.tasks)} tasks; name the one to explain ({', '.join(run.tasks)})")


def explained_array(run: Run, explained: Explained) -> np.ndarray:
    """Attributions as `Model.explain` returns them: like the images, per token position of a text (N, T: the
    sum over each token's embedding vector), per step and feature of a numeric sequence (N, T, F), or per source
    column of a table."""
    if run.info.kind == TEXT:
        return explained.values[..., :-1].sum(-1).numpy()
    if run.info.kind == SEQUENCE:
        return explained.values[..., :-1].numpy()
    if run.info.is_image:
        return explained.values.numpy()
    columns, mask = source_columns(run.info)
    return per_column(explained.values, mask, columns).to_numpy()


def _no_mean() -> Tensor:
    raise UserError("--baseline: mean needs the run's train data, which this call was not given")
