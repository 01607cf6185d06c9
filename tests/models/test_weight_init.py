"""model.weight_init: glorot draws Keras's Glorot-uniform weights and zero biases; default keeps each layer's own."""

import math

import torch
from torch import nn

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.models.weight_init import apply_weight_init
from hydranet.train.run import build_model_for


def keras_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.Flatten(),
                         nn.Linear(64 * 13 * 13, 64), nn.Linear(64, 10))


def test_glorot_matches_keras_limits_and_zero_biases():
    torch.manual_seed(0)
    model = apply_weight_init(keras_cnn(), "glorot")
    # Keras: limit = sqrt(6 / (fan_in + fan_out)), conv fans counted over the kernel's receptive field
    fans = {0: (3 * 9, 32 * 9), 3: (32 * 9, 64 * 9), 5: (64 * 13 * 13, 64), 6: (64, 10)}
    for index, (fan_in, fan_out) in fans.items():
        layer, limit = model[index], math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach().flatten()
        assert w.abs().max() <= limit
        assert w.abs().max() > 0.95 * limit  # uniform over the whole interval, not a narrower one
        assert abs(w.var().item() - limit ** 2 / 3) < 0.1 * limit ** 2 / 3  # variance of U(±limit)
        assert torch.count_nonzero(layer.bias) == 0


def test_default_leaves_pytorch_init():
    torch.manual_seed(0)
    expected = keras_cnn().state_dict()
    torch.manual_seed(0)
    model = apply_weight_init(keras_cnn(), "default")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_runs_build_their_model_with_the_configured_init():
    cfg = hn.Experiment("quickstart", {"model.weight_init": "glorot"}).config
    model, _ = build_model_for(cfg, build_dataset(cfg).info, torch.device("cpu"))
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(torch.count_nonzero(m.bias) == 0 for m in layers if m.bias is not None)
