"""Knowledge distillation (`distill:`, `hydranet train --teacher`): the loss against Hinton et al.'s formula worked
by hand, a distilled run end to end (one teacher and one teacher per task), and the one-line refusals."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from hydranet.config import TaskConfig, load_config
from hydranet.data.tabular import TableEncoder
from hydranet.kinds import KINDS, TaskInfo
from hydranet.tasks import Task
from hydranet.train import fit
from hydranet.train.distill import Distillation, Teacher, distillation_terms, plan
from hydranet.train.run import load_run
from tests.conftest import tiny_table_config, write_tiny_csv


def softmax(logits, temperature):
    exps = [math.exp(v / temperature) for v in logits]
    return [e / sum(exps) for e in exps]


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_classification_term_is_t_squared_kl_of_softened_distributions():
    student, teacher, t = [1.0, 2.0, 0.0], [2.0, 0.0, 1.0], 2.0
    p, q = softmax(teacher, t), softmax(student, t)
    expected = t * t * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    got = distillation_terms(KINDS["classification"], torch.tensor([student]), torch.tensor([teacher]), t)
    assert got.tolist() == pytest.approx([expected], rel=1e-6)


def test_binary_term_is_the_two_class_bernoulli_version():
    student, teacher, t = 0.5, -1.5, 3.0
    p, q = sigmoid(teacher / t), sigmoid(student / t)
    expected = t * t * (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    got = distillation_terms(KINDS["binary"], torch.tensor([student]), torch.tensor([teacher]), t)
    assert got.tolist() == pytest.approx([expected], rel=1e-6)
    two_class = distillation_terms(KINDS["classification"], torch.tensor([[0.0, student]]),
                                   torch.tensor([[0.0, teacher]]), t)
    assert got.tolist() == pytest.approx(two_class.tolist(), rel=1e-6)  # a logit is a two-class softmax


def test_regression_term_is_the_squared_distance_whatever_the_temperature():
    got = distillation_terms(KINDS["regression"], torch.tensor([0.5, -1.0]), torch.tensor([1.5, -1.0]), 4.0)
    assert got.tolist() == [1.0, 0.0]


class Counting(nn.Module):
    """A two-task 'model' (class scores and a value) that counts its forward passes."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale, self.calls = nn.Parameter(torch.tensor(scale)), 0

    def forward(self, x):
        self.calls += 1
        return {"digit": self.scale * x, "ink": self.scale * x.sum(-1)}


def test_terms_weigh_labels_and_teacher_by_alpha_and_teach_unlabelled_examples():
    tasks = {"digit": Task("digit", TaskConfig(kind="classification"), TaskInfo("classification", 3, ["a", "b", "c"])),
             "ink": Task("ink", TaskConfig(kind="regression"), TaskInfo("regression", 1))}
    teacher = Teacher(Counting(2.0).requires_grad_(False).eval(), None, {"digit": (1.0, 0.0), "ink": (1.0, 0.0)})
    distill = Distillation([teacher], tasks, SimpleNamespace(alpha=0.25, temperature=2.0))
    student = Counting(1.0).train()
    distill.on_fit_start(SimpleNamespace(model=student, device=torch.device("cpu"), precision="fp32"))
    x = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    batch = {"x": x, "digit": torch.tensor([1, -1]), "ink": torch.tensor([float("nan"), float("nan")])}  # one label
    preds = student(x)  # the trainer's forward pass
    terms = distill(student, batch)
    assert student.calls == 1  # the hook handed the trainer's outputs over: no second student forward
    label_ce = tasks["digit"].loss(preds["digit"].detach(), batch["digit"])
    # the teacher term averages both examples, labelled or not
    soft = distillation_terms(tasks["digit"].spec, preds["digit"].detach(), 2 * x, 2.0).mean()
    terms = {name: term.detach() for name, term in terms.items()}
    assert float(terms["digit"]) == pytest.approx(0.75 * float(label_ce))
    assert float(terms["digit@distill"]) == pytest.approx(0.25 * float(soft))
    assert float(terms["ink"]) == 0.0 and float(terms["ink@distill"]) == pytest.approx(0.25 * float((x.sum(-1) ** 2).mean()))
    distill(student, batch)["digit@distill"].backward()
    assert student.scale.grad is not None and teacher.model.scale.grad is None  # the teacher stays frozen
    distill.on_fit_end(None)
    student(x)
    assert distill.seen is None  # the hook is gone with the fit


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, tiny_csv_module):
    """Three finished tiny teachers: both tasks (on another seed's split, so inputs and `size` were standardized with
    other statistics than the student's), `kind` only, `size` only."""
    root = tmp_path_factory.mktemp("teachers")
    base = tiny_table_config(tiny_csv_module, epochs=1, threads=1)
    both = fit(load_config({**base, "seed": 1}), root / "both", progress=False)  # another split: its own statistics
    single = {}
    for task in ("kind", "size"):
        features = {**base["data"], "features": ["x1", "x2", "color"]}  # else the other task's column is a feature
        cfg = {**base, "data": features, "tasks": {task: base["tasks"][task]}}
        single[task] = fit(load_config(cfg), root / task, progress=False).dir
    return SimpleNamespace(both=both.dir, kind=single["kind"], size=single["size"], root=root)


@pytest.fixture(scope="module")
def tiny_csv_module(tmp_path_factory):
    return write_tiny_csv(tmp_path_factory.mktemp("csv") / "tiny.csv")


def student_yaml(tmp_path, path, **extra) -> str:
    cfg = tiny_table_config(path, epochs=2, threads=1)
    cfg["model"]["trunk"]["hidden"] = [4]  # a narrower student
    exp = tmp_path / "student.yaml"
    exp.write_text(yaml.safe_dump({**cfg, **extra}))
    return str(exp)


def test_distilled_run_trains_saves_loads_evaluates_and_predicts(cli, tmp_path, teachers, tiny_csv_module):
    code, _, err = cli("train", student_yaml(tmp_path, tiny_csv_module), "--teacher", teachers.both, "--run-dir", "run", "-q")
    assert code == 0, err
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["distill"]["teacher"] == str(teachers.both)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"kind", "size", "kind@distill", "size@distill"} <= set(first["train"])
    check_teacher_reads_the_students_inputs(run, teachers.both, tiny_csv_module)
    code, _, err = cli("evaluate", run, "--split", "test")
    assert code == 0, err
    assert (run / "eval-test.json").exists()
    code, _, err = cli("predict", run, tiny_csv_module, "-o", "pred.csv")
    assert code == 0, err
    assert (tmp_path / "pred.csv").read_text().count("\n") == 241


def check_teacher_reads_the_students_inputs(student_run, teacher_run, csv):
    """The teacher, given rows as the student encodes them, answers as it does for rows it encodes itself."""
    student, teacher = load_run(student_run), load_run(teacher_run)
    frame = pd.read_csv(csv).head(20)
    own = {name: TableEncoder.from_state(info.encoder).transform(frame[info.features])
           for name, info in (("student", student.info), ("teacher", teacher.info))}
    assert not np.allclose(own["student"], own["teacher"])  # another split: other statistics
    [one] = plan(student.config, student.info)
    taught = Teacher.load(one, student.info, torch.device("cpu"))(torch.from_numpy(own["student"]))
    with torch.no_grad():
        direct = teacher.model(torch.from_numpy(own["teacher"]))
    assert torch.allclose(taught["kind"], direct["kind"], atol=1e-5)
    as_student = student.tasks["size"].decode(taught["size"])  # both in the original units
    assert torch.allclose(as_student, teacher.tasks["size"].decode(direct["size"]), atol=1e-4)


def test_one_teacher_per_task_into_one_student(cli, tmp_path, teachers, tiny_csv_module):
    code, _, err = cli("train", student_yaml(tmp_path, tiny_csv_module), "--teacher", teachers.kind,
                       "--teacher", teachers.size, "--run-dir", "run", "-q")
    assert code == 0, err
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"kind@distill", "size@distill"} <= set(first["train"])


def test_a_mapping_distills_only_the_tasks_it_names(cli, tmp_path, teachers, tiny_csv_module):
    exp = student_yaml(tmp_path, tiny_csv_module, distill={"teacher": {"kind": str(teachers.both)}, "alpha": 1.0})
    code, _, err = cli("train", exp, "--run-dir", "run", "-q")
    assert code == 0, err
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert "kind@distill" in first["train"] and "size@distill" not in first["train"]
    assert first["train"]["kind"]["loss"] == 0.0  # α = 1: the teacher alone


BAD = {
    "no task": (lambda t: {"teacher": {"size": str(t.kind)}}, "has no task 'size' (its tasks: kind)"),
    "nobody teaches": (lambda t: {"teacher": [str(t.kind)]}, "no teacher run has task 'size'"),
    "two teach": (lambda t: {"teacher": [str(t.kind), str(t.both)]}, "kind and "),
    "not a run": (lambda t: {"teacher": str(t.root)}, "distill.teacher: "),
    "unknown task": (lambda t: {"teacher": {"colour": str(t.kind)}}, "distill.teacher: 'colour' is not a task"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_teachers_are_one_line_errors_before_anything_is_written(cli, tmp_path, teachers, tiny_csv_module, case):
    make, message = BAD[case]
    code, _, err = cli("train", student_yaml(tmp_path, tiny_csv_module, distill=make(teachers)), "--run-dir", "run", "-q")
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_teacher_with_other_classes_or_inputs_is_refused(cli, tmp_path, teachers, tiny_csv_module):
    cfg = tiny_table_config(tiny_csv_module, epochs=1, threads=1)
    swapped = {**cfg, "tasks": {**cfg["tasks"], "kind": {"kind": "binary", "positive": "down"}}}
    fit(load_config(swapped), tmp_path / "swapped", progress=False)
    wider = {**cfg, "tasks": {"kind": cfg["tasks"]["kind"]}}  # reads `size` as a feature: the student's task
    fit(load_config(wider), tmp_path / "wider", progress=False)
    exp = student_yaml(tmp_path, tiny_csv_module)
    for teacher, message in (("swapped", "task 'kind' has classes ['up', 'down'] in swapped, ['down', 'up'] in the student"),
                             ("wider", "wider: reads feature 'size' as numeric; the student's data lacks it")):
        code, _, err = cli("train", exp, "--set", f"distill.teacher={{kind: {teacher}}}", "--run-dir", "run", "-q")
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
