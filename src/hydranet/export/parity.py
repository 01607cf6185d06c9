"""Parity of an exported graph: ONNX Runtime (CPU) against the PyTorch model on up to 256 held-out examples,
at the whole set, batch 1 and an odd batch size (so a batch size fixed by tracing is caught), in float32. Texts and
sequences go to ONNX Runtime cut to each batch's longest example (so batch 1 runs every example at its own length),
to PyTorch padded to the trained length: the graph must be right at every length a caller may feed. A graph that
takes any height and width is also checked on the examples resized to another, odd size.

Outputs are compared as the heads give them (`Task.from_exported`): a depth map the graph gives in the data's
units is compared standardized, so the absolute tolerance does not depend on whether depths are in metres or
millimetres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hydranet.data import Dataset
from hydranet.errors import UserError
from hydranet.export.graph import ExportView, first_line

TOLERANCE = 1e-4  # max absolute difference per output element, fp32
EXAMPLES = 256
ODD_BATCH = 7  # differs from the traced batch (graph.EXAMPLE_BATCH) and divides 256 unevenly
PROVIDER = "CPUExecutionProvider"
OTHER_SIZE = (9, 5)  # added to a spatial graph's height and width: odd, so a size fixed by tracing is caught


def parity_examples(data: Dataset) -> tuple[str, Tensor]:
    """The first examples of the test split (else val, else train) as model inputs."""
    split = next((name for name in ("test", "val", "train") if len(data.index[name])), "train")
    index = data.index[split][:EXAMPLES]
    normalize = data.normalizer()
    x = data.x[index]
    return split, (normalize(x) if normalize is not None else x).contiguous()


def check_parity(path: Path, view: ExportView, x: Tensor, split: str) -> dict[str, Any]:
    """parity.json: the largest |ONNX Runtime − PyTorch| per task output over every batch size, and whether all
    stay within TOLERANCE."""
    import onnxruntime as ort  # lazy: an optional dependency (the export extra), checked by require_packages

    session = ort.InferenceSession(str(path), providers=[PROVIDER])
    sizes = sorted({len(x), 1, min(ODD_BATCH, len(x))}, reverse=True)
    worst = dict.fromkeys(view.tasks, 0.0)
    _compare(session, view, x, sizes, worst)
    pictures = [list(x.shape[2:])]
    if view.inputs.spatial:
        other = F.interpolate(x, size=[n + extra for n, extra in zip(x.shape[2:], OTHER_SIZE)], mode="bilinear")
        _compare(session, view, other.contiguous(), [len(x)], worst)
        pictures.append(list(other.shape[2:]))
    return {"passed": all(d <= TOLERANCE for d in worst.values()), "tolerance": TOLERANCE,
            "max_abs_diff": worst, "examples": len(x), "split": split, "batch_sizes": sizes,
            "image_sizes": pictures if x.dim() == 4 else [], "precision": "fp32", "provider": PROVIDER,
            "onnxruntime": ort.__version__, "torch": torch.__version__}


def _compare(session: Any, view: ExportView, x: Tensor, sizes: list[int], worst: dict[str, float]) -> None:
    """Run `x` through ONNX Runtime in batches of each size and PyTorch at once; the largest difference per task
    output goes into `worst`."""
    with torch.inference_mode():
        reference = [t.numpy() for t in view.eval()(*view.inputs.split(x))]
    for size in sizes:
        for start in range(0, len(x), size):
            got = _run(session, view.tasks, view.inputs.feeds(x[start:start + size]), size)
            for task, ours, theirs in zip(view.tasks, got, reference):
                raw = view.raw[task]
                worst[task] = max(worst[task], _max_abs_diff(raw(torch.from_numpy(ours)).numpy(),
                                                             raw(torch.from_numpy(theirs[start:start + size])).numpy()))


def _run(session, tasks: list[str], feeds: dict[str, np.ndarray], size: int) -> list[np.ndarray]:
    """The session's outputs; a graph ONNX Runtime refuses to run (a batch size or length fixed by tracing) is
    refused in one line, as a graph that computes something else is."""
    try:
        return session.run(list(tasks), feeds)
    except Exception as err:  # onnxruntime's errors share no importable base class
        raise UserError(f"export: ONNX Runtime cannot run the exported graph on a batch of {size} "
                        f"({first_line(err)}); nothing was written") from None


def _max_abs_diff(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Inf where either side is not finite or the shapes differ (an output mapped to the wrong head)."""
    if ours.shape != theirs.shape:
        return float("inf")
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    return float(diff.max()) if np.isfinite(diff).all() else float("inf")


def require_parity(parity: dict[str, Any]) -> None:
    """A graph that computes something else than the model is refused: one line naming the worst output."""
    if not parity["passed"]:
        task, diff = max(parity["max_abs_diff"].items(), key=lambda item: item[1])
        raise UserError(f"export: ONNX Runtime differs from PyTorch on output {task!r} by {diff:.3g} (tolerance "
                        f"{parity['tolerance']:g}, {parity['examples']} {parity['split']} examples); nothing was written")
