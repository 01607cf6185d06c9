"""Self-supervised methods: the contract every registered one meets, on the inputs it reads (`inputs`: images and
tables unless it says otherwise; mlm reads texts).

`factory(options, trunk, views: ViewMaker)` gives an nn.Module, called `method(model, batch) → {name: loss}`:
named finite float32 scalars that train the trunk and the method's own parameters; the same seed gives the
same method and the same losses; its state dict reloads into a fresh one with the same next loss; one step,
checkpoint, next step == two uninterrupted steps (hooks included: BYOL's target follows in `on_step_end`);
with the run's precision bf16 the losses stay finite float32.
"""

import pytest
import torch

from hydranet import registry
from hydranet.config import SSLConfig
from hydranet.data.info import DataInfo
from hydranet.config import TextConfig
from hydranet.data.text import encode_texts, train_tokenizer
from hydranet.models.hydranet import HydraNet
from hydranet.models.sequence import TransformerOptions, transformer
from hydranet.models.trunks import CNNOptions, MLPOptions, cnn, mlp
from hydranet.ssl.views import ViewMaker
from tests.contracts.conftest import default_options, fake_trainer, start_epoch, through_checkpoint

NAMES = registry.names("ssl")
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "the bird sang", "cats and dogs and birds",
         "on the mat sat a cat", "in the park the dog ran far"]


def method_inputs(name: str) -> tuple[str, ...]:
    """The input kinds a method reads: its `inputs`, else images and tables."""
    return getattr(registry.get("ssl", name), "inputs", ("image", "table"))


CASES = [(name, kind) for name in NAMES for kind in method_inputs(name)]


@pytest.fixture
def inputs(image_batch, table_batch, image_info, table_info):
    """{kind: (batch, info)} for image, table and text: unlabeled batches (only x) and their data info."""
    tokenizer = train_tokenizer(TextConfig(vocab_size=300), TEXTS)
    text_info = DataInfo(kind="text", input_shape=(12,), tokenizer=tokenizer, max_length=12)
    return {"image": ({"x": image_batch["x"]}, image_info), "table": ({"x": table_batch["x"]}, table_info),
            "text": ({"x": encode_texts(tokenizer, TEXTS, 12)}, text_info)}


def trunk_model(info: DataInfo, seed: int = 0) -> HydraNet:
    """A trunk without heads, as pretraining trains it (BatchNorm included where the trunk has it)."""
    torch.manual_seed(seed)
    shape = tuple(info.input_shape)
    if info.kind == "text":
        # no dropout: its draws come from the global generator, which the trainer (not the method) seeds per epoch
        trunk = transformer(TransformerOptions(width=16, heads=2, depth=1, dropout=0.0, vocab_size=300), shape)
    elif len(shape) == 3:
        trunk = cnn(CNNOptions(channels=[4], dense=[8], batch_norm=True), shape)
    else:
        trunk = mlp(MLPOptions(hidden=[8], batch_norm=True), shape)
    return HydraNet(trunk, {}).train()


def make(name: str, model: HydraNet, info: DataInfo, seed: int = 0, precision: str = "fp32"):
    torch.manual_seed(seed + 100)
    views = ViewMaker(SSLConfig(), seed=0, precision=precision, info=info)
    return registry.get("ssl", name)(default_options("ssl", name), model.trunk, views).train()


def hook(method, name: str, *args) -> None:
    fn = getattr(method, name, None)
    if fn is not None:
        fn(*args)


def step(method, model, batch, trainer, lr: float = 0.1) -> dict[str, float]:
    """One training step as the trainer runs it: the losses, backward, SGD on the model and the method, hooks."""
    losses = method(model, batch)
    sum(losses.values()).backward()
    with torch.no_grad():
        for p in [*model.parameters(), *method.parameters()]:
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None
    trainer.step += 1
    hook(method, "on_step_end", trainer, losses)
    return {k: float(v.detach()) for k, v in losses.items()}


@pytest.mark.parametrize("name,kind", CASES)
def test_named_finite_float32_losses_that_train_trunk_and_method(name, kind, inputs):
    batch, info = inputs[kind]
    model = trunk_model(info)
    method = make(name, model, info)
    start_epoch(method, fake_trainer(model))
    losses = method(model, batch)
    assert losses and all(isinstance(k, str) for k in losses)
    for term, loss in losses.items():
        assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss), term
    sum(losses.values()).backward()
    trunk_grads = [p.grad for p in model.trunk.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in trunk_grads)
    assert any(g.abs().sum() > 0 for g in trunk_grads)
    own = [p for p in method.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in own), "a learnable part gets no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_losses(name, inputs):
    batch, info = inputs[method_inputs(name)[0]]
    results = []
    for _ in range(2):
        model = trunk_model(info, seed=3)
        method = make(name, model, info, seed=3)
        start_epoch(method, fake_trainer(model, epoch=1))
        results.append({k: v.detach() for k, v in method(model, batch).items()})
    assert results[0].keys() == results[1].keys() and all(torch.equal(results[0][k], results[1][k]) for k in results[0])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, inputs, tmp_path):
    batch, info = inputs[method_inputs(name)[0]]
    model = trunk_model(info)
    trained, fresh = make(name, model, info, seed=0), make(name, model, info, seed=1)
    trainer = fake_trainer(model)
    start_epoch(trained, trainer)
    step(trained, model, batch, trainer)
    fresh.load_state_dict(through_checkpoint(trained.state_dict(), tmp_path / "state.safetensors"))
    model.eval()  # BatchNorm fixed: both calls see the same trunk
    start_epoch(trained, fake_trainer(model, epoch=1))
    start_epoch(fresh, fake_trainer(model, epoch=1))
    a, b = trained.eval()(model, batch), fresh.eval()(model, batch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_resume_continues_as_the_uninterrupted_run(name, inputs, tmp_path):
    """Epoch 0 (one step), checkpoint of model and method, epoch 1 in a fresh process == epochs 0 and 1 at once."""
    batch, info = inputs[method_inputs(name)[0]]
    model = trunk_model(info)
    method = make(name, model, info)
    trainer = fake_trainer(model, total_steps=2)
    start_epoch(method, trainer)
    step(method, model, batch, trainer)
    state = {"model": model.state_dict(), "method": method.state_dict()}
    state = through_checkpoint(state, tmp_path / "state.safetensors")
    trainer.epoch = 1
    start_epoch(method, trainer)
    expected = step(method, model, batch, trainer)

    resumed_model = trunk_model(info, seed=1)
    resumed_model.load_state_dict(state["model"])
    resumed = make(name, resumed_model, info, seed=1)
    resumed.load_state_dict(state["method"])
    resumed_trainer = fake_trainer(resumed_model, epoch=1, total_steps=2, step=1)
    start_epoch(resumed, resumed_trainer)
    assert step(resumed, resumed_model, batch, resumed_trainer) == expected
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), resumed_model.state_dict().values()))
    assert all(torch.equal(p, q) for p, q in zip(method.state_dict().values(), resumed.state_dict().values()))


@pytest.mark.parametrize("name,kind", CASES)
def test_bf16_precision_gives_finite_float32_losses(name, kind, inputs):
    batch, info = inputs[kind]
    model = trunk_model(info)
    method = make(name, model, info, precision="bf16")
    start_epoch(method, fake_trainer(model))
    losses = method(model, batch)
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None or (p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all())
               for p in [*model.parameters(), *method.parameters()])
