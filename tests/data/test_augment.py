"""Batched augmentation against per-example references: crop windows, flips and cutout squares.

The references loop over examples in plain Python, an implementation independent of the batched gathers.
"""

import pytest
import torch
import torch.nn.functional as F

from hydranet.config import AugmentConfig
from hydranet.data.augment import (
    apply,
    augment,
    crop_at,
    cut_at,
    draw,
    draw_epoch,
    flip_where,
)


def batch(b=64, c=3, h=7, w=9, seed=0):
    # Distinct random images (values 1..255), so a flipped or shifted example never equals the original by chance.
    return torch.randint(1, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_all_options_off_returns_the_input():
    x = batch()
    assert augment(x, AugmentConfig(), gen()) is x


def test_flip_mirrors_exactly_the_drawn_examples():
    x = batch()
    cfg = AugmentConfig(flip=True)
    out = augment(x, cfg, gen(3))
    mask = draw(cfg, 64, 7, 9, gen(3))["flip"]
    assert 0 < int(mask.sum()) < 64  # both branches are exercised
    assert torch.equal(out[mask], x[mask].flip(3))
    assert torch.equal(out[~mask], x[~mask])


def test_crop_takes_the_window_of_the_padded_image_at_the_drawn_offsets():
    x, p = batch(h=6, w=5), 2
    cfg = AugmentConfig(crop_padding=p)
    out = augment(x, cfg, gen(1))
    params = draw(cfg, 64, 6, 5, gen(1))
    padded = F.pad(x, (p, p, p, p))
    for b in range(len(x)):
        top, left = int(params["top"][b]), int(params["left"][b])
        assert torch.equal(out[b], padded[b, :, top:top + 6, left:left + 5])
    assert params["top"].min() == 0 and params["top"].max() == 2 * p  # offsets cover 0..2p
    assert out.shape == x.shape and out.dtype == x.dtype


def test_crop_at_the_centre_offset_is_the_identity():
    x = batch()
    centre = torch.full((64,), 3)
    assert torch.equal(crop_at(x, 3, centre, centre), x)


def test_crop_shifted_by_one_moves_pixels_and_fills_zeros():
    x = batch(b=2, h=4, w=4)
    out = crop_at(x, 1, torch.tensor([0, 2]), torch.tensor([1, 1]))
    # Offset 0 rows = one row up in the padded image: the first row is padding, the rest the image shifted down.
    assert torch.equal(out[0, :, 0], torch.zeros(3, 4, dtype=torch.uint8))
    assert torch.equal(out[0, :, 1:], x[0, :, :3])
    assert torch.equal(out[1, :, :3], x[1, :, 1:])
    assert torch.equal(out[1, :, 3], torch.zeros(3, 4, dtype=torch.uint8))


def reference_cutout(x, size, cy, cx):
    out = x.clone()
    for b in range(len(x)):
        top, left = int(cy[b]) - size // 2, int(cx[b]) - size // 2
        out[b, :, max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
    return out


def test_cutout_zeroes_exactly_the_square_also_at_borders():
    x = batch(b=4, h=8, w=8)
    cy, cx = torch.tensor([0, 7, 4, 2]), torch.tensor([0, 7, 3, 6])
    out = cut_at(x, 4, cy, cx)
    assert torch.equal(out, reference_cutout(x, 4, cy, cx))
    # By hand: centre (0, 0) with side 4 covers rows/cols -2..1, so only the 2×2 corner is cut.
    assert int((out[0] == 0).sum()) == 3 * 2 * 2
    assert int((out[2] == 0).sum()) == 3 * 4 * 4


def test_augment_cutout_uses_the_drawn_centres():
    x = batch()
    cfg = AugmentConfig(cutout=3)
    params = draw(cfg, 64, 7, 9, gen(5))
    assert torch.equal(augment(x, cfg, gen(5)), reference_cutout(x, 3, params["cy"], params["cx"]))


def test_all_three_compose_in_order_crop_flip_cutout():
    x = batch()
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=4)
    p = draw(cfg, 64, 7, 9, gen(9))
    expected = cut_at(flip_where(crop_at(x, 2, p["top"], p["left"]), p["flip"]), 4, p["cy"], p["cx"])
    assert torch.equal(augment(x, cfg, gen(9)), expected)


def test_same_seed_same_output_other_seed_other_output():
    x = batch().float()
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=4)
    first = augment(x, cfg, gen(7))
    assert torch.equal(first, augment(x, cfg, gen(7)))
    assert not torch.equal(first, augment(x, cfg, gen(8)))


def test_the_generator_advances_so_batches_differ():
    x = batch()
    g = gen(0)
    cfg = AugmentConfig(flip=True, crop_padding=1)
    assert not torch.equal(augment(x, cfg, g), augment(x, cfg, g))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_generator_drives_a_batch_on_the_gpu():
    x = batch()
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=4)
    on_gpu = augment(x.cuda(), cfg, gen(4))
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), augment(x, cfg, gen(4)))


def test_epoch_draw_equals_batch_by_batch_draws():
    """The trainer draws an epoch's choices at once; batch k must get what the k-th per-batch draw gives."""
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=3)
    epoch, per_batch = gen(11), gen(11)
    drawn = draw_epoch(cfg, n=70, batch_size=32, height=7, width=9, generator=epoch)
    assert {name: len(v) for name, v in drawn.items()} == {"top": 70, "left": 70, "flip": 70, "cy": 70, "cx": 70}
    for begin, size in ((0, 32), (32, 32), (64, 6)):
        expected = draw(cfg, size, 7, 9, per_batch)
        for name, values in expected.items():
            assert torch.equal(drawn[name][begin:begin + size], values), (begin, name)
    x = batch(b=6)
    assert torch.equal(apply(x, cfg, {k: v[64:] for k, v in drawn.items()}), augment(x, cfg, gen_after(11, cfg)))


def gen_after(seed, cfg):
    """A generator advanced past two 32-example batches, so the next draw is the epoch's third batch."""
    g = gen(seed)
    draw(cfg, 32, 7, 9, g)
    draw(cfg, 32, 7, 9, g)
    return g
