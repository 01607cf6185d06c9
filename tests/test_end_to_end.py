"""Slow end-to-end checks on ../shared/data (pytest -m slow; CI runs them): the seed-cnn experiment, the
example and the benchmark script, each at a reduced size."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.csv.gz"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CIFAR.exists(), reason="needs ../shared/data")]


def test_seed_cnn_experiment(cli, tmp_path):
    code, _, err = cli("train", "seed-cnn", "--set", f"data.path={CIFAR}", "--set", "train.epochs=1",
                       "--set", "data.limit=6000", "--run-dir", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["params"] == 896 + 18_496 + 147_520 + 650  # the Keras model's parameter count
    assert summary["test"]["label"]["accuracy"] > 0.2  # well above chance (0.1) after one short epoch


def test_adult_experiment(cli, tmp_path):
    code, _, err = cli("train", "adult", "--set", f"data.path={ADULT}", "--set", "train.epochs=2",
                       "--run-dir", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["income"]["accuracy"] > 0.82 and summary["test"]["income"]["roc_auc"] > 0.87


def test_example_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_cnn.py"), "--epochs", "1", "--limit", "3000",
                          "--data", str(CIFAR)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "test accuracy" in out.stdout


def test_benchmark_prints_json(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed_cnn.py"), "--epochs", "1", "--limit", "3000",
                          "--batch-size", "256", "--no-fast", "--data", str(CIFAR)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.splitlines()[0])
    assert {"hydranet_img_s", "bare_img_s", "ratio", "hydranet_test_accuracy", "bare_test_accuracy"} <= set(row)


def test_cifar10_fast_benchmark_smoke(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cifar10_fast.py"), "--limit", "1500", "--set", "train.epochs=1",
                          "--data", str(CIFAR)], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["epochs_run"] == 1 and summary["target"] == 0.8 and 0.1 < summary["final_test_accuracy"] < 1


@pytest.mark.skipif(not (ROOT / "benchmarks" / ".venv-keras" / "bin" / "python").exists(),
                    reason="needs the Keras venv that benchmarks/vs_keras.py installs on first use")
def test_vs_keras_quick(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_keras.py"), "--quick", "--batch-sizes", "256",
                          "--data", str(CIFAR)], cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.splitlines()[0])
    assert row["ratio"] > 0 and row["keras_peak_rss_mib"] > 0 and row["hydranet_peak_rss_mib"] > 0
    assert 0 < row["keras_test_accuracy"] < 1 and 0 < row["hydranet_test_accuracy"] < 1
