"""train.precision: fp32 | bf16 | auto, the legacy `bf16` key of older run directories, and what autocast does."""

import pytest
import torch

from hydranet.config import load_config
from hydranet.train.precision import autocast, native_bf16, resolve_precision


def test_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    expected = "bf16" if (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()) else "fp32"
    assert resolve_precision("auto", cpu) == expected and native_bf16(cpu) == (expected == "bf16")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_runs_matmuls_in_the_chosen_precision(precision, dtype):
    layer = torch.nn.Linear(4, 3)
    with autocast(torch.device("cpu"), precision):
        out = layer(torch.ones(2, 4))
    assert out.dtype == dtype and layer.weight.dtype == torch.float32  # master weights stay fp32


def test_legacy_bf16_key_reads_as_precision():
    """config.yaml of runs written before `precision` existed must still load (evaluate, predict, resume)."""
    assert load_config({"train": {"bf16": True}}).train.precision == "bf16"
    assert load_config({"train": {"bf16": False}}).train.precision == "fp32"
    assert load_config("seed-cnn", ["train.precision=fp32"]).train.precision == "fp32"


def test_bf16_training_step_computes_in_bf16(tmp_path, one_thread):
    """A trunk conv sees bf16 under precision bf16 and float32 under fp32, in training and evaluation."""
    import hydranet as hn

    class Spy:
        def __init__(self):
            self.seen = set()

        def on_fit_start(self, trainer):
            conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
            conv.register_forward_hook(lambda m, i, o: self.seen.add(o.dtype))

    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        spy = Spy()
        exp = hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 120, "train.precision": precision})
        run = exp.fit(tmp_path / precision, callbacks=[spy])
        assert spy.seen == {dtype} and run.summary["precision"] == precision
