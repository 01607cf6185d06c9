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


@pytest.mark.parametrize("op", ["matmul", "conv"])
def test_bf16_autocast_rounds_once_like_native_hardware(op):
    """bf16 autocast on this CPU rounds the inputs to bf16, takes exact products and fp32 sums, and rounds the result
    to bf16 once, which is what native bf16 units (AVX-512 BF16, AMX, tensor cores) are specified to do; the test
    checks the path the host runs (emulated on AVX2), not native units. The oracle sums in float64; fp32 summation order may move a result by at most one bf16 step (2**-7 relative)."""
    f, shapes = {"matmul": (torch.matmul, ([64, 300], [300, 32])),
                 "conv": (torch.nn.functional.conv2d, ([8, 3, 12, 12], [16, 3, 3, 3]))}[op]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(shape, generator=gen) for shape in shapes)
    with autocast(torch.device("cpu"), "bf16"):
        got = f(a, b)
    exact = f(a.bfloat16().double(), b.bfloat16().double())
    step = exact.abs() * 2 ** -7
    assert got.dtype == torch.bfloat16 and ((got.double() - exact).abs() <= step).all()
    assert (got == exact.bfloat16()).float().mean() > 0.99  # almost always the correctly rounded value


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


def test_default_is_auto_so_every_config_gets_native_bf16():
    """The default follows the hardware (docs/training.md, bf16 and accuracy: bf16 held on every experiment measured)."""
    assert load_config({}).train.precision == "auto"


def test_the_keras_example_trains_with_the_builtin_settings(monkeypatch):
    """examples/seed_cnn.py, written as a user translates the Keras tutorial, gets the built-in seed-cnn's config
    but for the weight init it does not ask for: the same precision, memory format, threads, batches and
    evaluation, hence its speed (it ran at half of it while only the built-in set precision auto)."""
    import runpy
    import sys
    from pathlib import Path

    import hydranet as hn

    class Captured(Exception):
        pass

    def capture(experiment, *args, **kwargs):
        raise Captured(experiment.config)

    monkeypatch.setattr(hn.Experiment, "fit", capture)
    monkeypatch.setattr(sys, "argv", ["seed_cnn.py"])
    with pytest.raises(Captured) as caught:
        runpy.run_path(str(Path(__file__).parents[1] / "examples" / "seed_cnn.py"))
    example, builtin = (flat(c.model_dump(mode="json")) for c in (caught.value.args[0], load_config("seed-cnn")))
    assert {k for k in example.keys() | builtin.keys() if example.get(k) != builtin.get(k)} == {"model.weight_init"}


def flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}"""
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out
