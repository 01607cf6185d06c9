"""MGDA, CAGrad and Nash-MTL against closed forms and independent solvers (scipy SLSQP)."""

import math
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar
from tests.mtl.toys import LinearToy, check_private_grads, config, make_balancer, task_losses, tiny_problem

from hydranet.mtl.cagrad import CAGrad, cagrad_coefficients, dual_weights
from hydranet.mtl.mgda import MGDA
from hydranet.mtl.min_norm import min_norm_weights
from hydranet.mtl.nash_mtl import NashMTL, nash_alpha, nash_pair




# --- MGDA ----------------------------------------------------------------------------------------


def test_min_norm_two_vectors_closed_form():
    rng = np.random.default_rng(1)
    ends = [np.array([[1.0, 0.0], [3.0, 0.0]]), np.array([[3.0, 0.0], [1.0, 0.0]])]  # γ = 1 and γ = 0: the clipped ends
    for g1, g2 in [*ends, *rng.normal(size=(20, 2, 5))]:
        expected = np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0, 1)
        gram = np.array([[g1 @ g1, g1 @ g2], [g1 @ g2, g2 @ g2]])
        assert np.allclose(min_norm_weights(gram), [expected, 1 - expected])


@pytest.mark.parametrize("t, p, scales", [(3, 4, 1.0), (5, 4, 1.0), (8, 4, 1.0), (16, 40, 1.0), (16, 5, 1.0),
                                          (8, 40, 1e3)])
def test_min_norm_is_optimal_against_slsqp(t, p, scales):
    """Optimality (every vector is at least as far along the point as the point itself: the KKT conditions) and
    SLSQP's value, with more tasks than dimensions too (a singular Gram matrix) and norms 10³ apart."""
    rng = np.random.default_rng(t * p)
    grads = (rng.normal(size=(t, p)) + 0.5) * np.geomspace(1.0, scales, t)[:, None]
    gram = grads @ grads.T
    alpha = min_norm_weights(gram)
    ref = minimize(lambda a: a @ gram @ a, np.full(t, 1 / t), method="SLSQP", bounds=[(0, 1)] * t,
                   constraints={"type": "eq", "fun": lambda a: a.sum() - 1}, options={"ftol": 1e-14, "maxiter": 500}).x
    norm2 = alpha @ gram @ alpha
    assert alpha.min() >= 0 and math.isclose(alpha.sum(), 1)
    assert (gram @ alpha).min() >= norm2 - 1e-8 * np.trace(gram) / t
    assert norm2 <= ref @ gram @ ref + 1e-9 * np.trace(gram) / t


def test_min_norm_of_repeated_and_zero_vectors():
    """Repeated vectors (a singular G) share the weight their one copy would get; all-zero gradients give uniform weights."""
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 2.0])
    gram = np.stack([g1, g1, g2]) @ np.stack([g1, g1, g2]).T
    alpha = min_norm_weights(gram)
    a = np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0, 1)
    assert math.isclose(alpha[0] + alpha[1], a, abs_tol=1e-8) and math.isclose(alpha[2], 1 - a, abs_tol=1e-8)
    assert np.allclose(min_norm_weights(np.zeros((3, 3))), 1 / 3)


def test_the_simplex_solvers_survive_a_gram_matrix_indefinite_by_round_off():
    """A Gram matrix of float32 gradients of rank 2 (seen in a run): its smallest eigenvalue is −1.1e-9. The face
    solve on it gave MGDA weights of ±10⁸ and a NaN; both solvers now stay on the simplex, MGDA optimal. Two
    opposite float32 gradients (a negative determinant) made the two-task closed form take √ of a negative."""
    gram = np.array([[0.04388549, 0.00392097, 0.02233484], [0.00392097, 0.01679531, 0.00364002],
                     [0.02233484, 0.00364002, 0.01153142]])
    assert np.linalg.eigvalsh(gram)[0] < 0
    alpha = min_norm_weights(gram)
    assert np.isfinite(alpha).all() and alpha.min() >= 0 and math.isclose(alpha.sum(), 1)
    assert (gram @ alpha).min() >= alpha @ gram @ alpha - 1e-8
    w = dual_weights(gram, 0.4)
    assert np.isfinite(w).all() and w.min() >= 0 and math.isclose(w.sum(), 1)
    opposite = torch.tensor([[-4.084147], [11.186057]])  # float32, as cpu_gram multiplies: its determinant is < 0
    pair = (opposite @ opposite.T).double().numpy()
    assert pair[0, 0] * pair[1, 1] < pair[0, 1] ** 2
    alpha = min_norm_weights(pair)  # the zero vector is in the hull: α = (|g2|, |g1|) / (|g1| + |g2|)
    assert np.allclose(alpha, [11.186057 / 15.270204, 4.084147 / 15.270204], atol=1e-6)
    for c in (0.4, 2.0, 10.0):
        weights = dual_weights(pair, c)
        assert np.isfinite(weights).all() and weights.min() >= 0 and math.isclose(weights.sum(), 1)


def test_mgda_on_shared_params_uses_the_closed_form():
    toy = LinearToy([[1.0, 0.0], [-1.0, 2.0]])
    weights = make_balancer(MGDA).backward(toy.losses(), [toy.w])
    g1, g2 = toy.grads.double().numpy()
    a = np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0, 1)
    assert np.allclose(list(weights.values()), [a, 1 - a])
    assert torch.allclose(toy.w.grad, a * toy.grads[0] + (1 - a) * toy.grads[1])
    check_private_grads(toy, [a, 1 - a])


def test_mgda_ub_solves_on_the_features():
    cfg, tasks, model, batch = tiny_problem()
    balancer = make_balancer(MGDA, cfg, tasks)
    balancer.on_fit_start(SimpleNamespace(model=model))
    losses = task_losses(tasks, model, batch)
    z = model.features  # (B, D)
    rows = [torch.autograd.grad(loss, z, retain_graph=True)[0].flatten() for loss in losses.values()]
    gram = torch.stack(rows) @ torch.stack(rows).T
    weights = balancer.backward(losses, model.shared_parameters())
    assert np.allclose(list(weights.values()), min_norm_weights(gram.double().numpy()), atol=1e-6)
    reference = torch.autograd.grad(sum(weights[n] * l for n, l in task_losses(tasks, model, batch).items()),
                                    list(model.parameters()))
    for p, ref in zip(model.parameters(), reference):
        assert torch.allclose(p.grad, ref, atol=1e-6)


# --- CAGrad --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, factor", [("sum", 3), ("mean", 1)])
def test_cagrad_with_c_zero_is_the_sum_or_mean_gradient(scale, factor):
    """scale sum (the default, the authors' T·d): c = 0 gives the summed gradient, as `equal` does."""
    toy = LinearToy([[1.0, 0.0], [-1.0, 3.0], [0.5, 0.5]])
    make_balancer(CAGrad, c=0.0, scale=scale).backward(toy.losses(), [toy.w])
    assert torch.allclose(toy.w.grad, toy.grads.mean(0) * factor)
    check_private_grads(toy, [1.0, 1.0, 1.0])


def test_cagrad_sum_scale_is_t_times_the_mean_scale():
    grads = [[1.0, 0.2], [-0.6, 1.0], [0.3, -0.4]]
    updates = {}
    for scale in ("sum", "mean"):
        toy = LinearToy(grads)
        make_balancer(CAGrad, c=0.5, scale=scale).backward(toy.losses(), [toy.w])
        updates[scale] = toy.w.grad.clone()
    assert torch.allclose(updates["sum"], 3 * updates["mean"], atol=1e-6)


def test_cagrad_solves_the_primal_problem():
    """(1+c²)·d must be argmax_d min_t g_t·d over the ball |d − g0| ≤ c|g0| (solved here directly)."""
    grads = np.array([[1.0, 0.2], [-0.6, 1.0], [0.3, -0.4]])
    c = 0.5
    d = cagrad_coefficients(grads @ grads.T, c) @ grads * (1 + c * c)
    g0 = grads.mean(0)
    radius = c * np.linalg.norm(g0)
    cons = [{"type": "ineq", "fun": lambda v: radius**2 - (v[:2] - g0) @ (v[:2] - g0)},
            {"type": "ineq", "fun": lambda v: grads @ v[:2] - v[2]}]
    ref = minimize(lambda v: -v[2], np.r_[g0, 0.0], method="SLSQP", constraints=cons, options={"ftol": 1e-12}).x[:2]
    assert np.allclose(d, ref, atol=1e-4)
    assert (grads @ d).min() > (grads @ g0).min()  # improves the worst task over plain averaging


def cagrad_dual(gram: np.ndarray, c: float, w: np.ndarray) -> float:
    """CAGrad's dual objective g_w·g0 + c|g0|·|g_w| from the Gram matrix."""
    return w @ gram.mean(axis=1) + c * np.sqrt(gram.mean()) * np.sqrt(max(w @ gram @ w, 0.0))


@pytest.mark.parametrize("ratio", [1.0, 1e3, 1e5])
def test_cagrad_dual_is_the_line_minimum_at_any_gradient_scale(ratio):
    """T = 2: the dual is convex in one weight γ (w = (γ, 1 − γ)), minimized here by a bounded scalar search.
    The scipy SLSQP solve used before stopped far from it once the task gradients' norms differ by 10³."""
    grads = np.array([[2.0, 1.0, 0.0, -1.0, 0.5], [-0.3, 0.2, 1.0, 0.4, -0.1]]) * np.array([[ratio], [1.0]])
    gram = grads @ grads.T
    line = minimize_scalar(lambda g: cagrad_dual(gram, 0.4, np.array([g, 1 - g])), bounds=(0, 1), method="bounded",
                           options={"xatol": 1e-12})
    w = dual_weights(gram, 0.4)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    assert cagrad_dual(gram, 0.4, w) <= line.fun + 1e-9 * abs(line.fun)


@pytest.mark.parametrize("t, p", [(3, 40), (8, 40), (16, 40), (8, 3), (16, 5)])
def test_cagrad_dual_is_optimal_against_slsqp(t, p):
    """The active-set solve reaches SLSQP's optimum or better on random conflicting gradients of one scale,
    with more tasks than dimensions too (a singular Gram matrix)."""
    gen = np.random.default_rng(t * p)
    grads = gen.standard_normal((t, p)) + 0.3
    gram = grads @ grads.T
    ref = minimize(lambda w: cagrad_dual(gram, 0.4, w), np.full(t, 1 / t), method="SLSQP", bounds=[(0, 1)] * t,
                   constraints={"type": "eq", "fun": lambda w: w.sum() - 1}, options={"ftol": 1e-14, "maxiter": 500})
    w = dual_weights(gram, 0.4)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    assert cagrad_dual(gram, 0.4, w) <= ref.fun + 1e-8 * abs(ref.fun)


# --- Nash-MTL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [2, 3, 5, 8])
def test_nash_alpha_solves_the_bargaining_equation(t):
    rng = np.random.default_rng(t)
    for _ in range(5):
        grads = rng.normal(size=(t, 3 * t)) * rng.uniform(0.1, 10, size=(t, 1))
        gram = grads @ grads.T
        alpha = nash_alpha(gram / np.linalg.norm(gram))
        assert (alpha > 0).all()
        assert np.allclose(alpha * (gram / np.linalg.norm(gram) @ alpha), 1.0, atol=1e-8)


def test_nash_pair_is_newtons_solution():
    """Two tasks in closed form, equal to Newton's iterations (to their tolerance) on pairs of any scale, nearly
    opposite ones too (where √(K₁₁K₂₂) + K₁₂ cancels to ~1e-8 of its terms: residuals ~1e-7 for both); an exactly
    opposite pair has no solution and is left to Newton."""
    rng = np.random.default_rng(0)
    for i in range(300):
        g = rng.normal(size=(2, 5)) * rng.uniform(1e-3, 1e3, size=(2, 1))
        if i % 3 == 0:
            g[1] = -g[0] * rng.uniform(0.5, 2) + 1e-4 * np.abs(g[0]).max() * rng.normal(size=5)
        k = g @ g.T / np.linalg.norm(g @ g.T)
        pair = nash_pair(k)
        np.testing.assert_allclose(pair * (k @ pair), 1.0, rtol=1e-6)
        with patch("hydranet.mtl.nash_mtl.nash_pair", lambda k: None):
            newton = nash_alpha(k)
        np.testing.assert_allclose(nash_alpha(k), newton, rtol=1e-5)
    assert nash_pair(np.array([[1.0, -1.0], [-1.0, 1.0]])) is None


def test_nash_mtl_orthogonal_gradients_closed_form():
    """Gᵀ G = diag(4, 1) gives α_t = 1/‖g_t‖ = (1/2, 1), the paper's and the authors' scale; Σ α_t g_t = (1, 1)
    has norm √T and is then clipped to norm 1."""
    toy = LinearToy([[2.0, 0.0], [0.0, 1.0]])
    weights = make_balancer(NashMTL, max_norm=1.0).backward(toy.losses(), [toy.w])
    expected = [0.5, 1.0]
    assert np.allclose(list(weights.values()), expected)
    assert torch.allclose(toy.w.grad, torch.tensor([1.0, 1.0]) / math.sqrt(2), atol=1e-5)
    check_private_grads(toy, expected)


@pytest.mark.parametrize("max_norm", [0.5, 2.0])
@pytest.mark.parametrize("gradients", ["parameters", "representation"])
def test_nash_mtl_clips_the_shared_gradient_as_clip_grad_norm(max_norm, gradients):
    """The shared gradient is Σ α_t g_t scaled as clip_grad_norm_ scales it (its norm from the Gram matrix on the
    parameters, from a pass over the gradients on z); the heads' gradients are not clipped."""
    cfg, tasks, model, batch = tiny_problem(seed=1)
    balancer = make_balancer(NashMTL, cfg, tasks, max_norm=max_norm, gradients=gradients)
    balancer.on_fit_start(SimpleNamespace(model=model))
    alpha = balancer.backward(task_losses(tasks, model, batch), model.shared_parameters())
    shared, heads = model.shared_parameters(), [p for task in tasks for p in model.task_parameters(task)]
    got = [p.grad.clone() for p in [*shared, *heads]]
    expected = list(torch.autograd.grad(sum(alpha[t] * loss for t, loss in task_losses(tasks, model, batch).items()),
                                        [*shared, *heads]))
    norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in expected[:len(shared)]])))
    if gradients == "parameters":
        assert norm == pytest.approx(math.sqrt(2), rel=1e-4)  # √T: 0.5 clips it, 2 does not
    expected[:len(shared)] = [g * min(1.0, max_norm / (norm + 1e-6)) for g in expected[:len(shared)]]
    for g, ref in zip(got, expected, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-6)


def test_nash_mtl_clips_gradients_already_there_with_its_own():
    """With `.grad` already holding a gradient (accumulated by a caller), the clip acts on the total, as
    clip_grad_norm_ after the backward did: the norm from the Gram matrix would miss the part already there."""
    cfg, tasks, model, batch = tiny_problem(seed=1)
    shared = model.shared_parameters()
    for p in shared:
        p.grad = torch.full_like(p, 0.5)
    alpha = make_balancer(NashMTL, cfg, tasks, max_norm=1.0).backward(task_losses(tasks, model, batch), shared)
    expected = torch.autograd.grad(sum(alpha[t] * loss for t, loss in task_losses(tasks, model, batch).items()), shared)
    total = [ref + 0.5 for ref in expected]
    norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in total])))
    for p, ref in zip(shared, total, strict=True):
        torch.testing.assert_close(p.grad, ref * min(1.0, 1.0 / (norm + 1e-6)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_nash_mtl_combined_gradient_has_norm_sqrt_t_at_any_gradient_scale(scale):
    """α solves α_t·(Gᵀ G α)_t = 1 on the raw Gram, so ‖Σ α_t g_t‖ = √T (the authors' code: the same)."""
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(3, 3)) * scale).tolist()
    toy = LinearToy(rows)
    make_balancer(NashMTL, max_norm=0.0).backward(toy.losses(), [toy.w])
    assert float(toy.w.grad.norm()) == pytest.approx(math.sqrt(3), rel=1e-5)


def test_nash_mtl_reuses_alpha_between_updates():
    toy = LinearToy([[2.0, 0.0], [0.0, 1.0]])
    balancer = make_balancer(NashMTL, update_every=3, max_norm=0.0)
    seen = []
    for step in range(4):
        toy.grads = torch.tensor([[2.0 + step, 0.0], [0.0, 1.0]])
        seen.append(list(balancer.backward(toy.losses(), [toy.w]).values()))
    assert seen[0] == seen[1] == seen[2] != seen[3]
