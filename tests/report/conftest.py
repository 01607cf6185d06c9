"""Runs the report tests share: a small quickstart image run with attack results (trained once per session)."""

import pytest
import torch

import hydranet as hn
from hydranet.robust import attack_run, sweep_run
from hydranet.train import load_run

SMALL_QUICKSTART = {"train.epochs": 2, "train.progress": False, "train.threads": 1, "data.limit": 600,
                    "model.trunk.channels": [8, 16], "model.trunk.dense": [32]}


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    """Quickstart (digit, parity, ink: three kinds), small and short, with attack-fgsm.json and its sweep."""
    path, threads = tmp_path_factory.mktemp("report") / "run", torch.get_num_threads()
    hn.Experiment("quickstart", SMALL_QUICKSTART).fit(path)
    run = load_run(path)
    attack_run(run, "fgsm", "8/255", limit=40)
    sweep_run(run, "fgsm", ["0", "4/255", "8/255"], limit=40)
    torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="session")
def image_report(image_run):
    """The image run's report, written once: (write_report's result, the HTML)."""
    from hydranet.report.run import write_report

    result = write_report(image_run)
    return result, result["path"].read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def fair_run(tmp_path_factory):
    """A two-task table run with sensitive columns sex and race, audited (RUN/audit), explained with
    `hydranet explain --global` (RUN/explain/global-integrated_gradients) and given its baselines
    (RUN/baselines.json), as a user would before a report."""
    from hydranet.baseline import baselines
    from hydranet.config import load_config
    from hydranet.explain import Settings, explain_run
    from hydranet.fairness.audit import audit_run
    from hydranet.train import fit
    from tests.fairness.conftest import fair_config, write_fair_csv

    folder, threads = tmp_path_factory.mktemp("fair"), torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = fair_config(write_fair_csv(folder / "fair.csv"), fairness={"sensitive": ["sex", "race"], "bootstrap": 50})
    run = fit(load_config(cfg), folder / "run", progress=False)
    audit_run(run, out_dir=run.dir / "audit")
    explain_run(run, split="test", global_=True, n=40, settings=Settings(method="integrated_gradients"))
    baselines(run.dir)  # `hydranet baseline RUN`: baselines.json beside the run's own metrics
    torch.set_num_threads(threads)
    return run.dir


@pytest.fixture(scope="session")
def fair_report(fair_run):
    """The audited table run's report, written once: (write_report's result, the HTML)."""
    from hydranet.report.run import write_report

    result = write_report(fair_run)
    return result, result["path"].read_text(encoding="utf-8")
