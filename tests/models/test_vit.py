"""The vit trunk: image patches as tokens on the transformer's blocks; it learns where things are in an image, and
refuses images its patches do not tile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hydranet.errors import UserError
from hydranet.models.attention import Encoder
from hydranet.models.vit import ViTOptions, vit


def quadrant_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 8, 8) noise with one bright 2×2 square; the label is the quadrant it sits in (0..3). The pixels'
    bag is the same for every label: only position tells them apart."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 8, 8, generator=gen) * 0.3
    labels = torch.randint(0, 4, (n,), generator=gen)
    row = (labels // 2) * 4 + torch.randint(0, 3, (n,), generator=gen)
    col = (labels % 2) * 4 + torch.randint(0, 3, (n,), generator=gen)
    for i in range(n):
        images[i, 0, row[i]:row[i] + 2, col[i]:col[i] + 2] += 2.0
    return images, labels


def test_vit_learns_where_a_square_is(one_thread):
    """Four patches of 4×4, mean-pooled: only the learned positions tell which patch held the square."""
    torch.manual_seed(0)
    trunk = vit(ViTOptions(patch=4, width=16, depth=1, heads=2), (1, 8, 8))
    model = nn.Sequential(trunk, nn.Linear(trunk.out_dim, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = quadrant_images(512, seed=0)
    for step in range(100):
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_x, test_y = quadrant_images(256, seed=1)
    with torch.no_grad():
        accuracy = (model.eval()(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.9  # chance: 0.25


def test_vit_refuses_patches_that_do_not_tile_the_image():
    with pytest.raises(UserError, match=r"^model\.trunk\.patch: 3 does not divide images of shape \(3, 8, 8\); "
                                        r"expected a divisor of both 8 and 8"):
        vit(ViTOptions(patch=3), (3, 8, 8))


def test_an_encoder_without_a_mask_equals_one_with_every_position_kept():
    """Patches have no padding: `keep=None` skips the mask (SDPA's fastest kernel) and changes nothing."""
    torch.manual_seed(0)
    encoder = Encoder(16, 2, 2).eval()
    x = torch.randn(3, 5, 16)
    assert torch.allclose(encoder(x), encoder(x, torch.ones(3, 5, dtype=torch.bool)), atol=1e-6)
