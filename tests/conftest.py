"""Shared fixtures: a tiny two-task table, a CLI runner that returns (exit code, stdout, stderr)."""

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from hydranet.cli import main


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path_factory):
    """Decoded-image caches go to a temporary folder, never to ~/.cache."""
    monkeypatch.setenv("HYDRANET_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def one_thread():
    """Tiny runs are faster on one thread, and the shared machine's other core stays free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_csv(tmp_path):
    """A two-task table (class `kind` from x1, value `size` from x2), a categorical column and gaps."""
    return write_tiny_csv(tmp_path / "tiny.csv")


def write_tiny_csv(path):
    """tiny_csv's table at `path` (for fixtures of a wider scope)."""
    rng = np.random.default_rng(0)
    n = 240
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame({
        "x1": x1, "x2": x2,
        "color": rng.choice(["red", "green", "blue"], size=n),
        "kind": np.where(x1 > 0, "up", "down"),
        "size": 3 * x2 + 1,
    })
    frame.loc[::7, "size"] = np.nan  # some examples lack the regression label
    frame.loc[::11, "color"] = "?"
    frame.to_csv(path, index=False)
    return path


def tiny_table_config(path, **train):
    """A fast two-task experiment on tiny_csv, as a dict. In fp32: tests compare its predictions with hand-made
    forward passes, ONNX and other readers to within float32 rounding, and the default precision `auto` would
    run bf16 on CPUs that compute it natively."""
    return {
        "name": "tiny", "data": {"source": "csv", "path": str(path), "split": {"val": 0.2, "test": 0.2}},
        "tasks": {"kind": {"kind": "binary"}, "size": {"kind": "regression"}},
        "model": {"trunk": {"name": "mlp", "hidden": [16]}},
        "train": {"epochs": 3, "batch_size": 32, "progress": False, "precision": "fp32", **train},
    }


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """Run `hydranet ARGS…` in-process from tmp_path; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["hydranet", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


class StopAt:
    """A callback that interrupts (as Ctrl-C does) when epoch `epoch` (0-based) starts: the epoch before it is
    checkpointed by then."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_start(self, trainer):
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    """A tiny two-task text run (exportruns.train_text: a [CLS]-pooled transformer), trained and exported (to
    RUN/export) once for the export, serve and explain tests; a test may export it again (the same run)."""
    import hydranet as hn
    from tests.export.exportruns import train_text

    run_dir = train_text(tmp_path_factory.mktemp("text"))
    hn.load(run_dir).export()
    return run_dir
