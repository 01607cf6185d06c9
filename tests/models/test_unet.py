"""The unet trunk: a full-resolution feature map under hard sharing, dense conv heads and pooled image heads,
and every encoder and decoder parameter shared, i.e. reached by every task's loss."""

import pytest
import torch

from hydranet.config import TaskConfig, load_config
from hydranet.errors import UserError
from hydranet.kinds import TaskInfo
from hydranet.models import build_model
from hydranet.tasks import Task


def tasks() -> dict[str, Task]:
    infos = {"semantic": TaskInfo("segmentation", 4, classes=list("0123")), "depth": TaskInfo("depth", 1),
             "count": TaskInfo("classification", 3, classes=list("123"))}
    return {name: Task(name, TaskConfig(kind=info.kind), info) for name, info in infos.items()}


def model(shape=(3, 15, 15), **trunk):
    cfg = load_config("scenes-mtl", [f"model.trunk.{k}={v}" for k, v in trunk.items()])
    return build_model(cfg.model, shape, tasks())


def test_dense_heads_predict_at_the_input_resolution_and_image_heads_pool():
    net = model(channels="[8,16,32]", decoder=8)  # 15 → 8 → 4 and back: odd sides survive the upsampling
    out = net(torch.randn(2, 3, 15, 15))
    assert net.trunk(torch.randn(2, 3, 15, 15)).shape == (2, 8, 15, 15)
    assert out["semantic"].shape == (2, 15, 15, 4) and out["depth"].shape == (2, 15, 15) and out["count"].shape == (2, 3)


def test_every_encoder_and_decoder_parameter_is_shared_and_reached_by_every_task():
    net = model(channels="[8,16]", decoder=8)
    shared = net.shared_parameters()
    assert {id(p) for p in shared} == {id(p) for p in net.trunk.parameters()}
    assert {id(p) for p in net.trunk.laterals.parameters()} <= {id(p) for p in shared}  # the decoder too
    out = net(torch.randn(2, 3, 15, 15))
    for name, pred in out.items():
        grads = torch.autograd.grad(pred.float().square().mean(), shared, retain_graph=True, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name


def test_a_unet_needs_images():
    with pytest.raises(UserError, match="model.trunk.name: unet needs image inputs"):
        model(shape=(12,))


@pytest.mark.parametrize("sharing", ["mmoe", "cgc", "cross_stitch"])
def test_soft_sharings_give_every_task_its_own_map(sharing):
    """Gated experts and cross-stitch columns on unet: each task's heads read its own (B, D, H, W) map, dense heads
    predict per pixel, and every shared parameter (experts every gate routes to; every column and unit of cross-stitch,
    through the units) is reached by every task's loss."""
    cfg = load_config("scenes-mtl", ["model.trunk.channels=[4,8]", "model.trunk.decoder=4", f"model.sharing={sharing}"])
    net = build_model(cfg.model, (3, 9, 9), tasks())
    features = net.trunk(torch.randn(2, 3, 9, 9))
    assert set(features) == set(tasks()) and all(f.shape == (2, 4, 9, 9) for f in features.values())
    out = net(torch.randn(2, 3, 9, 9))
    assert out["semantic"].shape == (2, 9, 9, 4) and out["depth"].shape == (2, 9, 9) and out["count"].shape == (2, 3)
    shared = net.shared_parameters()
    for name, pred in out.items():
        grads = torch.autograd.grad(pred.float().square().mean(), shared, retain_graph=True, allow_unused=True)
        assert all(g is not None for g in grads), name


def test_cross_stitch_on_unet_mixes_the_columns_at_every_scale():
    """One unit after each encoder stage and one after the decoders; with identity units the columns are independent
    unets, so task t's map is exactly column t's own forward."""
    cfg = load_config("scenes-mtl", ["model.trunk.channels=[4,8,8]", "model.trunk.decoder=4", "model.sharing=cross_stitch"])
    net = build_model(cfg.model, (3, 9, 9), tasks()).eval()
    assert len(net.trunk.units) == 3 + 1
    with torch.no_grad():
        for unit in net.trunk.units:
            unit.copy_(torch.eye(3).flatten())
    x = torch.randn(2, 3, 9, 9)
    features = net.trunk(x)
    for t, name in enumerate(net.trunk.tasks):
        torch.testing.assert_close(features[name], net.trunk.columns[t](x))
