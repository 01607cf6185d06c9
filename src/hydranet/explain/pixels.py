"""Attributions of per-pixel tasks (segmentation, depth, edges, normals): a map per example is not one score, so
the score explained is one number per example taken from a region of its map, as in Captum's segmentation
tutorial: a class's logits summed over the pixels predicted as that class, or the mean of a depth, an edge logit or
a normal's component over a region.

The region is fixed from the prediction for x before any method runs: a method that moves the input (integrated
gradients' path, occlusion's patches) scores that same set of pixels, so f(x) − f(baseline) is the change of one
function and completeness holds. Each example is explained in its own method call (`RegionScores.rows`): however a
method repeats or batches its inputs, every row then belongs to the one region it holds.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.explain.target import Target, TaskScores, class_index
from hydranet.kinds import Kind, TaskInfo
from hydranet.tasks import Task

PREDICTED, ALL = "predicted", "all"  # --region: the pixels predicted as the target (default), or every pixel
BOX = re.compile(r"^(\d+):(\d+),(\d+):(\d+)$")  # --region R0:R1,C0:C1: rows R0..R1−1 and columns C0..C1−1


class RegionScores(TaskScores):
    """(N, K): each output of a dense task's `explain_values` summed (segmentation) or averaged over a region of
    pixels. `regions` (R, H, W) bool: R = 1 is one example's region, applied to every row (however a method
    expands that example); R = N gives row i region i (the whole batch at once, for forward passes only)."""

    head_layers = False  # Grad-CAM: the task's own head ends in the very map scored; its default layer is the trunk's

    def __init__(self, model: nn.Module, task: str, spec: Kind, info: TaskInfo, regions: Tensor):
        super().__init__(model, task)
        self.spec, self.info, self.regions = spec, info, regions

    def forward(self, x: Tensor) -> Tensor:
        values = self.spec.explain_values(self.model(x)[self.task].float(), self.info)
        return reduce(values, self.regions.to(values.device), self.spec.explain_sum)

    def rows(self, part: slice) -> "RegionScores":
        """The scores of the examples `part` of the batch: their regions only."""
        return RegionScores(self.model, self.task, self.spec, self.info, self.regions[part])


def reduce(values: Tensor, regions: Tensor, total: bool) -> Tensor:
    """(N, H, W, K) values → (N, K): summed (`total`) or averaged over each row's region (R, H, W), R = 1 or N."""
    if len(regions) not in (1, len(values)):
        raise RuntimeError(f"{len(regions)} regions for {len(values)} rows: explain one example per method call")
    weights = regions.to(values.dtype)
    if not total:
        weights = weights / weights.flatten(1).sum(1).clamp_min(1)[:, None, None]
    return torch.einsum("nhwk,nhw->nk", values, weights.expand(len(values), -1, -1))


def regional(model: nn.Module, task: Task, maps: Tensor, region: str | None,
             requested: str | None) -> tuple[RegionScores, Target, Tensor]:
    """From the task's raw maps of x: the scores to explain, each example's target output and its region (N, H, W).

    Without --target the kind picks the output from the region asked for (segmentation: the most frequent
    non-background class predicted there; normals: the axis the region faces most). The region `predicted` is the
    pixels predicted as that output where the kind predicts regions (segmentation, edges), else every pixel; an
    example where no pixel is predicted so gets every pixel, and its target name says so."""
    spec, info = task.spec, task.info
    values = spec.explain_values(maps.float(), info)
    n, height, width, outputs = values.shape
    given = parse_region(region, height, width)
    within = (given if given is not None else torch.ones(height, width, dtype=torch.bool)).to(values.device)
    within = within.expand(n, -1, -1)
    index = (spec.explain_default(values, within) if requested is None else
             _requested_index(task, outputs, requested, n).to(values.device))
    predicted = spec.explain_region(values, index) if given is None else None
    regions = within if predicted is None else predicted
    nowhere = regions.flatten(1).sum(1) == 0
    regions = torch.where(nowhere[:, None, None], torch.ones_like(regions), regions).cpu()
    names = [_name(spec, info, int(k), int(count), given, predicted is not None, bool(empty))
             for k, count, empty in zip(index.tolist(), regions.flatten(1).sum(1).tolist(), nowhere.tolist())]
    return RegionScores(model, task.name, spec, info, regions), Target(index.long().cpu(), names), regions


def _requested_index(task: Task, outputs: int, requested: str, n: int) -> Tensor:
    """--target as an output index for every example; a one-output kind takes none."""
    if outputs == 1:
        raise UserError(f"--target: task {task.name!r} ({task.kind}) has one output per pixel; give no --target")
    return torch.full((n,), class_index(task, requested), dtype=torch.long)


def parse_region(text: str | None, height: int, width: int) -> Tensor | None:
    """--region as an (H, W) bool mask: None for `predicted` (the default), all pixels, or a box of rows and
    columns (Python slices, end excluded) that must lie inside the picture and hold a pixel."""
    if text is None or text == PREDICTED:
        return None
    mask = torch.zeros(height, width, dtype=torch.bool)
    if text == ALL:
        return ~mask
    box = BOX.match(text.replace(" ", ""))
    r0, r1, c0, c1 = map(int, box.groups()) if box else (0, 0, 0, 0)
    if not box or not (r0 < r1 <= height and c0 < c1 <= width):
        raise UserError(f"--region: {text!r} is not a region of the {height}x{width} picture (expected predicted, "
                        f"all, or rows and columns R0:R1,C0:C1 with 0 <= R0 < R1 <= {height}, "
                        f"0 <= C0 < C1 <= {width})")
    mask[r0:r1, c0:c1] = True
    return mask


def _name(spec: Kind, info: TaskInfo, index: int, count: int, given: Tensor | None, predicted: bool,
          nowhere: bool) -> str:
    """"logit of 1 summed over its 37 predicted pixels", "standardized depth averaged over all 256 pixels", …"""
    how = "summed" if spec.explain_sum else "averaged"
    if nowhere:
        where = f"all {count} pixels (no pixel predicted as it)"
    elif predicted:
        where = f"its {count} predicted pixels"
    elif given is not None and count < given.numel():
        rows, cols = given.any(1).nonzero()[:, 0], given.any(0).nonzero()[:, 0]
        where = f"rows {int(rows[0])}:{int(rows[-1]) + 1}, columns {int(cols[0])}:{int(cols[-1]) + 1} ({count} pixels)"
    else:
        where = f"all {count} pixels"
    return f"{spec.explain_score(index, info)} {how} over {where}"
