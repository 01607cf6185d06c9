"""The seven gradient aggregators of issue 21 against their papers' defining properties (closed forms and hand
cases) and against torchjd's implementations of the same aggregators on random Jacobians (float64)."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from tests.mtl.toys import LinearToy, check_private_grads, make_balancer

from hydranet.mtl.aligned_mtl import balance_matrix
from hydranet.mtl.db_mtl import EPS as DB_EPS
from hydranet.mtl.fairgrad import fairgrad_weights
from hydranet.mtl.graddrop import graddrop_combine
from hydranet.mtl.gradvac import gradvac_coefficients, vaccine_weight
from hydranet.mtl.imtl import imtl_g_coefficients
from hydranet.mtl.nash_mtl import nash_alpha
from hydranet.mtl.upgrad import upgrad_coefficients

agg = pytest.importorskip("torchjd.aggregation")
from torchjd.linalg import DualConeProjector  # noqa: E402


def jacobians(seed: int, shapes=((2, 6), (3, 5), (4, 9), (6, 12))):
    """Random (T, P) float64 matrices with conflicting rows (shifted so some rows agree, others do not)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(t, p, generator=gen, dtype=torch.float64) + 0.3 for t, p in shapes]


def gram(matrix: torch.Tensor) -> np.ndarray:
    return (matrix @ matrix.T).numpy()


def combined(coeffs, matrix: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(coeffs), dtype=matrix.dtype) @ matrix


@pytest.mark.parametrize("name", ["upgrad", "aligned_mtl", "imtl", "gradvac", "graddrop"])
def test_identical_gradients_give_equals_sum(name):
    """Where no task conflicts and all gradients are one g, each of them is the `equal` balancer: T·g."""
    toy = LinearToy([[1.0, -2.0, 0.5]] * 3)
    weights = make_balancer(name).backward(toy.losses(), [toy.w])
    assert torch.allclose(toy.w.grad, 3 * toy.grads[0], rtol=1e-5)
    check_private_grads(toy, [1.0, 1.0, 1.0])
    assert set(weights) == set(toy.names)


# --- UPGrad -------------------------------------------------------------------------------------------


def test_upgrad_never_conflicts_and_is_the_sum_when_rows_agree():
    for matrix in jacobians(0):
        update = combined(upgrad_coefficients(gram(matrix)), matrix)
        assert (matrix @ update).min() >= -1e-9 * update.norm() * matrix.norm()  # no task's loss rises
    agreeing = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.0, 0.3, 1.0]], dtype=torch.float64)  # G ≥ 0
    assert torch.allclose(combined(upgrad_coefficients(gram(agreeing)), agreeing), agreeing.sum(0))


class SlsqpProjector(DualConeProjector):
    """torchjd's dual-cone projector interface solved by scipy's SLSQP (torchjd's default needs quadprog, which
    is not installed): rows of W = argmin wᵀ G w s.t. w ≥ u, an independent solver of the same QP."""

    def __call__(self, U, G):
        g = G.numpy()
        rows = [minimize(lambda w: w @ g @ w, u + 1.0, jac=lambda w: 2 * g @ w, method="SLSQP",
                         bounds=[(x, None) for x in u], options={"ftol": 1e-15, "maxiter": 500}).x
                for u in U.numpy()]
        return torch.as_tensor(np.stack(rows), dtype=G.dtype)


def test_upgrad_matches_torchjd():
    """torchjd's UPGrad with weights 1 (its default 1/T gives 1/T of the update: the sum is hydranet's scale)."""
    for matrix in jacobians(1):
        theirs = agg.UPGrad(pref_vector=torch.ones(len(matrix), dtype=matrix.dtype), projector=SlsqpProjector())
        expected = theirs(matrix)
        assert torch.allclose(combined(upgrad_coefficients(gram(matrix)), matrix), expected, rtol=1e-5,
                              atol=1e-6 * expected.norm())


# --- Aligned-MTL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["min", "median", "rmse"])
def test_aligned_mtl_has_condition_number_one_and_matches_torchjd(scale):
    for matrix in jacobians(2):
        b = balance_matrix(gram(matrix), scale)
        aligned = torch.as_tensor(b) @ matrix  # (T, P) ĝ
        singular = torch.linalg.svdvals(aligned)
        eigenvalues = torch.linalg.svdvals(matrix).numpy() ** 2
        target = {"min": eigenvalues.min(), "median": np.median(eigenvalues), "rmse": eigenvalues.mean()}[scale]
        assert np.allclose(singular.numpy(), np.sqrt(target), rtol=1e-8)  # condition number 1, at the chosen scale
        theirs = agg.AlignedMTL(pref_vector=torch.ones(len(matrix), dtype=matrix.dtype), scale_mode=scale)
        if scale != "median" or len(matrix) % 2:  # torch's median of an even count is the lower one, numpy's the mean
            assert torch.allclose(combined(b.sum(0), matrix), theirs(matrix), rtol=1e-8, atol=1e-10)


# --- IMTL ---------------------------------------------------------------------------------------------


def test_imtl_g_projects_equally_on_every_unit_gradient_and_matches_torchjd():
    for matrix in jacobians(3):
        alpha = imtl_g_coefficients(gram(matrix))
        update = combined(alpha, matrix)
        projections = matrix @ update / matrix.norm(dim=1)
        assert torch.allclose(projections, projections.mean().expand_as(projections), rtol=1e-8)
        assert alpha.sum() == pytest.approx(1.0)
        assert torch.allclose(update, agg.IMTLG()(matrix), rtol=1e-8, atol=1e-12)  # both Σ α = 1


def test_imtl_g_equals_the_papers_closed_form():
    """α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2:T}, with D_t = g_1 − g_t and U_t = u_1 − u_t (LibMTL's code)."""
    for matrix in jacobians(4):
        units = matrix / matrix.norm(dim=1, keepdim=True)
        d, u = matrix[:1] - matrix[1:], units[:1] - units[1:]
        rest = matrix[0] @ u.T @ torch.linalg.inv(d @ u.T)
        assert np.allclose(imtl_g_coefficients(gram(matrix)), torch.cat([1 - rest.sum(0, keepdim=True), rest]))


def test_imtl_l_scales_each_loss_and_learns_its_scale():
    """exp(s)·L − s: at s = 0 the scale's gradient is L − 1, the raw loss's weight the IMTL-G coefficient."""
    toy = LinearToy([[1.0, 0.0], [1.0, 1.0]])
    balancer = make_balancer("imtl", tasks={"t0": None, "t1": None}, loss_scale=True)
    losses = toy.losses()
    weights = balancer.backward(losses, [toy.w])
    assert torch.allclose(balancer.log_scales.grad, torch.stack([l.detach() for l in losses.values()]) - 1)
    coeffs = 2 * imtl_g_coefficients(gram(toy.grads.double()))
    assert [float(weights[n]) for n in toy.names] == pytest.approx(list(coeffs))
    assert list(balancer.parameters()) == [balancer.log_scales]
    assert list(make_balancer("imtl").parameters()) == []  # IMTL-G alone learns nothing


# --- DB-MTL -------------------------------------------------------------------------------------------


def test_db_mtl_balances_log_gradients_through_their_moving_average():
    """Two steps by hand (LibMTL's `DB_MTL`): b ← g + β/k^σ·(b − g) on ∇ log L, rows rescaled to the largest."""
    toy = LinearToy([[3.0, 0.0, 1.0], [0.0, -0.5, 0.0]])
    balancer = make_balancer("db_mtl")
    losses = toy.losses()  # L_t = t + 1 at w = 0, h = 1
    logs = toy.grads.double() / torch.tensor([[1.0 + DB_EPS], [2.0 + DB_EPS]], dtype=torch.float64)
    buffer = torch.zeros_like(logs)
    for step in (1, 2):
        toy.w.grad = None
        for h in toy.heads:
            h.grad = None
        weights = balancer.backward(toy.losses(), [toy.w])
        buffer = logs + 0.9 / step**0.5 * (buffer - logs)
        norms = buffer.norm(dim=1)
        alpha = norms.max() / (norms + DB_EPS)
        assert torch.allclose(toy.w.grad.double(), alpha @ buffer, rtol=1e-6)
        assert [float(weights[n]) for n in toy.names] == pytest.approx(alpha.tolist())
        assert torch.allclose((alpha[:, None] * buffer).norm(dim=1), norms.max().expand(2))  # equal norms
    check_private_grads(toy, [1 / float(loss.detach()) for loss in losses.values()])  # ∇ log L on the heads


# --- GradVac ------------------------------------------------------------------------------------------


def test_gradvac_raises_the_cosine_to_its_target():
    g_i, g_j = np.array([1.0, -2.0, 0.5]), np.array([-0.5, 1.0, 2.0])
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    for target in (0.0, 0.3, 0.8):
        w = vaccine_weight(np.linalg.norm(g_i), np.linalg.norm(g_j), cos(g_i, g_j), target)
        assert cos(g_i + w * g_j, g_j) == pytest.approx(target, abs=1e-7)


def test_gradvac_first_step_is_pcgrad_on_a_conflict():
    """Targets start at 0: a conflicting pair is projected to cosine 0 (PCGrad's projection); the targets then move."""
    matrix = torch.tensor([[1.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    targets = np.zeros((2, 2))
    coeffs = gradvac_coefficients(gram(matrix), targets, [[1], [0]], beta=0.5)
    g1, g2 = matrix
    pc = g1 - (g1 @ g2) / (g2 @ g2) * g2 + g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert torch.allclose(combined(coeffs, matrix), pc)
    cosine = float(g1 @ g2 / g1.norm() / g2.norm())
    assert targets == pytest.approx(np.array([[0, 0.5 * cosine], [0.5 * cosine, 0]]))


def test_gradvac_resumes_with_its_targets():
    """The targets φ̂ travel in the checkpoint: a conflicting pair's correction depends on them from step 2 on."""
    first, toy = make_balancer("gradvac"), LinearToy([[1.0, 0.0], [-1.0, 2.0], [0.5, 0.5]])
    first.backward(toy.losses(), [toy.w])
    resumed = make_balancer("gradvac")
    resumed.load_state_dict(first.state_dict())
    updates = []
    for balancer in (first, resumed):
        toy.w.grad = None
        balancer.backward(toy.losses(), [toy.w])
        updates.append(toy.w.grad.clone())
    assert torch.equal(*updates)


def test_gradvac_matches_torchjd_over_several_steps():
    """Same task orders (torchjd draws them from torch's global generator: replayed here) and the same targets."""
    matrices = jacobians(5, shapes=((4, 7),) * 4)
    theirs, targets = agg.GradVac(beta=0.5), np.zeros((4, 4))
    for step, matrix in enumerate(matrices):
        torch.manual_seed(step)
        orders = [[[j for j in range(4) if j != i][k] for k in torch.randperm(3).tolist()] for i in range(4)]
        torch.manual_seed(step)
        expected = theirs(matrix)
        assert torch.allclose(combined(gradvac_coefficients(gram(matrix), targets, orders, 0.5), matrix), expected,
                              rtol=1e-8, atol=1e-10)


# --- GradDrop -----------------------------------------------------------------------------------------


def test_graddrop_keeps_one_sign_per_coordinate_by_its_purity():
    """Coordinates: all positive (purity 1), all negative (purity 0), mixed with purity ½(1 + 1/3) = ⅔."""
    grads = torch.tensor([[1.0, -1.0, 2.0], [3.0, -2.0, -1.0]])
    low, high = torch.tensor([0.5, 0.5, 0.6]), torch.tensor([0.5, 0.5, 0.7])  # U < ⅔: positive wins; U > ⅔: negative
    assert torch.equal(graddrop_combine(grads, low), torch.tensor([4.0, -3.0, 2.0]))
    assert torch.equal(graddrop_combine(grads, high), torch.tensor([4.0, -3.0, -1.0]))
    assert torch.equal(graddrop_combine(grads, high, leak=1.0), grads.sum(0))
    assert torch.equal(graddrop_combine(torch.zeros(2, 3), low), torch.zeros(3))  # no 0/0


@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_matches_torchjd(leak):
    for step, matrix in enumerate(jacobians(6)):
        torch.manual_seed(step)
        uniform = torch.rand(matrix.shape[1], dtype=matrix.dtype)
        torch.manual_seed(step)
        expected = agg.GradDrop(leak=torch.full((len(matrix),), leak, dtype=matrix.dtype))(matrix)
        assert torch.allclose(graddrop_combine(matrix, uniform, leak), expected, rtol=1e-12)


# --- FairGrad -----------------------------------------------------------------------------------------


def test_fairgrad_special_cases_and_its_equation():
    """α = 0: the sum (weights 1); α = 1: proportional fairness, Nash-MTL's G w = 1/w; any α: G w = w^(−1/α)."""
    for matrix in jacobians(7):
        g = gram(matrix)
        assert np.array_equal(fairgrad_weights(g, 0.0), np.ones(len(g)))
        assert np.allclose(fairgrad_weights(g, 1.0), nash_alpha(g), rtol=1e-6)
        w = fairgrad_weights(g, 2.0)
        assert w.min() > 0 and np.allclose(g @ w, w ** -0.5, rtol=1e-8)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_fairgrad_matches_torchjd(alpha):
    """torchjd's α = 0 weights are 1/T (the mean); its other α solve the same equation as here, less tightly."""
    for matrix in jacobians(8):
        expected = agg.FairGrad(alpha=alpha)(matrix) * (len(matrix) if alpha == 0 else 1)
        assert torch.allclose(combined(fairgrad_weights(gram(matrix), alpha), matrix), expected, rtol=1e-4,
                              atol=1e-6 * expected.norm())


def test_fairgrad_gives_a_term_without_shared_gradient_no_weight():
    g = gram(torch.tensor([[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5]], dtype=torch.float64))
    w = fairgrad_weights(g, 2.0)
    assert w[1] == 0 and w[0] > 0 and w[2] > 0 and all(math.isfinite(x) for x in w)
