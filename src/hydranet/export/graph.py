"""The run's model as an ONNX graph: its named inputs (export/inputs.py: `x`, or token ids and a mask, or values and a
mask) with a dynamic batch dimension (and sequence length; height and width where the trunk takes any picture size,
the `unet`), one named output per task.

torch.onnx's dynamo-based exporter (it needs onnxscript) traces the model with torch.export; a part it refuses
is named in the error by exporting the trunk and each head alone.
"""

from __future__ import annotations

import importlib
import io
import logging
import re
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.export.inputs import GraphInputs
from hydranet.models import HydraNet
from hydranet.tasks import Task
from hydranet.train.evaluation import forward_tta

OPSET = 20  # the exporter's native opset for torch 2.13: no version conversion, which can fail on some ops
PACKAGES = ("onnx", "onnxruntime", "onnxscript")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXAMPLE_BATCH = 2  # the traced batch (1 would be specialized); parity checks other sizes, so a baked-in one is caught


def require_packages() -> dict[str, str]:
    """The versions of the export's optional dependencies; a missing one is one line saying what to install."""
    versions, missing = {}, []
    for name in PACKAGES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"export: {', '.join(missing)} not installed; install the export extra: "
                        "pip install 'hydranet[export]'")
    return versions


class ExportView(nn.Module):
    """The model as `predict` runs it (its test-time augmentation included) on the graph's inputs, returning one
    tensor per task in `tasks` order: the exporter names outputs by position, so a tuple in a known order maps each
    name to its head. Each output is what `Task.exported` gives (depth maps in the data's units, unit normals; raw
    scores otherwise)."""

    def __init__(self, model: HydraNet, tasks: dict[str, Task], inputs: GraphInputs, tta: str = "none"):
        super().__init__()
        self.model, self.tasks, self.inputs, self.tta = model, list(tasks), inputs, tta
        self.outputs = {name: task.exported for name, task in tasks.items()}
        self.raw = {name: task.from_exported for name, task in tasks.items()}  # parity compares the heads' outputs

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = forward_tta(self.model, self.inputs.join(*inputs), self.tta)
        return tuple(self.outputs[task](outputs[task]) for task in self.tasks)


def any_size(model: HydraNet) -> bool:
    """Whether the model's graph can take any height and width: its trunk says every layer works at the picture's
    own size (`any_size`: the unet, and cross-stitch columns of unets). Others are traced at the run's size: a vector
    trunk's flatten fixes it, and the MMoE/CGC gates' adaptive pooling is exported for the traced size only."""
    return bool(getattr(model.trunk, "any_size", False))


def to_onnx(view: ExportView, example: Tensor) -> Any:
    """The ONNXProgram of `view` (in eval mode) traced on the first example (at the trained sequence length), its
    batch dimension and sequence length (or height and width, `GraphInputs.spatial`) left dynamic."""
    view.eval()
    traced = example[:1].expand(EXAMPLE_BATCH, *example.shape[1:]).contiguous()
    try:
        with _quiet():
            return torch.onnx.export(view, view.inputs.split(traced), dynamo=True, opset_version=OPSET,
                                     input_names=list(view.inputs.names), output_names=list(view.tasks),
                                     verbose=False, dynamic_shapes=(view.inputs.dynamic_shapes(),))
    except Exception as err:  # the exporter wraps torch.export's many error types in its own
        raise UserError(f"export: {failing_part(view.model, example)} cannot be exported to ONNX "
                        f"({first_line(err)})") from None


def failing_part(model: HydraNet, x: Tensor) -> str:
    """Trace the trunk, then each head on the trunk's features, alone: the first one torch.export refuses."""
    with torch.no_grad():
        features = model.trunk(x)
    parts = [("model.trunk", model.trunk, x)]
    for task, head in model.heads.items():
        parts.append((f"the head of task {task!r}", head, features[task] if isinstance(features, dict) else features))
    for name, module, inputs in parts:
        try:
            with _quiet():
                torch.export.export(module, (inputs,), strict=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception:
            return f"{name} ({type(module).__name__})"
    return "the model (its trunk and heads each export alone, not together)"


def first_line(err: BaseException) -> str:
    """The first line of the error's root cause (the exporter wraps torch.export's reason in a page of advice),
    without terminal colours, shortened to fit one line of output."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line.strip() for line in ANSI.sub("", str(err)).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "…"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, HydraNet's `features` attribute set during
    tracing, graphs printed on a failed trace): an export prints its own result, a refusal its one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
