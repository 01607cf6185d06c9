"""Attribution methods by name (`METHODS`), each one Captum call on a task's `TaskScores`, and their inputs:
baselines (zeros, the train mean, a blurred input); the feature masks come from segments.py and tables.py.

Every method returns attributions shaped like the input (Grad-CAM: one channel), in the model's input space, so
that summing them over a feature group gives that group's share: methods that score groups (kernel_shap, lime,
occlusion) spread a group's value evenly over its elements. Captum is imported when a method runs; kernel_shap and
lime are Captum's estimators computed batched over examples (sampling.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.explain import sampling
from hydranet.explain.target import TaskScores
from hydranet.randomness import Purpose, stream

BASELINES = ("zeros", "mean", "blur")
COMPLETENESS = 0.01  # integrated_gradients: |Σ attributions − (f(x) − f(b))| ≤ 1% of |f(x) − f(b)| per example
NEAR_ZERO_GAP = 0.01  # a |f(x) − f(b)| below this (logit or standardized units) is held to 1% of it, absolutely
MAX_STEPS = 4096  # integrated_gradients doubles the steps of the examples that miss the bound up to this many


@dataclass
class Request:
    """One batch to explain and every option a method may read; each method reads only its own."""

    scores: TaskScores
    x: Tensor  # (N, *input_shape) model inputs
    target: Tensor  # (N,) column of `scores` per example
    baseline: Tensor  # (N, *input_shape): the "absent" input of integrated_gradients, kernel_shap, lime, occlusion
    mask: Tensor | None  # grouped methods: (1 or N, *input_shape) int64 group per element (one for all, or per example)
    steps: int = 50  # integrated_gradients: points on the path (Gauss-Legendre) to start with
    samples: int = 200  # kernel_shap, lime: coalitions drawn per example
    layer: str | None = None  # gradcam: a module name of the model (default: its last Conv2d)
    rows: int = 1024  # at most this many rows per forward pass (the batching of steps and coalitions)
    seed: int = 0  # kernel_shap, lime: coalitions drawn from the EXPLAIN stream of this seed (the same per chunk)


@dataclass
class Attribution:
    values: Tensor  # like x (gradcam: (N, 1, H, W))
    delta: Tensor | None = None  # integrated_gradients: Σ attributions − (f(x) − f(baseline)) per example
    steps: Tensor | None = None  # integrated_gradients: (N,) points on the path each example needed


METHODS: dict[str, Callable[[Request], Attribution]] = {}
GROUPED: set[str] = set()  # methods that switch the feature groups of `Request.mask` (recorded with the output)


def method(name: str, grouped: bool = False) -> Callable:
    """`@method("name")` adds an attribution method `fn(request) -> Attribution` to `METHODS`; `grouped` if it
    reads `request.mask`."""
    def add(fn: Callable[[Request], Attribution]) -> Callable[[Request], Attribution]:
        METHODS[name] = fn
        (GROUPED.add if grouped else GROUPED.discard)(name)
        return fn
    return add


def get_method(name: str) -> Callable[[Request], Attribution]:
    if name not in METHODS:
        raise UserError(f"--method: {name!r} is not an attribution method (expected {', '.join(METHODS)})")
    return METHODS[name]


@method("saliency")
def saliency(r: Request) -> Attribution:
    """|∂ score / ∂ input| (Simonyan et al. 2014): one backward pass per batch."""
    from captum.attr import Saliency  # lazy: captum only when explaining

    return Attribution(Saliency(r.scores).attribute(r.x, target=r.target, abs=True))


@method("integrated_gradients")
def integrated_gradients(r: Request) -> Attribution:
    """∫ gradient along the straight path from the baseline (Sundararajan et al. 2017), by `steps`-point
    Gauss–Legendre quadrature; all steps of all examples go through the model in batches of `rows`. The examples
    whose completeness error misses `completeness_bound` are done again with the path cut into twice as many equal
    pieces, each integrated the same way (together, batched), until every one meets it or MAX_STEPS is reached;
    the error δ = Σ attributions − (f(x) − f(b)) and the steps are returned per example."""
    from captum.attr import IntegratedGradients  # lazy: captum only when explaining

    ig = IntegratedGradients(r.scores)
    with torch.no_grad():
        gap = (r.scores(r.x) - r.scores(r.baseline)).gather(1, r.target[:, None])[:, 0]
    bound = completeness_bound(gap)
    values, delta = torch.zeros_like(r.x), torch.zeros_like(gap)
    steps = torch.zeros(len(r.x), dtype=torch.long, device=r.x.device)
    todo, pieces = torch.arange(len(r.x), device=r.x.device), 1
    while len(todo) and pieces * r.steps <= max(MAX_STEPS, r.steps):
        values[todo] = _piecewise_path(ig, r, todo, pieces)
        delta[todo] = values[todo].flatten(1).sum(1) - gap[todo]
        steps[todo] = pieces * r.steps
        todo, pieces = todo[delta[todo].abs() > bound[todo]], 2 * pieces
    return Attribution(values, delta, steps)


def _piecewise_path(ig, r: Request, todo: Tensor, pieces: int) -> Tensor:
    """IG of the examples `todo` with the path cut into `pieces` equal parts: each part is the IG from its start
    to its end (one Captum call for all parts of all examples), and the parts add up, as integrals do; the
    Gauss–Legendre nodes stay those of `steps` points (numpy computes n nodes in O(n³))."""
    x, b = r.x[todo], r.baseline[todo]
    cut = torch.linspace(0, 1, pieces + 1, device=x.device).view(-1, *[1] * x.ndim)  # (pieces + 1, 1, ...)
    points = sampling.laid_out_as((b + cut * (x - b)).flatten(0, 1), x)  # (pieces + 1) × examples
    starts, ends = points[:-len(x)], points[len(x):]
    parts = ig.attribute(ends, baselines=starts, target=r.target[todo].repeat(pieces), n_steps=r.steps,
                         internal_batch_size=max(r.rows, len(ends)))
    return parts.view(pieces, *x.shape).sum(0)


PER_ELEMENT = ("integrated_gradients", "saliency")  # the methods runs with variable-length inputs take (texts, sequences)


def check_per_element(method: str, baseline_name: str | None, *, runs: str, attributed: str, kind: str,
                      zeros: str) -> None:
    """Refuse, in one line naming the option, a method other than the per-element gradient ones, or a baseline other
    than zeros, for `runs` (text, numeric-sequence), whose inputs are padded: grouped methods would need groups that
    respect the padding, and only the zeros baseline keeps it (`zeros` says what it means for a `kind` baseline)."""
    if method not in PER_ELEMENT:
        raise UserError(f"--method: {method!r} does not explain {runs} runs (expected {' or '.join(PER_ELEMENT)}: "
                        f"{attributed})")
    if baseline_name not in (None, "zeros"):
        raise UserError(f"--baseline: {baseline_name!r} is not a {kind} baseline (expected zeros: {zeros})")


def completeness_bound(gap: Tensor) -> Tensor:
    """The largest |Σ attributions − (f(x) − f(b))| integrated_gradients accepts per example: 1% of |f(x) − f(b)|,
    or, where that gap is under NEAR_ZERO_GAP (x scores as the baseline does, and a relative bound would ask for
    an error below fp32's rounding of the sum), 1% of NEAR_ZERO_GAP."""
    return COMPLETENESS * gap.abs().clamp_min(NEAR_ZERO_GAP)


@method("gradcam")
def gradcam(r: Request) -> Attribution:
    """ReLU(Σ_k mean-gradient_k · activation_k) at a convolution (Selvaraju et al. 2017), upsampled bilinearly
    to the input size: (N, 1, H, W)."""
    from captum.attr import LayerAttribution, LayerGradCam  # lazy: captum only when explaining

    layer = conv_layer(r.scores, r.x[:1], r.layer)
    cam = LayerGradCam(r.scores, layer).attribute(r.x, target=r.target, relu_attributions=True)
    return Attribution(LayerAttribution.interpolate(cam, tuple(r.x.shape[2:]), "bilinear"))


@method("occlusion", grouped=True)
def occlusion(r: Request) -> Attribution:
    """score(x) − score(x with one feature group set to the baseline), per group (Zeiler & Fergus 2014)."""
    from captum.attr import FeatureAblation  # lazy: captum only when explaining

    values = FeatureAblation(r.scores).attribute(r.x, baselines=r.baseline, target=r.target, feature_mask=r.mask,
                                                 perturbations_per_eval=max(1, r.rows // len(r.x)))
    return Attribution(spread(values, r.mask))


@method("kernel_shap", grouped=True)
def kernel_shap(r: Request) -> Attribution:
    """Shapley values of the feature groups, estimated by a weighted linear fit on `samples` coalitions drawn
    with the Shapley kernel (Lundberg & Lee 2017); an absent group takes the baseline's values. Captum's
    estimator, batched over examples (sampling.py)."""
    count, groups = sampling.live_groups(r.mask, len(r.x))
    present = sampling.shapley_coalitions(count, groups, r.samples, stream(r.seed, Purpose.EXPLAIN))
    y = sampling.coalition_scores(r.scores, r.x, r.baseline, r.target, r.mask, present, r.rows)
    weight = torch.ones_like(y)
    weight[:, :2] = sampling.ENDPOINT_WEIGHT  # all on, all off: the fit passes through f(x) and f(baseline)
    return Attribution(spread_groups(sampling.weighted_linear_fit(present, y, weight), r))


@method("lime", grouped=True)
def lime(r: Request) -> Attribution:
    """A sparse linear model (Lasso, α = 0.01 as Captum's default) fitted on `samples` random on/off patterns of
    the feature groups, weighted by their closeness to x (Ribeiro et al. 2016); an "off" group takes the
    baseline's values. Captum's estimator, batched over examples (sampling.py)."""
    count, groups = sampling.live_groups(r.mask, len(r.x))
    present = sampling.lime_coalitions(count, groups, r.samples, stream(r.seed, Purpose.EXPLAIN))
    y = sampling.coalition_scores(r.scores, r.x, r.baseline, r.target, r.mask, present, r.rows)
    weight = sampling.cosine_similarity(r.x, r.baseline, r.mask, present, groups)
    return Attribution(spread_groups(sampling.weighted_lasso(present, y, weight), r))


def spread_groups(coefficients: Tensor, r: Request) -> Tensor:
    """(N, G) values per group → like x, each group's value spread over its elements (see `spread`)."""
    group = r.mask.expand(len(r.x), *r.x.shape[1:]).flatten(1)
    values = coefficients.to(r.x.device, r.x.dtype).gather(1, group).view(r.x.shape)
    return spread(values, r.mask)


def spread(values: Tensor, mask: Tensor) -> Tensor:
    """Grouped methods give every element of a group the group's whole value; divide it over the group's elements
    (per example: superpixels differ between images), so a sum over the group (a source column, a patch, a superpixel)
    is the group's attribution and a sum over all is the total."""
    groups = mask.expand_as(values).reshape(len(values), -1)  # (N, elements)
    counts = torch.zeros(len(values), int(groups.max()) + 1, dtype=values.dtype, device=values.device)
    counts.scatter_add_(1, groups, torch.ones_like(groups, dtype=values.dtype))
    return values / counts.gather(1, groups).reshape(values.shape)


def conv_layer(scores: TaskScores, example: Tensor, name: str | None) -> nn.Module:
    """The named module (`--layer`), or by default the last module that outputs a spatial map (N, C, H, W) with
    H·W > 1: the last convolutional block after its activation and pooling, whose rectified maps Grad-CAM was
    defined on (a raw convolution's output can be negative everywhere and give an empty map).
    A trunk without a Conv2d is a clear error."""
    modules = dict(scores.model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    if name is not None:
        if name not in modules or name == "":
            raise UserError(f"--layer: {name!r} is not a layer of this model (its convolutions: "
                            f"{', '.join(convs[-6:]) or 'none'})")
        _refuse_other_heads(name, scores.task)
        return modules[name]
    if not convs:
        raise UserError("--method gradcam: needs a convolutional trunk, and this model has no Conv2d layer "
                        "(use saliency, integrated_gradients, occlusion, kernel_shap or lime)")
    return _last_spatial_map(scores, example)


def _refuse_other_heads(name: str, task: str) -> None:
    """A layer in another task's head: the explained score does not depend on it, so its Grad-CAM map is empty."""
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "heads" and parts[1] != task:
        raise UserError(f"--layer: {name} is in the head of task {parts[1]!r}, on which {task!r} does not depend "
                        f"(its map would be empty); name a layer of the trunk or of heads.{task}")


def _last_spatial_map(scores: TaskScores, example: Tensor) -> nn.Module:
    """The module whose forward finishes last with a (1, C, H, W) output, H·W > 1 (one forward pass), among the
    trunk's and the task's own head's: another task's conv head (a per-pixel task's) runs after the trunk too, but
    the task's score does not depend on it. A per-pixel task's own head is left out too (`head_layers`): it ends in
    the map being scored, whose Grad-CAM is the output itself; the trunk's last map (the unet's decoder) is used."""
    finished: list[nn.Module] = []
    model = scores.model
    own_head = [model.heads[scores.task]] if scores.head_layers else []
    parts = [model.trunk, *own_head] if hasattr(model, "heads") else [model]

    def record(module: nn.Module, _inputs, output) -> None:
        if isinstance(output, Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
            finished.append(module)

    hooks = [m.register_forward_hook(record) for part in parts for m in part.modules()]
    try:
        with torch.no_grad():
            scores(example)
    finally:
        for hook in hooks:
            hook.remove()
    return finished[-1]


def baseline_input(name: str, x: Tensor, train_mean: Callable[[], Tensor], image: bool) -> Tensor:
    """The baseline (N, *shape): zeros (tables: every numeric at its train mean and no category; images: the
    train mean colour when data.normalize is on), the mean train input, or a blurred x (images)."""
    if name == "zeros":
        return torch.zeros_like(x)
    if name == "mean":
        return train_mean().to(x).expand_as(x).contiguous()
    if name == "blur":
        if not image:
            raise UserError("--baseline: blur is for images (expected zeros or mean for a table)")
        return blur(x)
    raise UserError(f"--baseline: {name!r} is not a baseline (expected {', '.join(BASELINES)})")


def blur(x: Tensor) -> Tensor:
    """A box blur over a quarter of the image side (odd, at least 3): the shapes go, the colours stay."""
    size = max(3, x.shape[-1] // 4) | 1
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)
