"""`hydranet report`: every section on an image run and a table run, self-contained HTML, what a missing or broken
file shows, a study folder, and sections that features register."""

import json
import re
import shutil
import sys

import numpy as np
import pytest

import hydranet
import hydranet as hn
from hydranet.kinds import higher_is_better
from hydranet.report.context import section
from hydranet.report.run import write_report
from hydranet.report.split_sections import expected_calibration_error
from hydranet.registry import _TABLES
from tests.conftest import tiny_table_config
from tests.tune.conftest import SEARCH

RUN_SECTIONS = ["overview", "data", "curves", "metrics", "confusion", "reliability", "roc_pr", "residuals",
                "highest_loss", "attributions", "balancing", "attacks"]
TABLE_SECTIONS = ["overview", "data", "curves", "metrics", "baselines", *RUN_SECTIONS[4:-1], "fairness"]  # fair_run


def section_body(html, name):
    """The HTML of one section (up to the next one)."""
    match = re.search(rf'<details open id="{name}">(.*?)</details>(?=<details open id=|</main>)', html, re.S)
    assert match, f"no section {name}"
    return match.group(1)


def test_an_image_run_gets_every_section_in_one_self_contained_page(image_report):
    result, html = image_report
    assert result["sections"] == RUN_SECTIONS
    assert not re.search(r'(src|href)="(?!data:|#)', html), "every image inline, every link an anchor"
    assert "<script" not in html and "@import" not in html and "url(" not in html
    for name in RUN_SECTIONS:
        assert f'href="#{name}"' in html  # the table of contents
    assert html.count('class="thumb"') == 3 * 8  # highest-loss thumbnails: three tasks, eight each
    assert "attack-fgsm.json" in section_body(html, "attacks") and "attack-fgsm-sweep.json" in section_body(html, "attacks")
    assert "ECE" in section_body(html, "reliability") and "gradient cosine" not in section_body(html, "metrics")
    attributions = section_body(html, "attributions")
    for task in ("digit", "parity", "ink"):  # one figure per task: input, IG and Grad-CAM rows
        assert f'alt="attributions of {task}"' in attributions
    assert "Integrated Gradients (50 steps" in attributions and "Grad-CAM" in attributions
    assert 'class="note"' not in attributions


def test_a_table_run_shows_missing_labels_rows_and_no_image_sections(tiny_csv, tmp_path, one_thread):
    path = tmp_path / "run"
    hn.Experiment(tiny_table_config(tiny_csv)).fit(path)
    result = write_report(path, tmp_path / "out" / "r.html")
    html = result["path"].read_text(encoding="utf-8")
    assert result["sections"] == [s for s in RUN_SECTIONS if s not in ("attacks",)]
    data = section_body(html, "data")
    assert "size · regression" in data and re.search(r'<td class="num">[1-9]\d*</td></tr>', data)  # every 7th size missing
    assert "<thead><tr><th>row</th><th>loss</th>" in section_body(html, "highest_loss")
    assert "class=\"thumb\"" not in html
    attributions = section_body(html, "attributions")
    assert "Integrated Gradients (50 steps from the mean train row) of 48 test rows" in attributions
    assert attributions.count("<img") == 1  # global importance, one panel per task
    assert "<h3>kind · top columns of 4 test rows</h3>" in attributions and "<h3>size · top columns" in attributions


def test_ece_matches_a_hand_computation():
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.15])
    correct = np.array([1, 0, 1, 1, 0, 0])
    # bins: 0.9–1.0 {2 examples: acc .5, conf .95}, 0.5–0.6 {3: acc 2/3, conf .55}, 0.1–0.2 {1: acc 0, conf .15}
    expected = 2 / 6 * 0.45 + 3 / 6 * abs(2 / 3 - 0.55) + 1 / 6 * 0.15
    ece, accuracy, _, counts = expected_calibration_error(confidence, correct)
    assert ece == pytest.approx(expected)
    assert counts.tolist() == [0, 1, 0, 0, 0, 3, 0, 0, 0, 2] and accuracy[9] == pytest.approx(0.5)


def test_missing_and_broken_files_become_a_line_in_their_section(image_run, tmp_path):
    """A report is for looking at a run as it is: each missing or broken file costs its section a note, never the
    report (and nothing in the run folder changes)."""
    run = tmp_path / "run"
    shutil.copytree(image_run, run)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "trunc')
    (run / "model.safetensors").unlink()
    (run / "attack-pgd.json").write_text("[1, 2]")
    (run / "summary.json").unlink()
    before = {p.name for p in run.iterdir()}
    html = write_report(run)["path"].read_text(encoding="utf-8")
    assert "metrics.jsonl: is corrupt or truncated" in section_body(html, "curves")
    assert "run has no model.safetensors" in section_body(html, "confusion")
    assert "attack-pgd.json: a JSON list, not an object" not in html  # read_file's words: see the next line
    assert "attack-pgd.json: is corrupt or truncated" in section_body(html, "attacks")
    assert "summary.json: missing" in section_body(html, "metrics")
    assert {p.name for p in run.iterdir()} == before | {"report.html"}


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "nope", "nope: not a folder (expected a run directory or a tuning study directory)"),
    (lambda tmp: tmp, "not a hydranet run directory (no config.yaml)"),
])
def test_a_folder_that_is_no_run_is_one_line_and_exit_2(cli, tmp_path, make, expected):
    code, _, err = cli("report", make(tmp_path))
    assert code == 2 and err.count("\n") == 1 and expected in err


def test_a_feature_registers_a_section_without_touching_the_report(image_run, tmp_path, monkeypatch):
    """Two built-in sections (to keep it fast) and a feature's two: ordered by `order`, None left out."""
    builtins = {name: _TABLES["report_section"][name] for name in ("overview", "metrics")}
    monkeypatch.setitem(_TABLES, "report_section", builtins)  # the registry is restored after the test
    section("explain_demo", "Attributions", order=15)(lambda ctx: f"<p>saw {ctx.path.name}</p>")
    section("nothing", "Empty", order=5)(lambda ctx: None)
    result = write_report(image_run, tmp_path / "r.html")
    assert result["sections"] == ["overview", "explain_demo", "metrics"]
    assert "<p>saw run</p>" in result["path"].read_text(encoding="utf-8")


def test_a_study_report_shows_trials_best_and_plots(cli, tiny_csv, tmp_path, one_thread):
    experiment = {**tiny_table_config(tiny_csv, epochs=1, threads=1), "search": SEARCH}
    hn.Experiment(experiment).tune(2, dir=tmp_path / "study", sampler="random", echo=lambda line: None)
    code, out, _ = cli("report", tmp_path / "study", "-o", tmp_path / "study.html")
    assert code == 0 and "3 sections" in out
    html = (tmp_path / "study.html").read_text(encoding="utf-8")
    assert [name for name in ("trials", "best", "study_plots") if f'id="{name}"' in html] == ["trials", "best", "study_plots"]
    assert "2 trials: 2 complete" in html and "<p>best trial " in html and "<pre># best trial" in html
    assert html.count("<img") >= 2 and not re.search(r'src="(?!data:)', html)


def test_a_feature_packages_report_sections_module_is_found(image_run, tmp_path, monkeypatch):
    """hydranet/<feature>/report_sections.py is imported by `hydranet report`: a feature ships it, nothing else."""
    feature = tmp_path / "pkg" / "demo_feature"
    feature.mkdir(parents=True)
    (feature / "__init__.py").write_text("")
    (feature / "report_sections.py").write_text(
        "from hydranet.report.context import section\n\n"
        "@section('demo', 'Demo', order=15)\ndef demo(ctx):\n    return '<p>from a feature</p>'\n")
    monkeypatch.setattr(hydranet, "__path__", [*hydranet.__path__, str(tmp_path / "pkg")])
    monkeypatch.setitem(_TABLES, "report_section", {"overview": _TABLES["report_section"]["overview"]})
    try:
        assert write_report(image_run, tmp_path / "r.html")["sections"] == ["overview", "demo"]
    finally:  # the imported demo package must not outlive the test
        for module in ("hydranet.demo_feature", "hydranet.demo_feature.report_sections"):
            sys.modules.pop(module, None)


def test_an_audited_table_run_shows_the_audit_and_the_saved_global_importance(fair_report):
    result, html = fair_report
    assert result["sections"] == TABLE_SECTIONS
    fairness = section_body(html, "fairness")
    assert "across the groups of <b>sex, race</b>; mitigation: <b>none</b>" in fairness
    assert "<th>summary</th><th>sex</th><th>race</th><th>sex×race</th>" in fairness  # a column per attribute
    assert re.search(r"<td>demographic parity difference</td><td>\d\.\d{3}  \[\d\.\d{3}, \d\.\d{3}\]</td>", fairness)
    assert "<h3>size · regression · not mitigated · 90 labelled</h3>" in fairness and "worst group mae" in fairness
    assert "warnings (small groups' numbers are unreliable)</summary><ul><li>race: group &#x27;C&#x27;" in fairness
    assert 'alt="audit per group"' in fairness  # audit.png
    attributions = section_body(html, "attributions")
    assert "read from explain/global-integrated_gradients/importance.csv" in attributions  # `hydranet explain --global`'s


def test_the_baselines_stand_beside_the_runs_own_test_metrics(fair_run, fair_report):
    """baselines.json's models as columns after the run's, on every test metric, with their fitting seconds."""
    saved = json.loads((fair_run / "baselines.json").read_text())
    body = section_body(fair_report[1], "baselines")
    booster = saved["booster"]
    assert f"<thead><tr><th>task</th><th>metric</th><th>run</th><th>{booster}</th><th>linear</th>" in body
    for task, fitted in saved["tasks"].items():
        for metric, value in saved["run"][task].items():
            arrow = "↑" if higher_is_better(metric) else "↓"
            cells = "".join(f'<td class="num">{v:.4g}</td>' for v in (value, fitted[booster][metric], fitted["linear"][metric]))
            assert f"<td>{task}</td><td>{metric} {arrow}</td>{cells}" in body, (task, metric)
        assert f"<td>{task}</td><td>fit seconds</td><td>—</td>" in body
    assert f"scored on the run's own {len(saved['test_rows'])} test rows" in body


def only_section(monkeypatch, name):
    """Keep one registered section (the test's), so a report is fast; the registry is restored after the test."""
    from hydranet.report.run import load_feature_sections

    load_feature_sections()
    monkeypatch.setitem(_TABLES, "report_section", {name: _TABLES["report_section"][name]})


@pytest.mark.parametrize("change, expected", [
    (lambda audit: shutil.rmtree(audit), "no audit in {run}/audit: `hydranet audit {run}` writes one (sensitive "
                                         "columns sex, race)"),
    (lambda audit: (audit / "audit.json").write_text('{"split": "test"}'),
     "{run}/audit/audit.json: not a result of `hydranet audit` (KeyError: &#x27;mitigation&#x27;); skipped"),
    (lambda audit: (audit / "audit.json").write_text('{"split": '), "{run}/audit/audit.json: is corrupt or truncated"),
])
def test_a_missing_or_broken_audit_is_one_line(fair_run, tmp_path, monkeypatch, change, expected):
    run = tmp_path / "run"
    shutil.copytree(fair_run, run)
    change(run / "audit")
    only_section(monkeypatch, "fairness")
    html = write_report(run, tmp_path / "r.html")["path"].read_text(encoding="utf-8")
    assert expected.format(run=run) in section_body(html, "fairness")


def test_no_audit_and_no_sensitive_columns_leave_the_fairness_section_out(image_run, tmp_path, monkeypatch):
    only_section(monkeypatch, "fairness")
    assert write_report(image_run, tmp_path / "r.html")["sections"] == []


def test_a_pretraining_runs_attributions_say_why_there_are_none(tmp_path, monkeypatch, one_thread):
    """A pretraining run keeps a trunk and no heads: the model's sections say so, not "did training finish?"."""
    run = hn.Experiment("quickstart", {"model.trunk.channels": [8], "model.trunk.dense": [16], "data.limit": 200,
                                       "train.epochs": 1, "ssl.method": "denoising"}).pretrain(tmp_path / "pre")
    only_section(monkeypatch, "attributions")
    html = write_report(run.dir, tmp_path / "r.html")["path"].read_text(encoding="utf-8")
    assert section_body(html, "attributions") == (
        f'<summary>Attributions (test)</summary><p class="note">{run.dir}: a pretraining run (a trunk, no task heads): '
        f"predictions and attributions need a run fine-tuned from it (hydranet train … --set model.init_from={run.dir})</p>")


def test_an_image_run_without_convolutions_gets_ig_and_a_line_for_grad_cam(tmp_path, monkeypatch, one_thread):
    run = hn.Experiment({"name": "flat", "data": {"source": "digits", "limit": 200}, "tasks": {"digit": {"kind": "classification"}},
                         "model": {"trunk": {"name": "mlp", "hidden": [16]}},
                         "train": {"epochs": 1, "progress": False}}).fit(tmp_path / "run")
    only_section(monkeypatch, "attributions")
    body = section_body(write_report(run.dir, tmp_path / "r.html")["path"].read_text(encoding="utf-8"), "attributions")
    assert body.count('alt="attributions of digit"') == 1
    assert "Grad-CAM of digit: --method gradcam: needs a convolutional trunk" in body
