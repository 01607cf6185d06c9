"""Sharing architectures: the contract every registered sharing meets, on every trunk and input it supports.

`factory(options, parts)` gives a HydraNet whose forward returns each task's prediction in its kind's shape;
`shared_parameters()` and the tasks' `task_parameters(t)` partition the model's parameters, no parameter is
private to two tasks, and every task's loss reaches the shared ones (what gradient balancers rely on); the
same seed builds the same model; a state dict reloads into a fresh one; bf16 autocast gives finite float32
losses. What a sharing cannot wire is a one-line UserError naming model.sharing and the trunk: cross-stitch on a
trunk without stages (nor an encoder-decoder's stage and decode), mmoe/cgc gates on token ids.
"""

import pytest
import torch

from hydranet import registry
from hydranet.config import ModelConfig
from hydranet.errors import UserError
from hydranet.models import build_model
from hydranet.train.precision import autocast
from tests.contracts.conftest import IMAGE_SHAPE, TABLE_SHAPE, same_tensors

NAMES = registry.names("sharing")
# Every trunk on images, and on the other input kinds it declares (`inputs` on its factory, else tables); small
# widths: many experts are built per model.
SMALL = {"mlp": {"hidden": [8]}, "cnn": {"channels": [4], "dense": [8]}, "resnet": {"channels": [4], "blocks": [1]},
         "unet": {"channels": [4, 8], "decoder": 8}, "transformer": {"width": 8, "heads": 2, "depth": 1},
         "gru": {"width": 8, "embedding": 8}, "lstm": {"width": 8, "embedding": 8}}
SEQUENCE_SHAPE = (5, 3)  # 5 steps of 2 features and the validity channel
SHAPES = {"image": IMAGE_SHAPE, "table": TABLE_SHAPE, "text": TABLE_SHAPE[:1], "sequence": SEQUENCE_SHAPE}
CASES = [pytest.param(trunk, kind, id=f"{trunk}-{kind}") for trunk in registry.names("trunk") for kind in SHAPES
         if kind == "image" or kind in getattr(registry.get("trunk", trunk), "inputs", ("table",))]
# What the built-in sharings refuse at build time: (sharing, trunk, input kind).
REFUSED = {*((s, t, "text") for s in ("mmoe", "cgc") for t in ("transformer", "gru", "lstm"))}  # gates on token ids


def example_inputs(kind: str, batch: dict) -> torch.Tensor:
    """6 examples of `kind`: the fixture's image or table batch, token ids or numeric sequences with trailing padding."""
    real = torch.arange(SEQUENCE_SHAPE[0])[None, :] < torch.tensor([5, 3, 1, 4, 2, 5])[:, None]  # (6, T)
    gen = torch.Generator().manual_seed(3)
    if kind == "text":
        return torch.randint(3, 259, (6, *SHAPES["text"]), generator=gen) * real
    if kind == "sequence":
        x = torch.randn(6, *SEQUENCE_SHAPE, generator=gen) * real[..., None]
        x[..., -1] = real.float()
        return x
    return batch["x"]


def config(name: str, trunk: str) -> ModelConfig:
    return ModelConfig(sharing=name, trunk={"name": trunk, **SMALL.get(trunk, {})})


def build(name: str, trunk: str, shape, tasks, seed: int = 0):
    """The model, or None where the trunk refuses the input shape; a sharing's own refusal must be a UserError."""
    torch.manual_seed(seed)
    try:
        return build_model(config(name, trunk), shape, tasks).train()
    except UserError as err:
        assert "\n" not in str(err) and str(err).startswith("model."), str(err)
        return None


def expected_shape(task, n: int) -> tuple[int, ...]:
    return (n,) if task.spec.squeeze else (n, task.info.outputs)


def ids(params) -> list[int]:
    return [id(p) for p in params]


@pytest.mark.parametrize("trunk, kind", CASES)
@pytest.mark.parametrize("name", NAMES)
def test_every_task_gets_its_prediction_shape(name, trunk, kind, tasks, image_batch, table_batch):
    shape = SHAPES[kind]
    if (name, trunk, kind) in REFUSED:
        with pytest.raises(UserError) as err:
            build_model(config(name, trunk), shape, tasks)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"model.sharing: {name} ") and repr(trunk) in message, message
        return
    model = build(name, trunk, shape, tasks)
    if model is None:
        return
    x = example_inputs(kind, image_batch if kind == "image" else table_batch)
    out = model(x)
    assert set(out) == set(tasks)
    for task_name, task in tasks.items():
        assert out[task_name].shape == expected_shape(task, len(x)) and torch.isfinite(out[task_name]).all()


@pytest.mark.parametrize("name", NAMES)
def test_shared_and_task_parameters_partition_the_model(name, tasks, image_batch):
    model = build(name, "mlp", IMAGE_SHAPE, tasks)
    shared = ids(model.shared_parameters())
    own = {t: ids(model.task_parameters(t)) for t in tasks}
    everything = ids(model.parameters())
    assert len(set(shared)) == len(shared) and all(len(set(p)) == len(p) for p in own.values())
    assert set(shared).union(*map(set, own.values())) == set(everything)  # shared ∪ private covers the model
    for task, params in own.items():
        assert not set(params) & set(shared), f"{task}: a parameter is both shared and private"
        for other, others in own.items():
            assert other == task or not set(params) & set(others), f"{task} and {other} share a private parameter"
    assert shared, "a sharing with nothing shared is not multi-task learning"
    out = model(image_batch["x"])
    for task in tasks:
        model.zero_grad(set_to_none=True)
        out[task].float().sum().backward(retain_graph=True)
        reached = {id(p) for p in model.parameters() if p.grad is not None}
        assert set(shared) <= reached and set(own[task]) <= reached
        others = [o for o in tasks if o != task and set(own[o]) & reached]
        assert not others, f"{task}'s loss reaches private parameters of {others}"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model(name, tasks, image_batch):
    a, b = build(name, "cnn", IMAGE_SHAPE, tasks, seed=5), build(name, "cnn", IMAGE_SHAPE, tasks, seed=5)
    assert same_tensors(a.state_dict(), b.state_dict())
    assert not same_tensors(a.state_dict(), build(name, "cnn", IMAGE_SHAPE, tasks, seed=6).state_dict())
    outs = a(image_batch["x"]), b(image_batch["x"])
    assert all(torch.equal(outs[0][t], outs[1][t]) for t in tasks)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, tasks, image_batch):
    trained, fresh = build(name, "cnn", IMAGE_SHAPE, tasks, seed=0), build(name, "cnn", IMAGE_SHAPE, tasks, seed=1)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)  # any learned parameter (cross-stitch units, gates) must travel with the state dict
    fresh.load_state_dict(trained.state_dict())
    a, b = trained.eval()(image_batch["x"]), fresh.eval()(image_batch["x"])
    assert all(torch.equal(a[t], b[t]) for t in tasks)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_gives_finite_float32_losses(name, tasks, image_batch):
    model = build(name, "cnn", IMAGE_SHAPE, tasks)
    with autocast(torch.device("cpu"), "bf16"):
        out = model(image_batch["x"])
    losses = {t: task.loss(out[t], image_batch[t]) for t, task in tasks.items()}  # what the trainer computes
    assert all(loss.dtype == torch.float32 and loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
