"""Extra training losses (registry kind `loss`, e.g. trades): the contract every registered one meets.

`factory(options, adversarial_cfg, tasks, space)`, called `loss(model, batch) → {name: loss}`: named scalar
float32 terms that never reuse a task's name (one dict holds task and extra terms), finite and in the graph
of the model's parameters; the call itself changes no parameter and no `.grad` (the trainer's backward
does); the same seed and epoch give the same terms, so a resumed run replays the uninterrupted one; terms
stay finite float32 under bf16 autocast; a method's `check_config`, if any, accepts a config it can train.
"""

import pytest
import torch

from hydranet import registry
from hydranet.config import Config
from hydranet.train.precision import autocast
from tests.contracts.conftest import RAW, fake_trainer, make_adversarial, start_epoch, through_checkpoint

NAMES = registry.names("loss")


def terms_of(name, tasks, space, model, batch, epoch=0, **adversarial) -> dict[str, torch.Tensor]:
    """The terms a fresh loss adds in `epoch` (seed 0)."""
    loss = make_adversarial("loss", name, tasks, space, **adversarial)
    start_epoch(loss, fake_trainer(model, epoch))
    return loss(model, batch)


def check_terms(terms: dict, tasks: dict) -> None:
    assert terms and all(isinstance(k, str) for k in terms)
    assert not set(terms) & set(tasks), "an extra term would overwrite a task's loss"
    for name, value in terms.items():
        assert value.dim() == 0 and value.dtype == torch.float32 and torch.isfinite(value), name


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", NAMES)
def test_named_finite_float32_terms_in_the_models_graph(name, norm, tasks, space, make_model, image_batch):
    model = make_model()
    terms = terms_of(name, tasks, space, model, image_batch, norm=norm, eps=0.1 if norm == "linf" else 0.5)
    check_terms(terms, tasks)
    sum(terms.values()).backward()
    grads = [p.grad for p in model.shared_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads), "the terms do not train the shared parameters"


@pytest.mark.parametrize("name", NAMES)
def test_the_call_leaves_parameters_and_grads_alone(name, tasks, space, make_model, image_batch):
    model = make_model()
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.5) if i % 2 else None
    before = [p.detach().clone() for p in params]
    terms_of(name, tasks, space, model, image_batch)
    assert model.training
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    for i, p in enumerate(params):
        assert (p.grad is None) if i % 2 == 0 else torch.equal(p.grad, torch.full_like(p, 0.5))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_epoch_same_terms(name, tasks, space, make_model, image_batch):
    model = make_model().eval()  # no BatchNorm update between the two calls
    a = terms_of(name, tasks, space, model, image_batch, epoch=1)
    b = terms_of(name, tasks, space, model, image_batch, epoch=1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_resume_replays_the_next_epoch(name, tasks, space, make_model, image_batch, tmp_path):
    """Epochs 0 and 1 uninterrupted == epoch 0, checkpoint (its state, if any), a fresh one for epoch 1."""
    model = make_model().eval()
    whole = make_adversarial("loss", name, tasks, space)
    outputs, state = [], None
    for epoch in (0, 1):
        start_epoch(whole, fake_trainer(model, epoch))
        outputs.append(whole(model, image_batch))
        if epoch == 0 and hasattr(whole, "state_dict"):
            state = through_checkpoint(whole.state_dict(), tmp_path / "state.safetensors")
    resumed = make_adversarial("loss", name, tasks, space)
    if state is not None:
        resumed.load_state_dict(state)
    start_epoch(resumed, fake_trainer(model, 1))
    again = resumed(model, image_batch)
    assert again.keys() == outputs[1].keys() and all(torch.equal(again[k], outputs[1][k]) for k in again)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_gives_finite_float32_terms(name, tasks, space, make_model, image_batch):
    model = make_model()
    with autocast(torch.device("cpu"), "bf16"):
        terms = terms_of(name, tasks, space, model, image_batch)
    check_terms(terms, tasks)
    sum(terms.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_check_config_accepts_the_contract_tasks(name):
    check = getattr(registry.get("loss", name), "check_config", None)
    if check is not None:
        check(Config(tasks={task: {"kind": kind} for task, (kind, _) in RAW.items()}, adversarial={"method": name}))
