"""Superpixels (SLIC as batched tensor ops): they follow colour edges, and a grouped method run on them still
finds evidence where it is; the segmentation is stated in explanation.json and drawn on the pictures."""

import json

import torch
from safetensors.torch import load_file

from hydranet.explain import Settings, explain_batch
from hydranet.explain.segments import patch_mask, slic
from tests.explain.test_methods import split_inputs


def flat_regions(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, size, size) image of four flat colours (a slanted edge and a disc, not aligned to any grid) and
    the (size, size) region of every pixel."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    region = (x + y // 2 > 17).long() + 2 * ((x - 16) ** 2 + (y - 10) ** 2 < 49).long()
    colours = torch.tensor([[0.1, 0.2, 0.8], [0.9, 0.1, 0.1], [0.2, 0.9, 0.3], [0.9, 0.9, 0.2]])
    return colours[region].permute(2, 0, 1)[None], region


def purity(segments: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per segment, the share of its pixels that lie in its most common region."""
    return torch.stack([torch.bincount(region[segments == s]).max() / (segments == s).sum()
                        for s in segments.unique()])


def edges(labels: torch.Tensor) -> torch.Tensor:
    """Pixels whose label differs from the right or lower neighbour's."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1] |= labels[:-1] != labels[1:]
    return edge


def test_superpixels_follow_flat_coloured_regions():
    image, region = flat_regions()
    segments = slic(image.repeat(2, 1, 1, 1), 16)
    assert segments.shape == (2, 1, 32, 32) and torch.equal(segments[0], segments[1])
    found = segments[0, 0]
    assert purity(found, region).min() >= 0.97
    near_an_edge = torch.nn.functional.max_pool2d(edges(found)[None, None].float(), 3, 1, 1)[0, 0] > 0
    assert near_an_edge[edges(region)].float().mean() >= 0.9  # boundary recall within one pixel
    assert torch.equal(found.unique(), torch.arange(int(found.max()) + 1))  # numbered without gaps
    assert purity(patch_mask((3, 32, 32), 8)[0, 0], region).min() < 0.8  # the grid cuts across the regions


def test_lime_on_superpixels_finds_the_quadrant(quadrant_model):
    """As IG and Grad-CAM do (test_methods.py), LIME over superpixels puts most |attribution| in the top-left
    quadrant, the only place the class is told."""
    x = split_inputs(quadrant_model, 16)
    explained = explain_batch(quadrant_model.run, x, "shape", Settings(method="lime", segments="slic", n_segments=36))
    heat = explained.values.abs().sum(1)
    half = heat.shape[-1] // 2
    assert (heat[:, :half, :half].sum((1, 2)) / heat.sum((1, 2))).mean() > 0.5
    assert explained.segments.shape == (16, 32, 32) and "SLIC superpixels" in explained.groups


def test_the_segmentation_is_stated_and_saved(cli, quadrant_model, tmp_path):
    code, out, err = cli("explain", quadrant_model.run.dir, "--split", "test", "--n", "2", "--method", "occlusion",
                         "--segments", "slic", "--n-segments", "16", "-o", tmp_path / "o")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "explanation.json").read_text())
    assert summary["features"].startswith("SLIC superpixels, about 16 per image")
    assert summary["settings"]["segments"] == "slic"
    saved = load_file(tmp_path / "o" / "attributions.safetensors")
    assert saved["segments"].shape == (2, 32, 32) and (tmp_path / "o" / "example-1.png").exists()
    code, _, err = cli("explain", quadrant_model.run.dir, "--split", "test", "--method", "lime", "--segments", "blobs",
                       "-o", tmp_path / "bad")
    assert code == 2 and "--segments: 'blobs' is not a segmentation" in err and not (tmp_path / "bad").exists()
