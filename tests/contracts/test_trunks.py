"""Trunks: the contract every registered trunk meets, with its default options.

`factory(options, input_shape)` gives an nn.Module with an int `out_dim` whose forward maps (B, *shape) to
(B, out_dim) on the input kinds it reads: images and/or tables, or (a factory declaring `inputs`, as sources do)
token ids of texts and numeric sequences with a last 0/1 validity channel. A trunk whose `feature_map` is true
(unet) gives a (B, out_dim, H, W) map at the input's resolution instead. What it does not support is a one-line
UserError naming model.trunk, never a crash; the same seed builds the same weights; a state dict reloads into
a fresh trunk; bf16 autocast, channels_last and batches of one work; `stages()`, if offered, compose to the
forward and hold the trunk's own parameters; `widths` options scale (narrower experts of mmoe and cgc).
"""

import pytest
import torch
from torch import nn

from hydranet import registry
from hydranet.errors import UserError
from hydranet.models import HydraNet
from hydranet.models.sharing.base import scaled
from hydranet.train.precision import autocast
from tests.contracts.conftest import default_options, same_tensors

NAMES = registry.names("trunk")
# label → (input kind, shape); a trunk is tried on the kinds it declares (`inputs` on its factory, else images and
# tables). Texts are (T,) token ids, id 0 padding; sequences (T, F + 1), the last channel 1 on real steps.
SHAPES = {"grey image": ("image", (1, 8, 8)), "colour image": ("image", (3, 8, 8)), "table": ("table", (7,)),
          "text": ("text", (7,)), "sequence": ("sequence", (6, 3))}
UNDECLARED = ("image", "table")
LENGTHS = (7, 5, 2, 1, 6, 3, 4, 7)  # real steps per example (the rest trailing padding, as the sources give it)


def reads(name: str) -> tuple[str, ...]:
    """The input kinds the trunk `name` declares it reads."""
    return tuple(getattr(registry.get("trunk", name), "inputs", UNDECLARED))


def build(name: str, shape, seed: int = 0, options=None) -> nn.Module | None:
    """The trunk on inputs of `shape` (None when it refuses them with a UserError, as image-only trunks do tables)."""
    torch.manual_seed(seed)
    try:
        return registry.get("trunk", name)(options or default_options("trunk", name), shape)
    except UserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("model.trunk"), message
        assert str(tuple(shape)) in message, message  # says what it got
        return None


def inputs(kind: str, shape, n: int = 4) -> torch.Tensor:
    """n examples of `kind`: floats for images and tables, token ids (≥ 3: no special ids) with trailing padding
    for texts, numbers with their validity channel and trailing padding for sequences."""
    gen = torch.Generator().manual_seed(2)
    lengths = torch.tensor([min(LENGTHS[i % len(LENGTHS)], shape[0]) for i in range(n)])
    real = torch.arange(shape[0])[None, :] < lengths[:, None]  # (n, T)
    if kind == "text":
        return torch.randint(3, 259, (n, *shape), generator=gen) * real
    x = torch.randn(n, *shape, generator=gen)
    if kind == "sequence":
        x = x * real[..., None]
        x[..., -1] = real.float()
    return x


def expected_shape(trunk: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """(B, out_dim) features, or (B, out_dim, H, W) for a trunk whose features are a map (dense tasks' heads)."""
    if getattr(trunk, "feature_map", False):
        return (len(x), trunk.out_dim, *x.shape[-2:])
    return (len(x), trunk.out_dim)


def supported(name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """label → (kind, shape) of the declared inputs the trunk builds on."""
    return {label: (kind, shape) for label, (kind, shape) in SHAPES.items()
            if kind in reads(name) and build(name, shape) is not None}


@pytest.mark.parametrize("name", NAMES)
def test_forward_gives_batch_by_out_dim_where_supported(name):
    assert supported(name), f"trunk {name!r} builds on none of the input kinds it reads ({', '.join(reads(name))})"
    for label, (kind, shape) in SHAPES.items():
        trunk = build(name, shape)  # any refusal, of a declared kind or not, is one line
        if trunk is None or kind not in reads(name):
            continue
        assert isinstance(trunk.out_dim, int) and trunk.out_dim > 0, label
        x = inputs(kind, shape)
        out = trunk(x)
        assert out.shape == expected_shape(trunk, x) and out.dtype == torch.float32 and torch.isfinite(out).all(), label


@pytest.mark.parametrize("name", NAMES)
def test_an_image_trunk_takes_both_channel_counts(name):
    """Images are grey or colour: a trunk that takes one takes the other."""
    kinds = supported(name)
    assert ("grey image" in kinds) == ("colour image" in kinds)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_and_outputs(name):
    for kind, shape in supported(name).values():
        a, b, other = build(name, shape, seed=3), build(name, shape, seed=3), build(name, shape, seed=4)
        assert same_tensors(a.state_dict(), b.state_dict())
        assert not same_tensors(a.state_dict(), other.state_dict())
        x = inputs(kind, shape)
        outs = []
        for trunk in (a, b):
            torch.manual_seed(7)  # train mode: the same dropout draws too
            outs.append(trunk(x))
        assert torch.equal(*outs)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    for kind, shape in supported(name).values():
        trained, fresh = build(name, shape, seed=0), build(name, shape, seed=1)
        trained(inputs(kind, shape, 8))  # train mode: BatchNorm statistics move away from their initial values
        fresh.load_state_dict(trained.state_dict())
        x = inputs(kind, shape)
        assert torch.equal(trained.eval()(x), fresh.eval()(x))


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward_is_finite(name):
    for kind, shape in supported(name).values():
        trunk = build(name, shape)
        x = inputs(kind, shape)
        with autocast(torch.device("cpu"), "bf16"):
            out = trunk(x)
        assert out.shape == expected_shape(trunk, x) and torch.isfinite(out.float()).all()
        out.float().sum().backward()
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trunk.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", NAMES)
def test_one_example_in_eval_mode_and_channels_last(name):
    """Prediction feeds single examples, and the trainer feeds images channels_last: same numbers either way."""
    for kind, shape in supported(name).values():
        trunk = build(name, shape).eval()
        x = inputs(kind, shape)
        with torch.no_grad():
            full = trunk(x)
            assert torch.allclose(trunk(x[:1]), full[:1], atol=1e-5)
            if len(shape) == 3:
                assert torch.allclose(trunk(x.contiguous(memory_format=torch.channels_last)), full, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_stages_compose_to_the_forward_and_hold_the_trunks_parameters(name):
    for kind, shape in supported(name).values():
        trunk = build(name, shape).eval()
        stages = getattr(trunk, "stages", None)
        assert not isinstance(stages, nn.Module), "`stages` is the stages() method: cross-stitch and train.freeze call it"
        if not callable(stages):
            continue  # optional: only cross-stitch and staged freezing need it
        parts = list(stages())
        assert parts and all(isinstance(p, nn.Module) for p in parts)
        x = h = inputs(kind, shape)
        with torch.no_grad():
            for part in parts:
                h = part(h)
            assert torch.allclose(h, trunk(x), atol=1e-6)
        own = {id(p) for p in trunk.parameters()}
        staged = [id(p) for part in parts for p in part.parameters()]
        assert set(staged) == own and len(staged) == len(own)  # each parameter in exactly one stage


@pytest.mark.parametrize("name", NAMES)
def test_width_options_scale_to_narrower_experts(name):
    options = default_options("trunk", name)
    if not getattr(type(options), "widths", ()):
        return  # no width options: experts are full copies
    for kind, shape in supported(name).values():
        full, half = build(name, shape), build(name, shape, options=scaled(options, 0.5))
        x = inputs(kind, shape)
        assert half is not None and half(x).shape == expected_shape(half, x)
        assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in full.parameters())


def test_a_batch_norm_trunk_trains_whatever_the_last_batch_holds():
    from hydranet.config import Config, NoOptions
    from hydranet.data.dataset import Dataset
    from hydranet.data.info import DataInfo
    from hydranet.train.trainer import Trainer
    from tests.contracts.conftest import make_problem

    tasks, targets = make_problem(9, ("digit",))
    cfg = Config(tasks={"digit": {}}, model={"trunk": {"name": "mlp", "hidden": [4], "batch_norm": True}},
                 train={"epochs": 1, "batch_size": 8, "progress": False})
    torch.manual_seed(0)
    trunk = registry.get("trunk", "mlp")(cfg.model.trunk.options, (3,))
    model = HydraNet(trunk, {"digit": tasks["digit"].head(trunk.out_dim)})
    data = Dataset(x=torch.randn(9, 3), targets=targets, index={"train": torch.arange(9), "val": torch.arange(0),
                   "test": torch.arange(0)}, info=DataInfo(kind="table", input_shape=(3,)))
    balancer = registry.get("balancer", "equal")(NoOptions(), tasks, 0)
    # 9 examples ≡ 1 mod 8: a last batch of one example, which BatchNorm1d refuses in train mode (data/batches.py
    # leaves such a batch out of the epoch)
    history = Trainer(model, tasks, cfg, balancer, device=torch.device("cpu")).fit(data)
    assert len(history) == 1 and all(torch.isfinite(p).all() for p in model.parameters())
