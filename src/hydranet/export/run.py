"""`export_run`: a trained run → a folder a user without hydranet can predict from (model.onnx, preprocessing.json,
outputs.json, parity.json, predict_onnx.py), written whole or not at all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.export.graph import ExportView, any_size, require_packages, to_onnx
from hydranet.export.inputs import GraphInputs
from hydranet.export.parity import check_parity, parity_examples, require_parity
from hydranet.export.spec import TOKENIZER, outputs, preprocessing
from hydranet.files import atomic_folder, atomic_path, write_json, write_text
from hydranet.rundir import RunDir
from hydranet.train.run import Run

MODEL, PREPROCESSING, OUTPUTS, PARITY, SCRIPT = "model.onnx", "preprocessing.json", "outputs.json", "parity.json", "predict_onnx.py"
FILES = (MODEL, PREPROCESSING, OUTPUTS, PARITY, SCRIPT)  # in every export
OPTIONAL = (TOKENIZER,)  # in a text run's
STANDALONE = Path(__file__).with_name("standalone.py")  # the reference predictor, copied as predict_onnx.py


def export_run(run: Run, out: str | Path | None = None) -> dict[str, Any]:
    """Export `run` to `out` (default RUN/export) and return its parity report (parity.json, plus `folder`).

    The folder must be missing, empty, or a previous export of this same run, which is then replaced as a whole;
    anything else is refused, so no file of the user's is overwritten. Nothing is written when the exporter
    refuses a part of the model or ONNX Runtime disagrees with PyTorch.
    """
    steps = preprocessing(run.info)
    versions = require_packages()
    folder = Path(out) if out is not None else run.dir / "export"
    identity = RunDir.open(run.dir).identity()
    _check_folder(folder, identity)
    split, x = parity_examples(build_dataset(run.config))
    view = ExportView(run.model, run.tasks, GraphInputs.of(run.info, any_size(run.model)), run.config.train.eval_tta)
    start = time.perf_counter()
    program = to_onnx(view, x)
    seconds = round(time.perf_counter() - start, 3)
    with atomic_folder(folder) as staging:
        with atomic_path(staging / MODEL) as tmp:
            program.save(str(tmp))
        parity = {**check_parity(staging / MODEL, view, x, split), "onnx": versions["onnx"],
                  "onnxscript": versions["onnxscript"], "export_seconds": seconds}
        require_parity(parity)
        write_json(staging / PREPROCESSING, steps)
        write_json(staging / OUTPUTS, outputs(run.tasks, run.info, identity, view.inputs.spatial))
        write_json(staging / PARITY, parity)
        write_text(staging / SCRIPT, STANDALONE.read_text(encoding="utf-8"))
        if run.info.tokenizer is not None:
            write_text(staging / TOKENIZER, run.info.tokenizer)
    return {**parity, "folder": str(folder)}


def _check_folder(folder: Path, identity: str) -> None:
    """Refuse a file, or a folder holding anything but a previous export of the run with this identity."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder (-o needs a missing or empty folder)")
    held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not held:
        return
    others = [name for name in held if name not in FILES + OPTIONAL]
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise UserError(f"{folder}: holds other files ({shown}); an export needs a missing or empty folder, "
                        f"or a previous export of the same run, so nothing in it is overwritten")
    if export_identity(folder) != identity:
        raise UserError(f"{folder}: holds the export of another run; give another -o folder (nothing was overwritten)")


def export_identity(folder: Path) -> str | None:
    """The run identity an export folder recorded, or None when it has none (not an export, or a broken one)."""
    try:
        return json.loads((folder / OUTPUTS).read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return None
