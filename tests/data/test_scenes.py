"""The `scenes` source (deterministic, depth consistent with occlusion) and dense targets moving with augmentation."""

import numpy as np
import torch

from hydranet.config import AugmentConfig, load_config
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.data.sources.scenes import FAR, MAX_SHAPES, NEAR, generate, paint


def test_the_generator_is_deterministic_under_the_seed():
    a, b, other = generate(12, 16, seed=3), generate(12, 16, seed=3), generate(12, 16, seed=4)
    assert torch.equal(a["images"], b["images"]) and a["images"].dtype == torch.uint8 and a["images"].shape == (12, 3, 16, 16)
    for name in ("semantic", "depth", "count"):
        assert np.array_equal(a["labels"][name], b["labels"][name])
    assert not torch.equal(a["images"], other["images"])


def test_labels_agree_with_each_other():
    """Shapes stand in front of the background plane; the count is the shapes with a visible pixel."""
    labels = generate(200, 24, seed=0)["labels"]
    semantic, depth, count = labels["semantic"], labels["depth"], labels["count"]
    shape = semantic > 0
    assert ((depth[shape] >= NEAR) & (depth[shape] <= FAR)).all() and (depth[~shape] >= 8).all()
    assert (count >= 1).all() and (count <= MAX_SHAPES).all()
    assert set(np.unique(semantic)) == {0, 1, 2, 3}


def test_the_nearer_shape_hides_the_farther_in_either_drawing_order():
    empty = {"zbuffer": np.full((1, 4, 4), 10.0), "semantic": np.zeros((1, 4, 4), dtype=np.int64)}
    big, small = np.ones((1, 4, 4), dtype=bool), np.zeros((1, 4, 4), dtype=bool)
    small[0, 1:3, 1:3] = True
    far = (big, np.array([6.0]), {"semantic": np.array([1])})
    near = (small, np.array([3.0]), {"semantic": np.array([2])})
    for order in ((far, near), (near, far)):
        scene = empty
        for inside, distance, values in order:
            scene = paint(scene, inside, distance, values)
        assert (scene["semantic"][small] == 2).all() and (scene["zbuffer"][small] == 3.0).all()
        assert (scene["semantic"][~small] == 1).all() and (scene["zbuffer"][~small] == 6.0).all()


def test_crops_and_flips_move_the_targets_with_the_image():
    """One marker pixel per image, labeled class 1 and depth 5: after any crop and flip it is where both targets
    say it is, and pixels brought in by the crop are unlabeled."""
    data = build_dataset(load_config("scenes-mtl", ["data.limit=40", "data.image_size=8"]))
    n = len(data.x)
    rows, cols = torch.randint(0, 8, (n,), generator=torch.Generator().manual_seed(0)), torch.arange(n) % 8
    data.x = torch.zeros_like(data.x)
    data.x[torch.arange(n), :, rows, cols] = 255
    data.targets["semantic"] = torch.zeros(n, 8, 8, dtype=torch.int64)
    data.targets["semantic"][torch.arange(n), rows, cols] = 1
    data.targets["depth"] = torch.ones(n, 8, 8)
    data.targets["depth"][torch.arange(n), rows, cols] = 5.0
    batches = Batches(data, torch.device("cpu"), 16, AugmentConfig(crop_padding=3, flip=True), seed=1)
    moved = 0
    for batch in batches.epoch(0):
        marker = batch["x"][:, 0] == batch["x"][:, 0].amax(dim=(1, 2), keepdim=True)  # (B, H, W)
        visible = marker.flatten(1).sum(1) == 1  # a crop can push the marker out of the picture
        assert torch.equal(marker[visible], batch["semantic"][visible] == 1)
        assert torch.equal(marker[visible], batch["depth"][visible] == 5.0)
        padded = batch["semantic"] == -1
        assert torch.equal(padded, batch["depth"].isnan()) and padded.any()
        moved += int(visible.sum())
    assert moved > 5


def test_edges_outline_what_is_visible_and_normals_are_the_cards_and_the_plane():
    labels = generate(50, 16, seed=2)["labels"]
    assert np.array_equal(labels["edges"], generate(50, 16, seed=2)["labels"]["edges"])
    semantic, edges, normals = labels["semantic"], labels["edges"], labels["normals"]
    # wherever two horizontal neighbours show different classes, both are edge pixels
    differ = semantic[:, :, 1:] != semantic[:, :, :-1]
    assert (edges[:, :, 1:][differ] == 1).all() and (edges[:, :, :-1][differ] == 1).all()
    assert set(np.unique(edges)) == {0.0, 1.0} and 0.02 < edges.mean() < 0.5
    assert normals.shape == (50, 16, 16, 3) and np.allclose(np.linalg.norm(normals, axis=-1), 1)
    assert (normals[semantic > 0] == [0, 0, -1]).all()  # cards face the camera
    assert (normals[semantic == 0][:, 1] < 0).all()  # the background plane tilts up toward it


def test_a_flip_mirrors_the_normals_x_component_with_the_pixels():
    """A marker pixel in each image's left half whose normal points right (+x): wherever a flip carried it into
    the right half, its normal must point left, and every other pixel keeps facing the camera."""
    data = build_dataset(load_config("scenes-mtl", ["data.limit=40", "data.image_size=8"]))
    n = len(data.x)
    rows, cols = torch.randint(0, 8, (n,), generator=torch.Generator().manual_seed(0)), torch.arange(n) % 4
    data.x = torch.zeros_like(data.x)
    data.x[torch.arange(n), :, rows, cols] = 255
    data.targets["normals"] = torch.tensor([0.0, 0.0, -1.0]).expand(n, 8, 8, 3).clone()
    data.targets["normals"][torch.arange(n), rows, cols] = torch.tensor([1.0, 0.0, 0.0])
    flipped = 0
    for batch in Batches(data, torch.device("cpu"), 16, AugmentConfig(flip=True), seed=1).epoch(0):
        marker = batch["x"][:, 0] == batch["x"][:, 0].amax(dim=(1, 2), keepdim=True)  # (B, H, W)
        on_right = marker[:, :, 4:].flatten(1).any(1)  # flipped
        expected_x = torch.where(on_right, -1.0, 1.0)[:, None, None] * marker
        assert torch.equal(batch["normals"][..., 0], expected_x)
        assert torch.equal(batch["normals"][..., 2], torch.where(marker, 0.0, -1.0))
        flipped += int(on_right.sum())
    assert 0 < flipped < n


def test_flip_averaging_mirrors_a_normal_prediction_back():
    """A model whose normals are exactly mirror-equivariant (x from the image's horizontal gradient): averaging its
    prediction with the mirrored image's, mirrored back, changes nothing; without negating x it would cancel."""
    from torch import nn

    from hydranet.kinds.normals import NormalsHead
    from hydranet.train.evaluation import forward_tta

    class Gradient(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleDict({"normals": NormalsHead(1, 3, squeeze=False)})

        def forward(self, x):
            padded = nn.functional.pad(x[:, 0], (1, 1))
            dx = padded[:, :, 2:] - padded[:, :, :-2]  # (B, H, W): changes sign in a mirror
            return {"normals": torch.stack([dx, torch.zeros_like(dx), -torch.ones_like(dx)], -1)}

    x = torch.randn(2, 1, 5, 6, generator=torch.Generator().manual_seed(0))
    model = Gradient()
    torch.testing.assert_close(forward_tta(model, x, "flip")["normals"], model(x)["normals"])
