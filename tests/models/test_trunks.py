"""Trunks: output shapes and `out_dim`, the Keras CNN tutorial's parameter count, clear shape errors.

Factories are called directly (not through the registry) so these tests need nothing but the trunks.
"""

import pytest
import torch
from torch import nn

from hydranet.errors import UserError
from hydranet.models.trunks import CNNOptions, MLPOptions, ResNetOptions, cnn, mlp, resnet


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "factory,cfg,shape",
    [
        (mlp, MLPOptions(hidden=[16, 8], batch_norm=True, dropout=0.2), (30,)),
        (mlp, MLPOptions(hidden=[]), (1, 8, 8)),
        (cnn, CNNOptions(channels=[8, 16], dense=[12]), (3, 32, 32)),
        (cnn, CNNOptions(channels=[4], padding="valid", batch_norm=True, dropout=0.3, activation="gelu"), (1, 8, 8)),
        (cnn, CNNOptions(channels=[4, 8], dense=[]), (1, 8, 8)),
        (resnet, ResNetOptions(channels=[8, 16, 32], blocks=[1, 2, 1]), (3, 32, 32)),
        (resnet, ResNetOptions(channels=[8, 16, 32], blocks=[1, 1, 1], activation="silu"), (1, 8, 8)),
    ],
)
def test_output_shape_matches_out_dim(factory, cfg, shape):
    trunk = factory(cfg, shape)
    assert isinstance(trunk.out_dim, int)
    out = trunk(torch.randn(4, *shape))
    assert out.shape == (4, trunk.out_dim)
    params = list(trunk.parameters())  # an mlp without hidden layers is a parameter-free flatten
    if params:
        out.sum().backward()  # every parameter is on the path to the features
        assert all(p.grad is not None for p in params)


def test_mlp_out_dim_is_flattened_input_without_hidden_layers():
    assert mlp(MLPOptions(hidden=[]), (1, 8, 8)).out_dim == 64
    assert mlp(MLPOptions(hidden=[16, 8]), (30,)).out_dim == 8


def test_cnn_matches_keras_tutorial_parameter_count():
    """TensorFlow CNN tutorial: Conv2D(32,3) 896, Conv2D(64,3) 18,496, Dense(64) 147,520 on 32×32×3."""
    cfg = CNNOptions(channels=[32, 64], kernel_size=3, padding="valid", dense=[64])
    trunk = cnn(cfg, (3, 32, 32))
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in trunk.modules() if isinstance(m, torch.nn.Linear)]
    assert [n_params(m) for m in convs] == [896, 18_496]
    assert [n_params(m) for m in dense] == [147_520]
    assert dense[0].in_features == 6 * 6 * 64  # 32 → conv 30 → pool 15 → conv 13 → pool 6
    assert n_params(trunk) == 896 + 18_496 + 147_520
    assert trunk.out_dim == 64


@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_pooling_before_relu_is_the_textbook_order(batch_norm):
    """Conv → [BN] → MaxPool → ReLU gives the outputs and gradients of Conv → [BN] → ReLU → MaxPool."""
    torch.manual_seed(0)
    trunk = cnn(CNNOptions(channels=[4, 6], padding="valid", dense=[5], batch_norm=batch_norm), (3, 12, 12))
    layers = [m for m in trunk.features if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]  # the trunk's own weights
    per_conv = 2 if batch_norm else 1
    first, second = layers[:per_conv], layers[per_conv:]
    textbook = nn.Sequential(*first, nn.ReLU(), nn.MaxPool2d(2), *second, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), *trunk.dense)
    x = torch.randn(8, 3, 12, 12, requires_grad=True)
    ours, ref = trunk(x), textbook(x)
    assert torch.equal(ours, ref)
    grads = torch.autograd.grad(ours.square().sum(), [x, *trunk.parameters()])
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *trunk.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
    assert [type(m) for m in trunk.features][per_conv:per_conv + 2] == [nn.MaxPool2d, nn.ReLU]


def test_cnn_keeps_textbook_order_for_non_monotonic_activations():
    trunk = cnn(CNNOptions(channels=[4], dense=[], activation="gelu"), (3, 8, 8))
    assert [type(m) for m in trunk.features][1:3] == [torch.nn.GELU, torch.nn.MaxPool2d]
    assert len(trunk.stages()) == 1


def test_cnn_same_padding_keeps_spatial_size_until_pooling():
    trunk = cnn(CNNOptions(channels=[32, 64], padding="same", dense=[]), (3, 32, 32))
    assert trunk.out_dim == 8 * 8 * 64


@pytest.mark.parametrize("factory,name", [(cnn, "cnn"), (resnet, "resnet")])
def test_table_input_to_image_trunk_is_a_user_error(factory, name):
    cfg = CNNOptions(channels=[8, 16]) if name == "cnn" else ResNetOptions(channels=[8, 16], blocks=[1, 1])
    with pytest.raises(UserError, match=rf"model\.trunk\.name: {name} needs image inputs \(C, H, W\), got shape \(30,\)"):
        factory(cfg, (30,))


def test_cnn_too_small_input_is_a_user_error():
    with pytest.raises(UserError, match="model.trunk"):
        cnn(CNNOptions(channels=[8, 16, 32, 64], padding="valid"), (1, 8, 8))


def test_resnet_needs_one_block_count_per_stage():
    with pytest.raises(UserError, match="model.trunk.blocks"):
        resnet(ResNetOptions(channels=[8, 16], blocks=[1, 1, 1]), (3, 32, 32))


def test_resnet_downsamples_between_stages_and_pools_globally():
    trunk = resnet(ResNetOptions(channels=[8, 16, 32], blocks=[1, 1, 1]), (3, 32, 32))
    stem_and_blocks = torch.nn.Sequential(trunk.stem, trunk.blocks)
    assert stem_and_blocks(torch.randn(2, 3, 32, 32)).shape == (2, 32, 8, 8)
    assert trunk.out_dim == 32


@pytest.mark.parametrize(
    "factory,cfg,shape",
    [
        (mlp, MLPOptions(hidden=[16, 8], batch_norm=True, dropout=0.2), (30,)),
        (mlp, MLPOptions(hidden=[]), (1, 8, 8)),
        (cnn, CNNOptions(channels=[4, 8], dense=[12, 6], batch_norm=True, dropout=0.3), (1, 8, 8)),
        (cnn, CNNOptions(channels=[4, 8], dense=[]), (3, 8, 8)),
        (resnet, ResNetOptions(channels=[4, 8], blocks=[1, 2]), (3, 8, 8)),
    ],
)
def test_stages_compose_to_forward(factory, cfg, shape):
    """Cross-stitch runs a trunk stage by stage; the stages must be the trunk's own modules, in order."""
    trunk = factory(cfg, shape).eval()  # eval: dropout off, BatchNorm on running statistics
    stages = trunk.stages()
    x = torch.randn(4, *shape)
    h = x
    for stage in stages:
        h = stage(h)
    torch.testing.assert_close(h, trunk(x), rtol=0, atol=0)
    assert {id(p) for s in stages for p in s.parameters()} == {id(p) for p in trunk.parameters()}


def test_stages_end_where_cross_stitch_units_go():
    """Misra et al. stitch after each pooling and each fully connected layer: one stage for each."""
    assert len(cnn(CNNOptions(channels=[4, 8], dense=[12, 6]), (1, 8, 8)).stages()) == 4
    assert len(mlp(MLPOptions(hidden=[16, 8, 4]), (30,)).stages()) == 3
    assert len(resnet(ResNetOptions(channels=[4, 8], blocks=[1, 2]), (3, 8, 8)).stages()) == 4  # stem + 3 blocks
