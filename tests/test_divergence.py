"""A diverged training or pretraining: one error line that says what to try, the last good checkpoint left as it
was, run.json marked failed with the reason, and nothing of the diverged epoch saved as good."""

import json
import re

import pytest
import torch
import yaml

from hydranet.config import validate
from hydranet.errors import UserError
from hydranet.train import fit, resume
from hydranet.train.checkpoint import load_state

from tests.conftest import tiny_table_config

# SGD at lr 0.5 on the tiny table: the weights grow for a few epochs, then the loss overflows (epoch 4 here).
# The tests read the epoch from the message, so they only need it to be neither the first nor past the last.
EXPLODING = {"epochs": 8, "optimizer": {"name": "sgd", "lr": 0.5}, "threads": 1}
DIVERGED = re.compile(r"training diverged at epoch (\d+) \((train|val) loss (nan|-?inf)\): lower train\.optimizer\.lr "
                      r"\(now 0\.5\), add warm-up \(train\.schedule\.warmup\) or gradient clipping \(train\.grad_clip\), "
                      r"or check the data for extreme values, in a new run; (\S+) is marked failed and keeps its last "
                      r"good checkpoint, epoch (\d+) \(--resume would continue from it with the same settings and "
                      r"diverge again\)")


class LastCheckpoint:
    """Keeps the bytes of checkpoint/last.safetensors as they are when each epoch starts (the previous epoch's)."""

    def __init__(self, run_dir):
        self.path = run_dir / "checkpoint" / "last.safetensors"
        self.before: bytes | None = None

    def on_epoch_start(self, trainer) -> None:
        self.before = self.path.read_bytes() if self.path.exists() else None


def diverge(run_dir, callbacks=()) -> tuple[re.Match, str]:
    with pytest.raises(UserError) as err:
        fit(validate(tiny_table_config(run_dir.parent / "tiny.csv", **EXPLODING)), run_dir, progress=False,
            callbacks=callbacks)
    message = str(err.value)
    match = DIVERGED.fullmatch(message)
    assert match, message
    return match, message


def test_divergence_keeps_the_last_good_checkpoint_and_marks_the_run_failed(tiny_csv, tmp_path):
    run_dir = tmp_path / "run"
    snapshot = LastCheckpoint(run_dir)
    match, message = diverge(run_dir, [snapshot])
    epoch, good = int(match[1]), int(match[5])
    assert 2 <= epoch <= EXPLODING["epochs"] and good == epoch - 1 and match[4] == str(run_dir)
    last = run_dir / "checkpoint" / "last.safetensors"
    assert last.read_bytes() == snapshot.before  # the diverged epoch wrote nothing over it
    assert load_state(last)["epoch"] == good
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, good + 1))  # no record of the diverged epoch
    assert all(torch.isfinite(torch.tensor(r["train"]["loss"])) for r in records)
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "failed" and status["reason"] == message
    assert not (run_dir / "model.safetensors").exists() and not (run_dir / "summary.json").exists()

    # --resume continues from the last good checkpoint with the same settings, and so diverges the same way
    with pytest.raises(UserError) as again:
        resume(run_dir, progress=False)
    assert str(again.value) == message and last.read_bytes() == snapshot.before


def test_weights_broken_by_the_last_step_count_as_divergence(tiny_csv, tmp_path):
    """The epoch's mean loss was computed before the step that broke the weights: they are checked too."""

    class BreakWeights:
        ended = False

        def on_step_end(self, trainer, losses) -> None:
            if trainer.step == 2 * (trainer.total_steps // trainer.epochs):  # the last step of epoch 2
                next(trainer.model.parameters()).data.fill_(float("nan"))

        def on_fit_end(self, trainer) -> None:  # still called: the progress bar must stop before the error prints
            self.ended = True

    cfg = tiny_table_config(tiny_csv, epochs=3, threads=1)
    cfg["data"]["split"] = {"val": 0.0, "test": 0.2}  # no val loss that would notice
    with pytest.raises(UserError, match=r"^training diverged at epoch 2 \(weights nan or inf\).* epoch 1 \(--resume"):
        fit(validate(cfg), tmp_path / "run", progress=False, callbacks=[breaker := BreakWeights()])
    assert breaker.ended


def test_cli_prints_one_line_and_exits_2(cli, tiny_csv, tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_table_config(tiny_csv, threads=1)))
    code, out, err = cli("train", exp, "--set", "train.optimizer.lr=1e4", "--set", "train.optimizer.name=sgd",
                         "--run-dir", "run")
    assert code == 2
    assert err.startswith("error: training diverged at epoch 1 (train loss nan): lower train.optimizer.lr (now 10000)")
    assert err.endswith("run is marked failed and has no checkpoint yet\n") and err.count("\n") == 1, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_pretraining_divergence_is_caught_the_same_way(cli, tiny_csv, tmp_path):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_table_config(tiny_csv, threads=1, epochs=2)))
    code, out, err = cli("pretrain", exp, "--set", "ssl.method=denoising", "--set", "train.optimizer.lr=1e12",
                         "--set", "train.optimizer.name=sgd", "--run-dir", "pre", "-q")
    assert code == 2 and err.startswith("error: training diverged at epoch 1 (train loss "), err
    assert json.loads((tmp_path / "pre" / "run.json").read_text())["status"] == "failed"
