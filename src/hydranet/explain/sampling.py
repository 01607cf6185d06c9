"""KernelSHAP and LIME as batched tensor ops: the coalitions of every example drawn at once, their model inputs
sent through the model `rows` at a time, and one weighted linear fit per example solved for all examples together.

Captum's KernelShap and Lime draw each coalition in Python and fit one scikit-learn model per example; these
functions compute the same estimators (the same sampling distributions, weights and fitted models) in a few
batched calls. `tests/explain/test_methods.py` checks them against exact Shapley values and Captum's Lime.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hydranet.explain.target import TaskScores

ENDPOINT_WEIGHT = 1e6  # KernelSHAP: the weight of the all-on and all-off coalitions (Captum's), for f(x) and f(b)
RIDGE = 1e-9  # KernelSHAP: relative ridge of the least-squares fit, far below the estimate's sampling noise
LASSO_ALPHA = 0.01  # LIME: the L1 strength of its sparse linear model (Captum's default)
KERNEL_WIDTH = 1.0  # LIME: width of the exponential kernel on the cosine distance to x (Captum's default)
LASSO_SWEEPS = 1000  # LIME: coordinate-descent sweeps at most; they stop once no coefficient moves by more
LASSO_TOLERANCE = 1e-4  # than this fraction of the largest (scikit-learn's tol; on Adult the coefficients are
# then within 1e-5 of the converged ones, and 1e-7 took 70 times as long)


def live_groups(mask: Tensor, n: int) -> tuple[Tensor, int]:
    """(N,) the groups each example has (superpixels: per image), and the most of any example."""
    per_example = mask.flatten(1).amax(1) + 1
    count = per_example.expand(n) if len(per_example) == 1 else per_example
    return count, int(count.max())


def shapley_coalitions(count: Tensor, groups: int, samples: int, generator: torch.Generator) -> Tensor:
    """(N, S, G) bool: all groups on, all off, then coalitions drawn as Captum's KernelShap does: a size k with
    p(k) ∝ (M − 1) / (k (M − k)), then k of the M groups uniformly (the Shapley kernel as a sampling weight)."""
    n = len(count)
    size = torch.arange(1, groups, dtype=torch.float64)  # k = 1 .. G−1
    m = count[:, None].double()
    p = torch.where(size < m, (m - 1) / (size * (m - size)), 0.0)
    p[:, 0] = torch.where(count < 2, 1.0, p[:, 0])  # one group: nothing between all and none; k = 1 is all
    draws = max(samples - 2, 0)
    k = torch.multinomial(p, draws, replacement=True, generator=generator) + 1 if groups > 1 else torch.ones(n, draws)
    rank = _ranks(count, groups, draws, generator)
    middle = rank < k[..., None]
    ends = torch.stack([torch.ones(n, groups, dtype=torch.bool), torch.zeros(n, groups, dtype=torch.bool)], 1)
    return torch.cat([ends & _alive(count, groups)[:, None], middle], 1)[:, :samples]


def lime_coalitions(count: Tensor, groups: int, samples: int, generator: torch.Generator) -> Tensor:
    """(N, S, G) bool: every group on or off with probability 1/2 (Captum's Lime)."""
    on = torch.rand(len(count), samples, groups, generator=generator) < 0.5
    return on & _alive(count, groups)[:, None]


def _alive(count: Tensor, groups: int) -> Tensor:
    """(N, G) the groups an example has; the others never switch on and get no attribution."""
    return torch.arange(groups) < count[:, None]


def _ranks(count: Tensor, groups: int, draws: int, generator: torch.Generator) -> Tensor:
    """(N, S, G) a uniformly random order of each example's live groups (dead groups rank last)."""
    noise = torch.rand(len(count), draws, groups, generator=generator)
    noise = torch.where(_alive(count, groups)[:, None], noise, 2.0)
    return noise.argsort(-1).argsort(-1)


def coalition_scores(scores: TaskScores, x: Tensor, baseline: Tensor, target: Tensor, mask: Tensor,
                     present: Tensor, rows: int) -> Tensor:
    """(N, S) the explained score of every coalition: x where its group is present, the baseline elsewhere;
    `rows` (example, coalition) pairs per forward pass, so examples share forward passes."""
    n, s, _ = present.shape
    # (1 or N, F) the group of every input element: an image's mask (…, 1, H, W) holds all channels of a pixel
    group = mask.expand(len(mask), *x.shape[1:]).flatten(1)
    flat_x, flat_b = x.flatten(1), baseline.flatten(1)
    pairs = present.to(x.device).flatten(0, 1)  # (N × S, G), example-major
    out = []
    for start in range(0, n * s, rows):
        example = torch.arange(start, min(start + rows, n * s), device=x.device) // s
        index = group[example] if len(group) > 1 else group.expand(len(example), -1)
        on = pairs[start:start + len(example)].gather(1, index)  # (R, F)
        inputs = laid_out_as(torch.where(on, flat_x[example], flat_b[example]).view(-1, *x.shape[1:]), x)
        with torch.no_grad():
            out.append(scores(inputs).gather(1, target[example][:, None])[:, 0])
    return torch.cat(out).view(n, s)


def laid_out_as(inputs: Tensor, x: Tensor) -> Tensor:
    """`inputs` in x's memory layout: channels_last where the run's images are (its convolutions are laid out
    for it)."""
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def cosine_similarity(x: Tensor, baseline: Tensor, mask: Tensor, present: Tensor, groups: int) -> Tensor:
    """(N, S) LIME's weight of each coalition: exp(−d² / 2w²), d the cosine distance between x and the coalition's
    input, from per-group dot products (no input is built): x·z = Σ_on x_g·x_g + Σ_off x_g·b_g."""
    n = len(x)
    group = mask.expand(n, *x.shape[1:]).flatten(1)
    flat_x, flat_b = x.flatten(1).double(), baseline.flatten(1).double()

    def per_group(values: Tensor) -> Tensor:
        return torch.zeros(n, groups, dtype=torch.float64, device=x.device).scatter_add_(1, group, values)

    xx, xb, bb = per_group(flat_x * flat_x), per_group(flat_x * flat_b), per_group(flat_b * flat_b)
    on = present.to(x.device).double()
    dot = on @ xx[..., None] + (1 - on) @ xb[..., None]  # (N, S, 1)
    norm = (on @ xx[..., None] + (1 - on) @ bb[..., None]).sqrt() * xx.sum(1).sqrt()[:, None, None]
    distance = 1 - (dot / norm.clamp_min(1e-8))[..., 0]
    return torch.exp(-distance.square() / (2 * KERNEL_WIDTH ** 2))


def weighted_linear_fit(present: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    """(N, G) coefficients of y ≈ b + Σ_g β_g z_g by weighted least squares with intercept, per example, from the
    normal equations (float64; one batched solve, where a batched SVD would take seconds). A dead group's column is
    all zero: a unit on its diagonal gives it 0; a ridge of RIDGE × the mean diagonal keeps the system solvable when
    there are fewer coalitions than groups."""
    z = present.to(y.device).double()
    design = torch.cat([torch.ones_like(z[..., :1]), z], -1)  # (N, S, G + 1)
    weighted = design * weight.double()[..., None]
    gram = weighted.transpose(1, 2) @ design  # (N, G + 1, G + 1)
    diagonal = gram.diagonal(dim1=1, dim2=2)
    ridge = torch.where(diagonal == 0, 1.0, RIDGE * diagonal.mean(1, keepdim=True))
    ridge[:, 0] = 0  # the intercept is not shrunk
    gram = gram + torch.diag_embed(ridge)
    return torch.linalg.solve(gram, weighted.transpose(1, 2) @ y.double()[..., None])[:, 1:, 0]


def weighted_lasso(present: Tensor, y: Tensor, weight: Tensor, alpha: float = LASSO_ALPHA) -> Tensor:
    """(N, G) coefficients of scikit-learn's Lasso(alpha) with sample weights, for all examples at once:
    minimize Σ w (y − b − z·β)² / (2 Σ w) + α |β|₁ by cyclic coordinate descent on weighted-centred data."""
    z, y = present.to(y.device).double(), y.double()
    w = weight.double() / weight.double().sum(1, keepdim=True)  # (N, S), sums to 1
    z = z - (w[..., None] * z).sum(1, keepdim=True)
    residual = y - (w * y).sum(1, keepdim=True)  # (N, S): y centred, minus z·β (β = 0 to start)
    curvature = (w[..., None] * z * z).sum(1)  # (N, G)
    beta = torch.zeros_like(curvature)
    for _ in range(LASSO_SWEEPS):
        before = beta.clone()
        for j in range(z.shape[-1]):
            zj = z[..., j]
            rho = (w * zj * residual).sum(1) + curvature[:, j] * beta[:, j]
            new = torch.sign(rho) * (rho.abs() - alpha).clamp_min(0) / curvature[:, j].clamp_min(1e-12)
            residual = residual - zj * (new - beta[:, j])[:, None]
            beta[:, j] = new
        if ((beta - before).abs().amax() <= LASSO_TOLERANCE * beta.abs().amax().clamp_min(1e-12)):
            break
    return beta
