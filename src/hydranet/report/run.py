"""`hydranet report RUN|STUDY`: render every registered section of a run (or tuning study) folder into one
self-contained HTML page, written atomically to FOLDER/report.html or `-o`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import time
from pathlib import Path
from typing import Any

import hydranet
from hydranet.errors import UserError
from hydranet.files import write_text
# their import registers their sections
from hydranet.report import dense_sections, files_sections, split_sections, study_sections, text_sections  # noqa: F401
from hydranet.report.context import RUN_SECTIONS, STUDY_SECTIONS, RunContext, registered
from hydranet.report.page import Section, note, page
from hydranet.report.study_sections import StudyContext, is_study

FEATURE_SECTIONS = "report_sections"  # hydranet/<feature>/report_sections.py registers a feature's own sections


def load_feature_sections() -> None:
    """Import each feature package's `report_sections` module (explanations, calibration, fairness …), so a
    feature adds sections to every report by shipping that module, without a change here."""
    for module in pkgutil.iter_modules(hydranet.__path__):
        name = f"hydranet.{module.name}.{FEATURE_SECTIONS}"
        if module.ispkg and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def render(kind: str, context: Any) -> list[Section]:
    """Each registered section that has something to show; one whose files are missing or broken (a UserError
    naming the file) shows that line instead, so one bad file never costs the rest of the report."""
    sections = []
    for name, build in registered(kind):
        try:
            body = build(context)
        except UserError as err:
            body = note(str(err))
        if body is not None:
            sections.append(Section(id=name, title=build.report_title, body=body))
    return sections


def write_report(folder: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write the report of a run or study folder; returns where, its sections and the seconds it took."""
    started = time.perf_counter()
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected a run directory or a tuning study directory)")
    load_feature_sections()
    if is_study(folder):
        sections = render(STUDY_SECTIONS, StudyContext(folder))
        title, subtitle = f"Study {folder.name}", f"tuning study · {folder}"
    else:
        context = RunContext(folder)
        subtitle = _subtitle(context)  # reads the config first: its `plugins` may register sections too
        sections = render(RUN_SECTIONS, context)
        title = f"Run {folder.name}"
    target = Path(out) if out is not None else folder / "report.html"
    write_text(target, page(title, subtitle, sections))
    return {"path": target, "sections": [s.id for s in sections], "seconds": time.perf_counter() - started}


def _subtitle(context: RunContext) -> str:
    try:
        cfg = context.config
    except UserError:
        return str(context.path)
    tasks = ", ".join(f"{name} ({task.kind})" for name, task in cfg.tasks.items())
    return f"experiment {cfg.name} · tasks {tasks} · report of {time.strftime('%Y-%m-%d %H:%M')}"
