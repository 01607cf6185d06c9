"""Calibration: ECE against a hand-computed case and an independent implementation, temperature scaling recovering a
known over-confidence, and `hydranet calibrate` on a run: written alone, applied by every reader of the run (predict,
evaluate, the ONNX export), and a broken calibration.json refused in one line."""

import hashlib
import json
import shutil

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

import hydranet as hn
from hydranet.calibrate import before_after, fit_temperature, labeled_part
from hydranet.config import TaskConfig
from hydranet.data import build_dataset
from hydranet.kinds import higher_is_better
from hydranet.kinds.calibration import expected_calibration_error
from hydranet.tasks import Task, TaskInfo
from hydranet.train import load_run
from tests.conftest import tiny_table_config
from tests.export.exportruns import table_frame, train_table

CALIBRATED = ["grade", "kind", "tags"]  # the classification, binary and multilabel tasks of train_table; size: regression


def make_task(kind: str, outputs: int = 1) -> Task:
    classes = [f"c{i}" for i in range(outputs)] if kind != "binary" else ["no", "yes"]
    return Task("t", TaskConfig(kind=kind), TaskInfo(kind=kind, outputs=outputs, classes=classes))


def reference_ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Guo et al.'s ECE written the plain way: a mask per bin (lower, upper]."""
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return ece


# --- ECE ------------------------------------------------------------------------------------------


def test_ece_of_a_hand_computed_case():
    # bin (0.867, 0.933]: 4 examples, confidence 0.9, accuracy 3/4; bin (0.533, 0.6]: 2 examples, 0.55 vs 1/2
    confidence = np.array([0.9, 0.9, 0.9, 0.9, 0.55, 0.55])
    correct = np.array([1, 1, 1, 0, 1, 0], dtype=bool)
    assert expected_calibration_error(confidence, correct) == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.05)
    assert expected_calibration_error(np.full(4, 0.75), np.array([1, 1, 1, 0], dtype=bool)) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 0], dtype=bool)) == pytest.approx(0.5)


def test_classification_ece_is_guo_et_al_on_the_labeled_examples():
    gen = torch.Generator().manual_seed(0)
    task = make_task("classification", 4)
    pred = torch.randn(500, 4, generator=gen) * 3
    target = torch.randint(0, 4, (500,), generator=gen)
    target[::9] = -1
    keep = target != -1
    probs = torch.softmax(pred[keep].double(), -1)
    confidence, correct = probs.max(-1).values.numpy(), (probs.argmax(-1) == target[keep]).numpy()
    assert task.metrics(pred, target)["ece"] == pytest.approx(reference_ece(confidence, correct), abs=1e-9)


def test_binary_ece_bins_the_probability_of_the_predicted_class():
    gen = torch.Generator().manual_seed(0)
    task = make_task("binary")
    logit = torch.randn(500, generator=gen) * 3
    target = torch.bernoulli(torch.full((500,), 0.4), generator=gen)
    target[::9] = float("nan")
    keep = ~target.isnan()
    p = torch.sigmoid(logit[keep].double())
    predicted = logit[keep] > 0
    confidence = torch.where(predicted, p, 1 - p).numpy()  # ≥ 1/2: the predicted class's probability
    correct = (predicted == (target[keep] > 0.5)).numpy()
    assert task.metrics(logit, target)["ece"] == pytest.approx(reference_ece(confidence, correct), abs=1e-9)


def test_ece_is_lower_is_better():
    assert not higher_is_better("val/label/ece")


# --- temperature scaling ---------------------------------------------------------------------------


def calibrated_problem(kind: str, n: int = 10000) -> tuple[Task, torch.Tensor, torch.Tensor]:
    """A task, logits z of a perfectly calibrated model (labels drawn from its own probabilities), and the labels."""
    gen = torch.Generator().manual_seed(0)
    if kind == "classification":
        z = torch.randn(n, 5, generator=gen) * 1.5
        return make_task(kind, 5), z, torch.multinomial(torch.softmax(z, -1), 1, generator=gen).squeeze(1)
    shape = (n, 3) if kind == "multilabel" else (n,)
    z = torch.randn(shape, generator=gen) * 2
    return make_task(kind, 3 if kind == "multilabel" else 1), z, torch.bernoulli(torch.sigmoid(z), generator=gen)


@pytest.mark.parametrize("kind", ["classification", "binary", "multilabel"])
def test_temperature_scaling_recovers_a_known_overconfidence(kind, one_thread):
    task, z, y = calibrated_problem(kind)
    overconfident = 3 * z
    temperature = fit_temperature(task, overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.05)
    scores = before_after(task, overconfident, y, temperature)
    assert scores["nll_after"] <= scores["nll_before"]
    if kind != "multilabel":  # multilabel reports no ECE
        assert scores["ece_after"] < 0.02 < 0.1 < scores["ece_before"]


def test_temperature_scaling_ignores_unlabeled_examples(one_thread):
    task, z, y = calibrated_problem("classification", 4000)
    y[::2] = -1
    garbage = z.clone()
    garbage[::2] = float("nan")  # a diverged output on an unlabeled example must not move T
    labeled_logits, labeled_y = labeled_part(task, 3 * garbage, y)
    assert len(labeled_y) == 2000
    assert fit_temperature(task, labeled_logits, labeled_y) == pytest.approx(fit_temperature(task, 3 * z[1::2], y[1::2]))


# --- a calibrated run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The four-kind table run of the export tests, and a copy of it calibrated through the Python API."""
    folder = tmp_path_factory.mktemp("calibration")
    plain = train_table(folder)
    calibrated = shutil.copytree(plain, folder / "calibrated")
    report = hn.load(calibrated).calibrate()
    return plain, calibrated, report


def file_hashes(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_calibrate_cli_writes_calibration_json_and_nothing_else(cli, runs, tmp_path):
    run = shutil.copytree(runs[0], tmp_path / "run")
    before = file_hashes(run)
    code, out, err = cli("calibrate", run)
    assert code == 0, err
    assert all(task in out for task in CALIBRATED) and "size" not in out and "ECE before" in out
    after = file_hashes(run)
    assert after.pop("calibration.json") and after == before
    report = json.loads((run / "calibration.json").read_text())
    assert sorted(report["tasks"]) == CALIBRATED
    assert {"ece_before", "ece_after", "nll_before", "nll_after"} <= set(report["tasks"]["kind"]["test"])
    # recalibrating replaces the file with the same temperatures: they are fitted on the uncalibrated outputs
    assert cli("calibrate", run)[0] == 0
    assert json.loads((run / "calibration.json").read_text()) == report == runs[2]


def test_every_reader_of_a_calibrated_run_divides_the_logits_by_t(runs):
    plain, calibrated, report = hn.load(runs[0]), hn.load(runs[1]), runs[2]
    temperatures = {task: entry["temperature"] for task, entry in report["tasks"].items()}
    assert calibrated.run.model.temperatures == temperatures and plain.run.model.temperatures == {}
    x = build_dataset(plain.config).split("test")["x"]
    raw, scaled = plain.predict_raw(x), calibrated.predict_raw(x)
    for task in raw:
        torch.testing.assert_close(scaled[task], raw[task] / temperatures.get(task, 1.0))
    frame = table_frame(50, seed=1)
    before, after = plain.predict(frame), calibrated.predict(frame)
    pd.testing.assert_series_equal(before["grade"], after["grade"])  # the argmax does not move
    assert ((before["kind_p(up)"] > 0.5) == (after["kind_p(up)"] > 0.5)).all()
    assert not np.allclose(before["kind_p(up)"], after["kind_p(up)"])  # the probabilities do
    metrics = calibrated.evaluate()
    for task in ("grade", "kind"):
        assert metrics[task]["accuracy"] == plain.evaluate()[task]["accuracy"]
        assert metrics[task]["ece"] == pytest.approx(report["tasks"][task]["test"]["ece_after"])


def test_a_run_without_calibration_json_is_unchanged(runs):
    run = load_run(runs[0])
    x = build_dataset(run.config).split("test")["x"]
    with torch.no_grad():
        features = run.model.trunk(x)
        expected = {task: head(features) for task, head in run.model.heads.items()}
        got = run.model(x)
    assert run.model.temperatures == {} and all(torch.equal(got[task], expected[task]) for task in expected)


def test_the_onnx_export_of_a_calibrated_run_includes_t(runs, tmp_path):
    result = hn.load(runs[1]).export(tmp_path / "export")
    assert result["passed"]
    x = build_dataset(load_run(runs[0]).config).split("test")["x"]
    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x.numpy()})))
    raw = hn.load(runs[0]).predict_raw(x)
    for task, entry in runs[2]["tasks"].items():
        np.testing.assert_allclose(got[task], (raw[task] / entry["temperature"]).numpy(), atol=1e-4, err_msg=task)


BROKEN = {
    "empty": "",
    "truncated": '{"tasks": {"kind": {"temp',
    "a list": "[]",
    "no tasks": "{}",
    "tasks a list": '{"tasks": []}',
    "T zero": '{"tasks": {"kind": {"temperature": 0}}}',
    "T negative": '{"tasks": {"kind": {"temperature": -1.5}}}',
    "T text": '{"tasks": {"kind": {"temperature": "2"}}}',
    "T boolean": '{"tasks": {"kind": {"temperature": true}}}',
    "T NaN": '{"tasks": {"kind": {"temperature": NaN}}}',
    "T missing": '{"tasks": {"kind": {}}}',
    "regression task": '{"tasks": {"size": {"temperature": 2.0}}}',
    "unknown task": '{"tasks": {"colour": {"temperature": 2.0}}}',
}


@pytest.mark.parametrize("content", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_calibration_json_is_one_line_naming_it(cli, runs, tmp_path, content):
    run = shutil.copytree(runs[0], tmp_path / "run")
    (run / "calibration.json").write_text(content)
    table_frame(5, seed=1).to_csv(tmp_path / "new.csv", index=False)
    for command in (("predict", run, tmp_path / "new.csv", "-o", tmp_path / "p.csv"), ("evaluate", run)):
        code, _, err = cli(*command)
        assert code == 2 and err.count("\n") == 1 and "calibration.json" in err and "Traceback" not in err, err
    assert not (tmp_path / "p.csv").exists()


def test_calibrate_replaces_a_broken_calibration_json(cli, runs, tmp_path):
    run = shutil.copytree(runs[0], tmp_path / "run")
    (run / "calibration.json").write_text(BROKEN["T zero"])
    code, _, err = cli("calibrate", run)
    assert code == 0, err
    assert json.loads((run / "calibration.json").read_text()) == runs[2]


def test_calibrate_refuses_a_run_without_a_val_split(cli, tiny_csv, tmp_path):
    config = tiny_table_config(tiny_csv, epochs=1)
    config["data"]["split"]["val"] = 0.0
    run = hn.Experiment(config).fit(tmp_path / "run").dir
    code, _, err = cli("calibrate", run)
    assert code == 2 and err.count("\n") == 1 and "data.split.val" in err, err
    assert not (run / "calibration.json").exists()
