"""What report sections read: a run folder's files, read once and shared (`RunContext`), and the registry of
sections (`section`), so a feature adds its own section with a decorator and no change to the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch

from hydranet.data import build_dataset
from hydranet.data.info import TEXT
from hydranet.data.text import joined_texts
from hydranet.errors import UserError
from hydranet.registry import get, names, register
from hydranet.rundir import RunDir, read_file
from hydranet.tasks import Task
from hydranet.train import Run, load_run
from hydranet.train.evaluation import eval_settings, predict_batches

RUN_SECTIONS = "report_section"  # registry kind: sections of a run's report
STUDY_SECTIONS = "study_section"  # registry kind: sections of a tuning study's report


def section(name: str, title: str, order: int, kind: str = RUN_SECTIONS) -> Callable[[Callable], Callable]:
    """Decorator: register `fn(context) -> HTML fragment | None` (None: nothing to show, the section is left out)
    as a report section; sections appear by `order` (built-ins use multiples of 10, so a feature can slot in)."""
    def add(fn: Callable) -> Callable:
        fn.report_title, fn.report_order = title, order
        return register(kind, name)(fn)
    return add


def registered(kind: str) -> list[tuple[str, Callable]]:
    """(name, function) of every section of `kind`, in page order."""
    found = [(name, get(kind, name)) for name in names(kind)]
    return sorted(found, key=lambda item: (getattr(item[1], "report_order", 1000), item[0]))


def read_json(path: Path, expected: str) -> dict[str, Any]:
    """A JSON object from a run or study folder; anything wrong is one UserError naming the file."""
    def parse(text: str) -> dict[str, Any]:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
        return value
    return read_file(path, expected, parse)


@dataclass
class TestOutputs:
    """The model's raw outputs on the test split, with the targets and the inputs as stored (pixels, rows)."""

    tasks: dict[str, Task]
    outputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    stored: torch.Tensor  # images as the source read them (N, C, H, W), or encoded table rows (N, F)
    is_image: bool

    def labeled(self, name: str) -> torch.Tensor:
        return self.tasks[name].spec.labeled(self.targets[name])

    def losses(self, name: str) -> torch.Tensor:
        """Loss per test example (N,), as training computes it."""
        return self.tasks[name].example_losses(self.outputs[name], self.targets[name])

    def probabilities(self, name: str) -> torch.Tensor | None:
        """(N, K) class probabilities of a single-label task (softmax of class scores, or both sides of one
        logit); None for kinds without classes to be right or wrong about (regression, multilabel)."""
        task = self.tasks[name]
        if not task.spec.single_label:
            return None
        if task.spec.class_scores:
            return self.outputs[name].softmax(-1)
        positive = task.decode(self.outputs[name])
        return torch.stack([1 - positive, positive], -1)


class RunContext:
    """A run folder as report sections see it; each file is read (and the test split predicted) at most once."""

    def __init__(self, path: str | Path):
        self.run = RunDir.open(path)
        self.path = self.run.path

    @cached_property
    def config(self) -> Any:
        return self.run.read_config()

    @cached_property
    def summary(self) -> dict[str, Any]:
        return self.run.read_summary()

    @cached_property
    def history(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one object per epoch."""
        def parse(text: str) -> list[dict[str, Any]]:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not all(isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in rows):
                raise ValueError("a line that is not a JSON object with an integer epoch")
            return rows
        return read_file(self.run.metrics, "one JSON object per epoch", parse)

    @cached_property
    def dataset(self) -> Any:
        """The run's data rebuilt from its config (same seed, same split)."""
        return build_dataset(self.config)

    @cached_property
    def input_kind(self) -> str | None:
        """The run's kind of input (image, table, text, sequence) from data.json; None when it cannot be read (the
        sections that need the data say why)."""
        try:
            return self.run.read_data_info().get("kind", "table")
        except UserError:
            return None

    @cached_property
    def test_texts(self) -> list[str]:
        """A text run's test texts as read (its text columns joined as in training, not cut at max_length), in the
        test split's order; [] for other runs."""
        data = self.dataset
        if data.info.kind != TEXT or data.frame is None:
            return []
        rows = data.frame.iloc[data.index["test"].numpy()]
        columns = {name: rows[name].to_numpy(dtype=object) for name in data.info.features}
        return joined_texts(columns, data.info.features, data.info.separator, "test texts") if len(rows) else []

    @cached_property
    def loaded(self) -> Run:
        """The run's model with its final weights (eval mode), its tasks and data info. A pretraining run has a
        trunk and no heads: each section that needs the model says so in one line."""
        if self.run.trunk.exists() and not self.run.model.exists():
            raise UserError(f"{self.path}: a pretraining run (a trunk, no task heads): predictions and attributions "
                            f"need a run fine-tuned from it (hydranet train … --set model.init_from={self.path})")
        return load_run(self.path)

    @cached_property
    def test(self) -> TestOutputs:
        """One pass over the test split through the run's final weights."""
        loaded = self.loaded
        data = self.dataset
        if len(data.index["test"]) == 0:
            raise UserError(f"{self.path}: the run's test split is empty (data.split.test is 0)")
        split = data.split("test")
        outputs = {name: out.cpu() for name, out in
                   predict_batches(loaded.model, split["x"], *eval_settings(loaded.config.train)).items()}
        return TestOutputs(tasks=loaded.tasks, outputs=outputs, targets={n: split[n] for n in loaded.tasks},
                           stored=data.split("test", stored=True)["x"], is_image=data.info.is_image)
