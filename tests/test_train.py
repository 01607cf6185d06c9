"""Trainer: schedules, optimizer groups, checkpoints, early stopping, and kill-and-resume equality."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hydranet import Experiment
from hydranet.config import OptimizerConfig, ScheduleConfig
from hydranet.files import read_tensors
from hydranet.train.checkpoint import load_state, save_state
from hydranet.train.optim import (
    build_optimizer,
    load_optimizer_state,
    lr_factor,
    param_groups,
)
from tests.conftest import tiny_table_config


def test_schedules():
    total = 100
    const = ScheduleConfig(name="constant", warmup=0.1)
    assert lr_factor(const, 0, total) == pytest.approx(0.1) and lr_factor(const, 9, total) == 1.0
    assert lr_factor(const, 50, total) == 1.0
    cos = ScheduleConfig(name="cosine")
    assert lr_factor(cos, 0, total) == 1.0 and lr_factor(cos, 50, total) == pytest.approx(0.5)
    assert lr_factor(cos, 100, total) == pytest.approx(0.0, abs=1e-12)
    one = ScheduleConfig(name="onecycle", warmup=0.2, min_lr=0.1)
    assert lr_factor(one, 19, total) == 1.0 and lr_factor(one, 100, total) == pytest.approx(0.1)
    assert lr_factor(one, 60, total) == pytest.approx(0.1 + 0.9 * 0.5)


def test_no_weight_decay_on_biases():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and [p.shape for p in decay["params"]] == [(4, 3)]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_state_roundtrip_keeps_int_keys_and_tuples(tmp_path):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "history": [{"a": 1.5}], "t": (1, 2), "none": None}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert set(back["optimizer"]["state"]) == {0, 1} and back["t"] == (1, 2) and back["none"] is None
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    torch.optim.AdamW(model.parameters()).load_state_dict(back["optimizer"])


def test_early_stopping_stops_and_restores_best(tmp_path, tiny_csv):
    cfg = tiny_table_config(tiny_csv, epochs=40, optimizer={"lr": 0.05})
    cfg["train"]["early_stopping"] = {"monitor": "val/size/mae", "patience": 2, "min_delta": 10.0}
    run = Experiment(cfg).fit(tmp_path / "run")
    # min_delta is huge, so nothing after epoch 1 counts as improvement: stop after 1 + patience epochs
    assert run.summary["epochs"] == 3
    first = run.history[0]["val"]["size"]["mae"]
    assert run.summary["val"]["size"]["mae"] == pytest.approx(first, rel=1e-5)  # weights of epoch 1 restored


def test_missing_labels_are_masked_not_dropped(tmp_path, tiny_csv):
    run = Experiment(tiny_table_config(tiny_csv, epochs=2)).fit(tmp_path / "run")
    assert math.isfinite(run.history[-1]["train"]["size"]["loss"])
    assert run.summary["test"]["kind"]["accuracy"] > 0


@pytest.mark.parametrize("options", [{"precision": "bf16"}, {"precision": "auto"}, {"channels_last": True, "grad_clip": 1.0},
                                     {"optimizer": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine"}}])
def test_training_options_run(tmp_path, options):
    run = Experiment("quickstart", {"train.epochs": 1, "data.limit": 300, "train.progress": False,
                                    **{f"train.{k}": v for k, v in options.items()}}).fit(tmp_path / "run")
    assert math.isfinite(run.history[0]["train"]["loss"])


def _train_cmd(run_dir, *extra):
    sets = ["train.epochs=5", "train.batch_size=8", "train.early_stopping.patience=2", "data.augment.flip=true"]
    args = [sys.executable, "-m", "hydranet.cli", "train", "-q", *extra]
    return args + [a for s in sets for a in ("--set", s)] + ["--run-dir", str(run_dir)]


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    """SIGKILL mid-epoch, resume, and end with bit-identical weights and the same metrics."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_train_cmd(full), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 900  # a bound, not a timing: on a loaded machine two epochs can take minutes
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.02)
    time.sleep(0.05)  # well inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "run.json").read_text())["status"] == "running", "run finished before the kill"
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < 5

    subprocess.run([sys.executable, "-m", "hydranet.cli", "train", "-q", "--resume", str(killed)], check=True, env=env,
                   capture_output=True)
    resumed, whole = read_tensors(killed / "model.safetensors")[0], read_tensors(full / "model.safetensors")[0]
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)  # the files
    # differ only in the run id they are stamped with
    strip = lambda path: [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in path.read_text().splitlines()]
    assert strip(killed / "metrics.jsonl") == strip(full / "metrics.jsonl")


def test_optimizer_state_comes_back_in_the_parameters_layout(tmp_path):
    """A channels_last conv's Adam moments are saved contiguous; loaded as such, the fused step would pair
    the wrong elements. After load_optimizer_state the step equals the uninterrupted one exactly."""
    def step_twice(resume: bool) -> torch.Tensor:
        conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(0))
        opt = build_optimizer(OptimizerConfig(name="adam", lr=0.1), [{"params": [conv.weight]}])
        for k in range(2):
            if k == 1 and resume:  # through a checkpoint file, as a resumed run does
                save_state(tmp_path / "opt.safetensors", opt.state_dict())
                opt = build_optimizer(OptimizerConfig(name="adam", lr=0.1), [{"params": [conv.weight]}])
                load_optimizer_state(opt, load_state(tmp_path / "opt.safetensors"))
            grad = torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(k + 1))
            conv.weight.grad = grad.contiguous(memory_format=torch.channels_last)
            opt.step()
        return conv.weight.detach()

    assert torch.equal(step_twice(resume=True), step_twice(resume=False))


def test_a_model_can_be_copied_right_after_a_step_on_its_shared_features(tmp_path, tiny_csv):
    """MGDA-UB reads the forward's shared features off the model; the trainer drops them after the backward, so a
    callback (or a user) can deepcopy the model between steps: a tensor of the autograd graph cannot be copied."""
    import copy

    class CopyAfterEachStep:
        copies = 0

        def on_step_end(self, trainer, *args):
            copy.deepcopy(trainer.model)
            CopyAfterEachStep.copies += 1

    cfg = tiny_table_config(tiny_csv, epochs=1)
    cfg["mtl"] = {"balancer": {"name": "mgda", "gradients": "representation"}}
    Experiment(cfg).fit(tmp_path / "run", callbacks=[CopyAfterEachStep()])
    assert CopyAfterEachStep.copies > 0
