"""Attributions of per-pixel tasks against closed forms: a hand-built model whose class-1 logit at every pixel is
w·m², m the mean of one input patch, and whose depth is twice the second channel. The score of a region is then
known exactly, and so are Integrated Gradients (linear along the path), saliency and Grad-CAM."""

import pytest
import torch
from torch import nn

from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.explain import Settings, explain_batch
from hydranet.kinds import get_kind
from hydranet.models.hydranet import HydraNet
from hydranet.tasks import Task
from hydranet.train.run import Run

SIZE, W = 16, 0.5
PATCH = (slice(4, 8), slice(8, 12))  # rows, columns of the one patch the class-1 logit reads (4×4, right half)
LEFT = SIZE * SIZE // 2  # class 1 is predicted on the left half (128 pixels)


class Relu(nn.Module):
    """The trunk: A = ReLU(x) channel by channel (a 1×1 convolution with identity weights, then ReLU)."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[0, 0] = self.mix.weight[1, 1] = 1.0
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.mix(x))


class PatchHead(nn.Module):
    """(B, H, W, 4) logits: class 0 is −100 on the left half and +100 on the right, class 1 is w·m² at every pixel
    (m = mean of A₀ over PATCH), classes 2 and 3 are −1000: the mask is class 1 on the left, background elsewhere."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)  # runs last in this head: a default Grad-CAM layer taken from here is wrong

    def forward(self, a):
        self.conv(a)
        m = a[:, 0, PATCH[0], PATCH[1]].mean((1, 2))
        b, _, h, w = a.shape
        background = torch.full((h, w), 100.0, device=a.device)
        background[:, : w // 2] = -100.0
        logits = torch.full((b, h, w, 4), -1000.0, device=a.device)
        logits = torch.cat([background.expand(b, h, w)[..., None], (W * m ** 2)[:, None, None, None].expand(b, h, w, 1),
                            logits[..., 2:]], dim=-1)
        return logits


class DepthHead(nn.Module):
    """(B, H, W) standardized depth 2·A₁, through a 1×1 convolution (another task's conv head after the trunk)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 1] = 2.0

    def forward(self, a):
        return self.conv(a)[:, 0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A Run of the scenes source's semantic and depth tasks (16×16, fp32, no channels_last) with the hand-built
    model in place of a trained one; nothing is trained."""
    config = load_config("scenes-mtl", ["data.limit=40", f"data.image_size={SIZE}", "train.channels_last=false", "data.split.stratify=null",
                                        "tasks={semantic: {kind: segmentation}, depth: {kind: depth}}"])
    info = build_dataset(config).info
    tasks = {name: Task(name, config.tasks[name], info.tasks[name]) for name in config.tasks}
    model = HydraNet(Relu(), {"semantic": PatchHead(), "depth": DepthHead()})
    return Run(dir=tmp_path_factory.mktemp("pixels"), config=config, model=model.eval(), tasks=tasks, info=info)


def inputs(count=3, seed=0):
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)).abs()


def patch_mean(x):
    return x[:, 0, PATCH[0], PATCH[1]].mean((1, 2))


def only_in_patch(values):
    """Whether every attribution outside channel 0 of PATCH is exactly zero."""
    outside = torch.ones_like(values, dtype=torch.bool)
    outside[:, 0, PATCH[0], PATCH[1]] = False
    return bool((values[outside] == 0).all())


def test_integrated_gradients_of_a_class_region_sit_in_the_patch_and_add_up(run):
    """The score is class 1's logit summed over its predicted pixels (the left half, although the patch it reads
    lies in the right half): 128·w·m². IG from the zeros baseline is x·128·w·m/16 on the patch, 0 elsewhere."""
    x = inputs()
    e = explain_batch(run, x, "semantic", Settings(method="integrated_gradients"))
    m = patch_mean(x)
    assert e.target.index.tolist() == [1, 1, 1]
    assert e.target.names[0] == f"logit of 1 summed over its {LEFT} predicted pixels"
    left = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    left[:, : SIZE // 2] = True
    assert torch.equal(e.regions, left.expand(3, -1, -1))
    torch.testing.assert_close(e.gap, LEFT * W * m ** 2)  # the region fixed from x: f(baseline) = 0, not 256·0
    assert only_in_patch(e.values)
    expected = x[:, 0, PATCH[0], PATCH[1]] * (LEFT * W * m / 16)[:, None, None]
    torch.testing.assert_close(e.values[:, 0, PATCH[0], PATCH[1]], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(e.values.flatten(1).sum(1), e.gap, rtol=1e-4, atol=1e-5)  # completeness
    assert (e.delta.abs() <= 0.01 * e.gap.abs()).all()


def test_saliency_and_a_box_region(run):
    """Saliency is |∂score/∂x| = 2·w·|R|·m/16 on the patch; a box region of 4 rows (64 pixels, 32 of them class 1)
    sums the class's logit over that box only."""
    x = inputs(seed=1)
    m = patch_mean(x)
    e = explain_batch(run, x, "semantic", Settings(method="saliency", region="0:4,0:16"))
    assert e.target.names[0] == "logit of 1 summed over rows 0:4, columns 0:16 (64 pixels)"
    assert only_in_patch(e.values)
    torch.testing.assert_close(e.values[:, 0, 4, 8], 2 * W * 64 * m / 16)
    torch.testing.assert_close(e.scores[:, 1], 64 * W * m ** 2)


def test_a_class_predicted_nowhere_is_explained_over_every_pixel(run):
    e = explain_batch(run, inputs(1), "semantic", Settings(method="saliency", target="2"))
    assert e.target.names == [f"logit of 2 summed over all {SIZE * SIZE} pixels (no pixel predicted as it)"]
    assert e.regions.all() and (e.values == 0).all()  # class 2's logit is a constant


def test_depth_is_the_mean_over_the_region_and_reads_its_own_channel(run):
    """Mean of 2·x₁ over the box: IG gives 2·x₁/|box| on the box's pixels of channel 1, nothing elsewhere."""
    x = inputs(seed=2)
    e = explain_batch(run, x, "depth", Settings(method="integrated_gradients", region="8:16,0:4"))
    assert e.target.names[0] == "standardized depth averaged over rows 8:16, columns 0:4 (32 pixels)"
    expected = torch.zeros_like(x)
    expected[:, 1, 8:16, 0:4] = 2 * x[:, 1, 8:16, 0:4] / 32
    torch.testing.assert_close(e.values, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(e.gap, expected.flatten(1).sum(1), rtol=1e-5, atol=1e-6)


def test_gradcam_uses_the_trunk_not_a_head(run):
    """Grad-CAM at the trunk's map A = ReLU(x): the pooled gradient of A₀ is 2·w·128·m/(H·W) and that of A₁ 0, so
    the map is that times ReLU(x₀), closed form. The semantic head's own conv and the depth head's run later; a
    layer taken from either would give another map, and naming the depth head is refused."""
    x = inputs(seed=3)
    m = patch_mean(x)
    e = explain_batch(run, x, "semantic", Settings(method="gradcam"))
    expected = (2 * W * LEFT * m / (SIZE * SIZE))[:, None, None, None] * x[:, :1].clamp_min(0)
    torch.testing.assert_close(e.values, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(UserError, match=r"--layer: heads\.depth\.conv is in the head of task 'depth'"):
        explain_batch(run, x, "semantic", Settings(method="gradcam", layer="heads.depth.conv"))


@pytest.mark.parametrize("method", ["occlusion", "kernel_shap"])
def test_grouped_methods_switch_the_patch(run, method):
    """On a grid of 4-pixel patches only the patch the score reads changes it, and by the whole score (the zeros
    baseline switches the class-1 logit off entirely): occlusion's value and the exact Shapley value of that patch
    are the whole gap, every other patch's 0 (KernelSHAP's fit is exact for a function of one group)."""
    x = inputs(2, seed=4)
    e = explain_batch(run, x, "semantic", Settings(method=method, patch=4))
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[PATCH] = False
    assert e.values[:, :, outside].abs().max() <= 1e-4 * e.gap.abs().min()
    torch.testing.assert_close(e.values.flatten(1).sum(1), e.gap, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(e.gap, LEFT * W * patch_mean(x) ** 2, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("task, settings, message", [
    ("semantic", {"region": "0:20,0:4"}, "--region: '0:20,0:4' is not a region of the 16x16 picture"),
    ("semantic", {"region": "top"}, "--region: 'top' is not a region"),
    ("semantic", {"target": "7"}, "--target: '7' is not a class of 'semantic'"),
    ("depth", {"target": "1"}, "--target: task 'depth' (depth) has one output per pixel"),
])
def test_mistakes_are_one_line(run, task, settings, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explain_batch(run, inputs(1), task, Settings(method="saliency", **settings))


def test_the_kinds_choose_their_default_target():
    """Segmentation: the most frequent non-background class (ties to the lowest index; background only when
    nothing else is predicted). Normals: the axis the region faces most, within the region only."""
    seg = get_kind("segmentation")
    logits = torch.zeros(3, 2, 3, 4)
    logits[0, ..., 0] = 1  # all background
    logits[1, 0, :, 3] = logits[1, 1, :2, 2] = 5  # 3 pixels of class 3, 2 of class 2, 1 background
    logits[2, 0, 0, 2] = logits[2, 1, 0, 1] = 5  # one pixel each of classes 2 and 1: a tie
    logits[2, ..., 0] = 1
    everywhere = torch.ones(3, 2, 3, dtype=torch.bool)
    assert seg.explain_default(logits, everywhere).tolist() == [0, 3, 1]
    bottom = torch.zeros(3, 2, 3, dtype=torch.bool)
    bottom[:, 1] = True
    assert seg.explain_default(logits, bottom).tolist() == [0, 2, 1]
    normals = get_kind("normals")
    vectors = torch.zeros(1, 2, 2, 3)
    vectors[0, 0, :, 1] = -3.0  # the top row faces up (−y), the bottom row the camera (−z, shorter raw vectors)
    vectors[0, 1, :, 2] = -0.1
    unit = normals.explain_values(vectors, None)
    top = torch.tensor([[[True, True], [False, False]]])
    assert normals.explain_default(unit, top).tolist() == [1]
    assert normals.explain_default(unit, ~top).tolist() == [2]
