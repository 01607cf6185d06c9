"""Knowledge distillation (`distill:`; Hinton, Vinyals & Dean 2015): trained teacher runs' outputs are soft targets,
one extra loss term `<task>@distill` per distilled task beside its label term; several teachers may split the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hydranet.config import Config
from hydranet.config.sections import DistillConfig
from hydranet.data import DataInfo, Dataset
from hydranet.data.dataset import weight_key
from hydranet.data.input_map import InputMap, input_map
from hydranet.errors import UserError
from hydranet.kinds import Kind, TaskInfo
from hydranet.kinds.masking import masked_mean
from hydranet.registry import register
from hydranet.rundir import RunDir
from hydranet.tasks import Task
from hydranet.train.precision import autocast
from hydranet.train.run import load_run
from hydranet.train.surface import RunParts

WHERE = "distill.teacher"


def distillation_terms(spec: Kind, student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """The teacher term per example (or per element for kinds without a distribution).

    Kinds with a predictive distribution (softmax, Bernoulli, independent Bernoullis) use Hinton et al.'s soft
    targets: T²·KL(p_teacher ‖ p_student) of the logits / T; T² keeps the gradient's size as T changes. A point
    prediction (regression) has no distribution to soften: its term is the squared distance to the teacher's
    output, in the standardized units both heads predict.
    """
    student, teacher = student.float(), teacher.float()
    if spec.divergence is None:
        return (student - teacher) ** 2
    return temperature ** 2 * spec.divergence(teacher / temperature, student / temperature)


# --- which teacher teaches which task, and whether it can ----------------------------------------------------------

def teacher_infos(runs: list[str]) -> dict[str, DataInfo]:
    """data.json of every teacher run (finished runs only); a run that cannot be read is named under distill.teacher."""
    infos = {}
    for path in dict.fromkeys(runs):
        try:
            run = RunDir.open(path)
            run.require(run.data, run.model)
            infos[path] = run.read_data_info(DataInfo.from_dict)
        except UserError as err:
            raise UserError(f"{WHERE}: {err}") from None
    return infos


def assign(teacher: str | list[str] | dict[str, str], tasks: list[str], infos: dict[str, DataInfo]) -> dict[str, str]:
    """task → the run that teaches it: one run teaches every task, a mapping names each task's run, and in a list
    each task goes to the one run that has it (two runs with one task would be a silent choice: refused)."""
    if isinstance(teacher, dict):
        pairs = dict(teacher)
    elif isinstance(teacher, str):
        pairs = {task: teacher for task in tasks}
    else:
        pairs = {}
        for task in tasks:
            having = [run for run in infos if task in infos[run].tasks]
            if len(having) != 1:
                which = " and ".join(having) if having else "no teacher run"
                raise UserError(f"{WHERE}: {which} {'have' if having else 'has'} task {task!r}; map each task to one "
                                f"run with distill.teacher: {{task: RUN}}")
            pairs[task] = having[0]
    for task, run in pairs.items():
        if task not in infos[run].tasks:
            raise UserError(f"{WHERE}: {run} has no task {task!r} (its tasks: {', '.join(infos[run].tasks)})")
    return pairs


def check_tasks(run: str, teacher: DataInfo, student: DataInfo, tasks: list[str]) -> None:
    """Refuse a teacher whose task is of another kind or has other classes than the student's, in one line."""
    for task in tasks:
        t, s = teacher.tasks[task], student.tasks[task]
        if t.kind != s.kind:
            raise UserError(f"{WHERE}: task {task!r} is {t.kind} in {run}, {s.kind} in the student")
        if (t.outputs, t.classes) != (s.outputs, s.classes):
            raise UserError(f"{WHERE}: task {task!r} has classes {t.classes} in {run}, {s.classes} in the student")


@dataclass
class Plan:
    """One teacher run: the student's tasks it teaches, and how it reads the student's inputs (None: as they are)."""

    path: str
    info: DataInfo
    tasks: list[str]
    inputs: InputMap | None


def plan(cfg: Config, student: DataInfo) -> list[Plan]:
    """Every teacher run with its tasks, each pair checked; [] when distillation is off."""
    teacher = cfg.distill.teacher
    if not teacher:
        return []
    runs = [teacher] if isinstance(teacher, str) else list(teacher.values() if isinstance(teacher, dict) else teacher)
    infos = teacher_infos(runs)
    by_run: dict[str, list[str]] = {}
    for task, run in assign(teacher, list(cfg.tasks), infos).items():
        by_run.setdefault(run, []).append(task)
    plans = []
    for run, tasks in by_run.items():
        check_tasks(run, infos[run], student, tasks)
        plans.append(Plan(run, infos[run], tasks, input_map(student, infos[run], f"{WHERE}: {run}")))
    return plans


# --- the extra loss --------------------------------------------------------------------------------------------------

def output_map(teacher: TaskInfo, student: TaskInfo) -> tuple[float, float]:
    """(scale, shift) of a teacher head's output into the student's: TaskInfo's mean and std standardize a regression
    target (0 and 1 for the kinds that standardize nothing), so z_s = (z_t·σ_t + μ_t − μ_s) / σ_s, and logits stay
    as they are."""
    return teacher.std / student.std, (teacher.mean - student.mean) / student.std


@dataclass
class Teacher:
    """A trained run's model, frozen in eval mode on the student's device, reading the student's inputs and
    answering in the student's units for the tasks it teaches."""

    model: nn.Module
    inputs: InputMap | None
    outputs: dict[str, tuple[float, float]]  # task → output_map

    @classmethod
    def load(cls, plan: Plan, student: DataInfo, device: torch.device) -> Teacher:
        """Raw logits (no calibration temperatures: distillation's own T softens them), no gradients."""
        model = load_run(plan.path, str(device), calibrated=False).model  # in eval mode
        outputs = {task: output_map(plan.info.tasks[task], student.tasks[task]) for task in plan.tasks}
        return cls(model.requires_grad_(False), None if plan.inputs is None else plan.inputs.to(device), outputs)

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        preds = self.model(x if self.inputs is None else self.inputs(x))
        return {task: preds[task].float() * scale + shift for task, (scale, shift) in self.outputs.items()}


class Distillation:
    """Extra loss (objective): for each distilled task, `<task>` = (1 − α)·its label loss and `<task>@distill` =
    α·the mean teacher term over every example of the batch, labelled or not (unlabelled examples still learn from
    the teacher), weighted by the batch's example weights where it has them. The label term is returned again,
    scaled, so it replaces the trainer's; any balancer then combines the terms as it combines any other.

    The student's outputs are the trainer's own forward pass of the step, kept by a forward hook (a second
    forward would double the student's cost and update BatchNorm statistics twice); the teachers run once per
    batch under no_grad, each teaching all its tasks from one forward pass.
    """

    def __init__(self, teachers: list[Teacher], tasks: dict[str, Task], options: DistillConfig):
        self.teachers, self.tasks, self.options = teachers, tasks, options
        self.device, self.precision = torch.device("cpu"), "fp32"
        self.seen: tuple[Tensor, dict[str, Tensor]] | None = None  # (input, outputs) of the step's first forward
        self.handle = None

    def on_fit_start(self, trainer) -> None:
        self.device, self.precision = trainer.device, trainer.precision
        self.handle = trainer.model.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple, outputs: dict[str, Tensor]) -> None:
        if module.training and self.seen is None:  # attacks run their forward passes in eval mode
            self.seen = (args[0], outputs)

    def on_step_end(self, trainer, losses) -> None:
        self.seen = None

    def on_fit_end(self, trainer) -> None:
        if self.handle is not None:
            self.handle.remove()
        self.seen = self.handle = None

    def student_outputs(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        """The trainer's outputs for `x` when the hook kept them, else a forward pass of its own."""
        seen, self.seen = self.seen, None
        if seen is not None and seen[0] is x:
            return seen[1]
        with autocast(self.device, self.precision):
            return model(x)

    @torch.no_grad()
    def teacher_outputs(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        with autocast(self.device, self.precision):
            for teacher in self.teachers:
                out.update(teacher(x))
        return out

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        student, teacher = self.student_outputs(model, batch["x"]), self.teacher_outputs(batch["x"])
        alpha, temperature = self.options.alpha, self.options.temperature
        terms = {}
        for name, soft in teacher.items():
            task, pred, weight = self.tasks[name], student[name].float(), batch.get(weight_key(name))
            per = distillation_terms(task.spec, pred, soft, temperature)
            terms[name] = (1 - alpha) * task.loss(pred, batch[name], weight)
            terms[f"{name}@distill"] = alpha * masked_mean(per, torch.ones_like(per, dtype=torch.bool), weight)
        return terms


@register("run_parts", "distill")
class DistillParts:
    """What `distill:` adds to a training run: the teachers are checked before the run directory exists and
    loaded when the trainer is assembled (again on a resume, from the paths in the run's config)."""

    @staticmethod
    def check(cfg: Config, data: Dataset) -> None:
        plan(cfg, data.info)

    @staticmethod
    def build(cfg: Config, tasks: dict[str, Task], data: Dataset, run: RunDir, device: torch.device) -> RunParts:
        plans = plan(cfg, data.info)
        if not plans:
            return RunParts()
        teachers = [Teacher.load(one, data.info, device) for one in plans]
        return RunParts(extra_losses=[Distillation(teachers, tasks, cfg.distill)])
