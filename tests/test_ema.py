"""Weight EMA: the average against hand-computed values, warm-up, and what the trainer evaluates, saves and resumes."""

import pytest
import torch
from torch import nn

import hydranet as hn
from hydranet.config import EMAConfig, NoOptions, load_config
from hydranet.data import build_dataset
from hydranet.mtl.equal import Equal
from hydranet.train.checkpoint import save_state
from hydranet.train.ema import WeightEMA, ema_decay, make_ema
from hydranet.train.lifecycle import load_checkpoint
from hydranet.train.run import build_model_for
from hydranet.train.trainer import Trainer
from tests.conftest import tiny_table_config


def _scalar_model(value: float) -> nn.Module:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(value)
    return model


def _feed(ema: WeightEMA, model: nn.Module, values: list[float]) -> list[float]:
    out = []
    for step, value in enumerate(values, start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].num_batches_tracked.fill_(step)
        ema.update(model, step)
        out.append(float(ema.module[0].weight))
    return out


def test_average_matches_hand_computation():
    model = _scalar_model(0.0)
    ema = WeightEMA(model, EMAConfig(decay=0.5, warmup=False))
    # avg ← 0.5·avg + 0.5·w from avg = 0: w = 2 → 1, w = 4 → 2.5, w = 8 → 5.25
    assert _feed(ema, model, [2.0, 4.0, 8.0]) == [1.0, 2.5, 5.25]
    assert int(ema.module[1].num_batches_tracked) == 3  # integer buffers are copied, not averaged
    assert float(model[0].weight.detach()) == 8.0  # the trained model is untouched


def test_every_k_steps_uses_decay_to_the_k():
    model = _scalar_model(0.0)
    ema = WeightEMA(model, EMAConfig(decay=0.5, every=2, warmup=False))
    # steps 1 and 3 skip; step 2: d = 0.25 → 0.75·4 = 3; step 4: 0.25·3 + 0.75·16 = 12.75
    assert _feed(ema, model, [2.0, 4.0, 8.0, 16.0]) == [0.0, 3.0, 3.0, 12.75]


def test_warmup_caps_the_decay():
    cfg = EMAConfig(decay=0.999)
    assert ema_decay(cfg, 0) == pytest.approx(0.1) and ema_decay(cfg, 1) == pytest.approx(2 / 11)
    assert ema_decay(cfg, 10**6) == pytest.approx(0.999)
    model = _scalar_model(0.0)
    ema = WeightEMA(model, cfg)
    # update 0: d = 0.1 → 0.9·10 = 9; update 1: d = 2/11 → 9·2/11 + 20·9/11
    assert _feed(ema, model, [10.0, 20.0]) == pytest.approx([9.0, 18 / 11 + 180 / 11])


def _trainer(cfg, data) -> Trainer:
    model, tasks = build_model_for(cfg, data.info, torch.device("cpu"))
    return Trainer(model, tasks, cfg, Equal(NoOptions(), tasks, 0), device=torch.device("cpu"),
                   callbacks=make_ema(model, cfg.train.ema))


@pytest.mark.parametrize("layout", ["component", "before"])
def test_resumed_run_ends_with_identical_average(tiny_csv, one_thread, layout):
    """Stop after epoch 1 with the checkpointed state, load it into a fresh trainer, finish: same weights; also
    from a checkpoint written before the average became a component (its state at the top level, "ema")."""
    cfg = load_config(tiny_table_config(tiny_csv, epochs=2, ema={"decay": 0.9}))
    data = build_dataset(cfg)
    whole = _trainer(cfg, data)
    whole.fit(data)

    checkpoint = tiny_csv.parent / "state.safetensors"

    class StopAfterOne:  # what the Checkpointer does, then stop as a kill would
        def on_epoch_end(self, trainer, record):
            state = trainer.state_dict()
            if layout == "before":
                state["ema"] = state["components"].pop("WeightEMA")
            save_state(checkpoint, state)
            trainer.should_stop = True

    first = _trainer(cfg, data)
    first.callbacks.append(StopAfterOne())
    first.fit(data)
    second = _trainer(cfg, data)
    second.load_state_dict(load_checkpoint(checkpoint))
    second.should_stop = False
    second.fit(data)
    for (name, a), b in zip(whole.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    # and the run ended with the average, not with the last trained weights
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), whole.eval_model.state_dict().values()))


def test_saved_model_and_summary_are_the_average(tmp_path, one_thread):
    """summary.json (scored in the trainer with the EMA) equals `evaluate` of the saved model.safetensors."""
    run = hn.Experiment("quickstart", {"train.epochs": 2, "data.limit": 300, "train.ema.decay": 0.8,
                                       "train.early_stopping.monitor": None}).fit(tmp_path / "run")
    again = hn.load(run.dir).evaluate("test")
    assert again["digit"]["loss"] == pytest.approx(run.summary["test"]["digit"]["loss"], rel=1e-5)
    assert run.history[-1]["val"] != run.history[0]["val"]
