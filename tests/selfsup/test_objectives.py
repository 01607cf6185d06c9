"""SSL building blocks against hand computations: NT-Xent, views, kNN vote, BYOL's EMA, denoising."""

import math

import pytest
import torch

from hydranet.config import SSLConfig
from hydranet.data import DataInfo
from hydranet.ssl.knn import knn_accuracy, knn_average
from hydranet.ssl.methods.byol import BYOL, BYOLOptions
from hydranet.ssl.methods.denoising import Denoising, DenoisingOptions
from hydranet.ssl.methods.simclr import nt_xent
from hydranet.ssl.views import ViewMaker, colour, crop_flip, scarf

TABLE = DataInfo("table", (4,))


def nt_xent_by_hand(z1, z2, tau):
    """The SimCLR paper's loss written out term by term with Python floats."""
    z = [[c / math.sqrt(sum(c * c for c in v)) for c in v] for v in [*z1.tolist(), *z2.tolist()]]
    n = len(z1)
    sim = lambda a, b: sum(x * y for x, y in zip(z[a], z[b])) / tau  # noqa: E731
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        denominator = sum(math.exp(sim(i, k)) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sim(i, positive)) / denominator)
    return total / (2 * n)


def test_nt_xent_matches_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    z2 = torch.tensor([[0.8, 0.3], [-0.2, 1.0], [2.0, 1.5]])
    for tau in (0.5, 0.1):
        assert float(nt_xent(z1, z2, tau)) == pytest.approx(nt_xent_by_hand(z1, z2, tau), rel=1e-5)
    # a perfect pair structure (views identical, others orthogonal) has a lower loss than a random one
    eye = torch.eye(3)
    assert float(nt_xent(eye, eye, 0.1)) < float(nt_xent(z1, z2, 0.1))


def test_crop_flip_mirrors_exactly_and_keeps_constants():
    x = torch.rand(16, 3, 8, 8)
    plain = crop_flip(x, 0.3, False, torch.Generator().manual_seed(0))
    flipped = crop_flip(x, 0.3, True, torch.Generator().manual_seed(0))  # same crops, plus a flip draw
    mirrored = torch.isclose(flipped, plain.flip(3), atol=1e-6).flatten(1).all(1)
    same = torch.isclose(flipped, plain, atol=1e-6).flatten(1).all(1)
    assert bool((mirrored | same).all()) and mirrored.any() and same.any() and not torch.allclose(plain, x)
    constant = torch.full((4, 1, 8, 8), 0.25)
    assert torch.allclose(crop_flip(constant, 0.2, True, torch.Generator().manual_seed(1)), constant)


def test_colour_off_is_identity_and_full_grey_is_luma():
    raw = torch.rand(5, 3, 4, 4)
    assert torch.equal(colour(raw, 0.0, 0.0, torch.Generator().manual_seed(0)), raw)
    grey = colour(raw, 0.0, 1.0, torch.Generator().manual_seed(0))
    luma = 0.299 * raw[:, 0] + 0.587 * raw[:, 1] + 0.114 * raw[:, 2]
    assert torch.allclose(grey, luma[:, None].expand_as(raw), atol=1e-6)
    jittered = colour(raw, 0.8, 0.0, torch.Generator().manual_seed(1))
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.equal(jittered, raw)


def test_scarf_replaces_with_values_of_the_same_column():
    x = torch.arange(40.0).view(8, 5)  # column j holds j, j+5, …: every value identifies its column
    assert torch.equal(scarf(x, 0.0, torch.Generator().manual_seed(0)), x)
    corrupted = scarf(x, 0.99, torch.Generator().manual_seed(0))
    assert torch.equal(corrupted.remainder(5), x.remainder(5)) and not torch.equal(corrupted, x)


def test_knn_weighted_vote_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    values = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # one-hot classes 0, 0, 1
    query = torch.tensor([[0.1, 1.0]])
    sims = torch.nn.functional.normalize(bank, dim=1) @ torch.nn.functional.normalize(query, dim=1).T
    top = sims.squeeze(1).topk(2)
    w = (top.values / 0.07).exp()
    expected = (w[:, None] * values[top.indices]).sum(0) / w.sum()
    assert torch.allclose(knn_average(bank, values, query, k=2), expected[None], atol=1e-6)
    labels = torch.tensor([0, 0, 1])
    assert knn_accuracy(bank, labels, query, torch.tensor([1]), k=1, classes=2) == 1.0
    assert knn_accuracy(bank, torch.tensor([0, 0, -1]), query, torch.tensor([1]), k=1, classes=2) == 0.0  # unlabeled bank row unused


class Trunk(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 3)
        self.out_dim = 3

    def forward(self, x):
        return self.net(x)


def test_byol_target_is_an_ema_of_the_online_network():
    trunk = Trunk()
    byol = BYOL(BYOLOptions(tau=0.9, projection_hidden=8, projection_dim=2), trunk, ViewMaker(SSLConfig(), 0, "fp32", TABLE))
    assert byol.tau(0, 10) == pytest.approx(0.9) and byol.tau(10, 10) == pytest.approx(1.0)
    with torch.no_grad():
        trunk.net.weight.add_(1.0)
    before = byol.target["trunk"].net.weight.clone()
    trainer = type("T", (), {"step": 5, "total_steps": 10, "model": type("M", (), {"trunk": trunk})()})()
    byol.on_step_end(trainer, {})
    tau = byol.tau(5, 10)
    assert torch.allclose(byol.target["trunk"].net.weight, tau * before + (1 - tau) * trunk.net.weight)
    assert not any(p.requires_grad for p in byol.target.parameters())
    x = torch.randn(16, 4)
    loss = byol(type("M", (), {"trunk": trunk})(), {"x": x})["byol"]
    loss.backward()
    assert trunk.net.weight.grad is not None and byol.target["trunk"].net.weight.grad is None
    assert 0 <= float(loss.detach()) <= 8  # two terms of 2 − 2·cos ∈ [0, 4]


def test_denoising_loss_decreases():
    torch.manual_seed(0)
    trunk = Trunk()
    options = DenoisingOptions(mask_ratio=0.3, noise_std=0.1, decoder_hidden=32)
    objective = Denoising(options, trunk, ViewMaker(SSLConfig(), 0, "fp32", TABLE))
    basis = torch.randn(2, 4)
    x = torch.randn(256, 2) @ basis  # rank-2 data: a 3-wide code can reconstruct it
    model = type("M", (), {"trunk": trunk})()
    opt = torch.optim.Adam([*trunk.parameters(), *objective.parameters()], lr=1e-2)
    losses = []
    for _ in range(150):
        loss = objective(model, {"x": x})["denoising"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_denoising_keeps_category_codes_and_reconstructs_the_numbers(monkeypatch):
    """Embedded category columns: corruption masks a code to 0 (its unknown slot) or keeps it exactly (noise would
    make code c a c − 1 half the time), and the loss reads the numbers only; a table of codes alone is refused."""
    from hydranet.errors import UserError

    state = {"version": 2, "options": {"categorical": "embedding"},
             "columns": [{"name": "n", "kind": "numeric"}, {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]}]}
    trunk = torch.nn.Linear(2, 3)
    trunk.out_dim = 3
    objective = Denoising(DenoisingOptions(mask_ratio=0.3, noise_std=0.5, decoder_hidden=8), trunk,
                          ViewMaker(SSLConfig(), 0, "fp32", DataInfo("table", (2,), encoder=state)))
    x = torch.stack([torch.randn(4000), torch.randint(1, 4, (4000,)).float()], dim=1)
    corrupted = objective.corrupt(x)
    codes, numbers = corrupted[:, 1], corrupted[:, 0]
    assert torch.all((codes == 0) | (codes == x[:, 1])) and 0.25 < (codes == 0).float().mean() < 0.35
    kept = numbers != 0
    assert (numbers[kept] - x[kept, 0]).std() > 0.4  # the numbers get their noise
    monkeypatch.setattr(objective, "corrupt", lambda rows: rows)
    loss = objective(type("M", (), {"trunk": trunk})(), {"x": x})["denoising"]
    with torch.no_grad():
        by_hand = ((objective.decoder(trunk(x))[:, 0] - x[:, 0]) ** 2).mean()
    torch.testing.assert_close(loss.detach(), by_hand)
    only_codes = {**state, "columns": state["columns"][1:]}
    with pytest.raises(UserError, match="every input of this table is a category code"):
        Denoising(DenoisingOptions(), trunk, ViewMaker(SSLConfig(), 0, "fp32", DataInfo("table", (1,), encoder=only_codes)))
