"""PLR numerical embeddings: the formula on a hand case, shapes, and a run that reloads to the same predictions."""

import math

import pytest
import torch

from hydranet.api import load
from hydranet.config import validate
from hydranet.models.embeddings import PLR, PLROptions
from hydranet.models.trunks import MLP, MLPOptions
from hydranet.train import fit
from tests.conftest import tiny_table_config


def test_plr_formula_on_a_hand_case():
    """One feature, one frequency c = 0.25, x = 1: the periodic part is [cos π/2, sin π/2] = [0, 1], so with
    W = [[2], [3]] and b = [-1] the embedding is ReLU(2·0 + 3·1 - 1) = 2; x = -1 gives ReLU(0 - 3 - 1) = 0."""
    plr = PLR(1, PLROptions(frequencies=1, dim=1))
    with torch.no_grad():
        plr.frequencies.fill_(0.25)
        plr.weight.copy_(torch.tensor([[[2.0], [3.0]]]))
        plr.bias.fill_(-1.0)
    out = plr(torch.tensor([[1.0], [-1.0]]))
    assert out.shape == (2, 1)
    assert out[:, 0].tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    x = torch.tensor([[0.3]])
    assert plr(x).item() == pytest.approx(max(0.0, 2 * math.cos(0.15 * math.pi) + 3 * math.sin(0.15 * math.pi) - 1))


def test_plr_shapes_and_each_feature_its_own_weights():
    plr = PLR(5, PLROptions(frequencies=4, dim=3))
    assert plr(torch.randn(7, 5)).shape == (7, 15) and plr.out_dim == 15
    x = torch.randn(2, 5)
    changed = x.clone()
    changed[:, 2] += 1.0  # only feature 2's slice of the embedding may move
    moved = (plr(x) - plr(changed)).abs().view(2, 5, 3).sum(dim=(0, 2))
    assert moved[2] > 0 and moved[[0, 1, 3, 4]].sum() == 0


def test_mlp_front_end_feeds_the_first_layer():
    mlp = MLP(MLPOptions(hidden=[8], embedding="plr", plr={"frequencies": 2, "dim": 4}), (6,))
    assert mlp.layers[2].in_features == 24 and mlp(torch.randn(3, 6)).shape == (3, 8)


def test_a_run_with_plr_predicts_identically_after_loading(tiny_csv, tmp_path, one_thread):
    config = tiny_table_config(tiny_csv, epochs=1)
    config["model"]["trunk"] |= {"embedding": "plr", "plr": {"frequencies": 4, "dim": 4}}
    run = fit(validate(config), tmp_path / "run", progress=False)
    x = torch.randn(5, run.info.input_shape[0])
    reloaded = load(tmp_path / "run")
    assert torch.equal(reloaded.predict_raw(x)["size"], run.model.eval()(x)["size"])
