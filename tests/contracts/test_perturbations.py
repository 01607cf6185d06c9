"""Perturbations (adversarial training that replaces the inputs): the contract every registered one meets.

`factory(options, adversarial_cfg, tasks, space)`, called `perturb(model, batch, loss_fn) → batch`: only `x`
changes, and stays a valid image (raw pixels in [0, 1]) within eps of the original in the configured norm
(L∞ or L2); parameters, their `.grad` and BatchNorm statistics are untouched and the model stays in train
mode; the same seed and epoch give the same inputs, so a resumed run replays the uninterrupted one; eps 0
changes nothing, the eps warm-up is honoured, and bf16 autocast around the call still gives float32 inputs.
"""

import pytest
import torch

from hydranet import registry
from hydranet.train.precision import autocast
from tests.contracts.conftest import (
    fake_trainer, make_adversarial, same, same_tensors, snapshot, start_epoch, through_checkpoint,
)

NAMES = registry.names("perturbation")
BALLS = [("linf", 0.1), ("l2", 0.5)]


def loss_fn(tasks):
    """The trainer's `loss_terms`: one loss per task on the model's predictions."""
    def terms(model, batch):
        preds = model(batch["x"])
        return {name: task.loss(preds[name], batch[name]) for name, task in tasks.items()}
    return terms


def perturbed(name, tasks, space, model, batch, epoch=0, **adversarial) -> torch.Tensor:
    """The x a fresh perturbation trains on in `epoch` (seed 0)."""
    perturb = make_adversarial("perturbation", name, tasks, space, **adversarial)
    start_epoch(perturb, fake_trainer(model, epoch))
    return perturb(model, batch, loss_fn(tasks))["x"]


def size(space, x_adv, x, norm) -> torch.Tensor:
    """Per-example size of the change in raw pixels (B,)."""
    delta = ((x_adv - x) * space.std).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("norm, eps", BALLS)
@pytest.mark.parametrize("name", NAMES)
def test_only_x_changes_and_stays_a_valid_image_within_eps(name, norm, eps, layout, tasks, space, make_model,
                                                           image_batch):
    """The trainer's image batches are channels_last by default (train.channels_last)."""
    model = make_model().to(memory_format=layout)
    image_batch["x"] = image_batch["x"].contiguous(memory_format=layout)
    perturb = make_adversarial("perturbation", name, tasks, space, norm=norm, eps=eps)
    start_epoch(perturb, fake_trainer(model))
    out = perturb(model, dict(image_batch), loss_fn(tasks))
    assert set(out) == set(image_batch)
    assert all(same(out[k], image_batch[k]) for k in image_batch if k != "x"), "labels changed"
    x_adv = out["x"]
    assert x_adv.shape == image_batch["x"].shape and x_adv.dtype == torch.float32 and not x_adv.requires_grad
    raw = x_adv * space.std + space.mean  # the model input itself must be an image, not only after clamping
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    sizes = size(space, x_adv, image_batch["x"], norm)
    assert sizes.max() <= eps + 1e-5 and sizes.max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_parameters_grads_batchnorm_statistics_and_mode_untouched(name, tasks, space, make_model, image_batch):
    model = make_model()
    model(image_batch["x"])  # BatchNorm statistics away from their initial values
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.5) if i % 2 else None  # a gradient being accumulated, or none yet
    before = snapshot(model)
    perturbed(name, tasks, space, model, image_batch)
    assert model.training
    assert same_tensors(before, snapshot(model)), "parameters or BatchNorm statistics changed"
    for i, p in enumerate(params):
        assert (p.grad is None) if i % 2 == 0 else torch.equal(p.grad, torch.full_like(p, 0.5))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_epoch_same_inputs(name, tasks, space, make_model, image_batch):
    model = make_model()
    a = perturbed(name, tasks, space, model, image_batch, epoch=1)
    b = perturbed(name, tasks, space, model, image_batch, epoch=1)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_resume_replays_the_next_epoch(name, tasks, space, make_model, image_batch, tmp_path):
    """Epochs 0 and 1 uninterrupted == epoch 0, checkpoint (its state, if any), a fresh one for epoch 1."""
    model = make_model()
    whole = make_adversarial("perturbation", name, tasks, space)
    outputs, state = [], None
    for epoch in (0, 1):
        start_epoch(whole, fake_trainer(model, epoch))
        outputs.append(whole(model, image_batch, loss_fn(tasks))["x"])
        if epoch == 0 and hasattr(whole, "state_dict"):
            state = through_checkpoint(whole.state_dict(), tmp_path / "state.safetensors")
    resumed = make_adversarial("perturbation", name, tasks, space)
    if state is not None:
        resumed.load_state_dict(state)
    start_epoch(resumed, fake_trainer(model, 1))
    assert torch.equal(resumed(model, image_batch, loss_fn(tasks))["x"], outputs[1])


@pytest.mark.parametrize("norm, eps", BALLS)
@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_around_the_call(name, norm, eps, tasks, space, make_model, image_batch):
    model = make_model()
    with autocast(torch.device("cpu"), "bf16"):
        x_adv = perturbed(name, tasks, space, model, image_batch, norm=norm, eps=eps)
    assert x_adv.dtype == torch.float32 and torch.isfinite(x_adv).all()
    raw = x_adv * space.std + space.mean
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert size(space, x_adv, image_batch["x"], norm).max() <= eps + 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_zero_eps_changes_nothing(name, tasks, space, make_model, image_batch):
    x_adv = perturbed(name, tasks, space, make_model(), image_batch, eps=0.0)
    assert torch.allclose(x_adv, image_batch["x"], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_eps_warmup_limits_the_first_epoch(name, tasks, space, make_model, image_batch):
    """adversarial.warmup_epochs 4: the first epoch's budget is eps/4, the fourth's the full eps."""
    model = make_model()
    first = perturbed(name, tasks, space, model, image_batch, epoch=0, eps=0.2, warmup_epochs=4)
    assert size(space, first, image_batch["x"], "linf").max() <= 0.05 + 1e-5
    later = perturbed(name, tasks, space, model, image_batch, epoch=3, eps=0.2, warmup_epochs=4)
    assert size(space, later, image_batch["x"], "linf").max() > 0.05 + 1e-3
