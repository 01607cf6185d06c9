"""Shared gradient helpers and PCGrad: against autograd, a hand-computed projection, a vector-form reference."""

import numpy as np
import torch
from toys import LinearToy, check_private_grads, config, make_balancer, task_losses, tiny_problem

from hydranet.mtl import gradients
from hydranet.mtl.pcgrad import PCGrad, pcgrad_coefficients




# --- shared helpers ------------------------------------------------------------------------------


def test_backward_private_leaves_shared_params_alone():
    toy = LinearToy([[1.0, 2.0], [3.0, 4.0]])
    gradients.backward_private(toy.losses(), {"t0": 1.0, "t1": 2.0}, [toy.w])
    assert toy.w.grad is None
    check_private_grads(toy, [1.0, 2.0])


def test_combined_gradient_equals_autograd_of_the_weighted_sum():
    """T per-term passes plus the private backward give exactly ∇(Σ w_t L_t): nothing counted twice or missed."""
    cfg, tasks, model, batch = tiny_problem()
    shared = model.shared_parameters()
    weights = {"digit": 2.0, "even": 0.5}
    reference = torch.autograd.grad(sum(weights[n] * l for n, l in task_losses(tasks, model, batch).items()),
                                    list(model.parameters()))
    losses = task_losses(tasks, model, batch)
    grads = gradients.term_gradients(list(losses.values()), shared)  # (T, P)
    gradients.combine_and_backward(losses, shared, grads, torch.tensor([2.0, 0.5]), weights)
    for p, ref in zip(model.parameters(), reference):
        assert torch.allclose(p.grad, ref, atol=1e-6)


def test_private_backward_never_reaches_the_trunk():
    """The cost claim: T passes through the trunk, not T + 1."""
    cfg, tasks, model, batch = tiny_problem()
    losses = task_losses(tasks, model, batch)
    reached = []
    model.features.register_hook(lambda grad: reached.append(grad))
    gradients.backward_private(losses, {name: 1.0 for name in losses}, model.shared_parameters())
    assert not reached and all(p.grad is None for p in model.shared_parameters())
    assert all(p.grad is not None for name in tasks for p in model.task_parameters(name))


# --- PCGrad --------------------------------------------------------------------------------------


def test_pcgrad_hand_computed_projection():
    """g1=(1,0), g2=(-1,1) conflict: g1' = g1 + g2/2 = (.5,.5), g2' = g2 + g1 = (0,1); the sum is (.5, 1.5)."""
    toy = LinearToy([[1.0, 0.0], [-1.0, 1.0]])
    weights = make_balancer(PCGrad).backward(toy.losses(), [toy.w])
    assert torch.allclose(toy.w.grad, torch.tensor([0.5, 1.5]))
    assert torch.allclose(torch.stack(list(weights.values())), torch.tensor([2.0, 1.5]))
    check_private_grads(toy, [1.0, 1.0])  # task-specific parameters: their own gradient


def test_pcgrad_leaves_agreeing_gradients_alone():
    toy = LinearToy([[1.0, 0.0], [1.0, 1.0]])
    make_balancer(PCGrad).backward(toy.losses(), [toy.w])
    assert torch.allclose(toy.w.grad, torch.tensor([2.0, 1.0]))


def pcgrad_reference(grads: np.ndarray, orders) -> np.ndarray:
    """The paper's procedure on the vectors themselves."""
    out = []
    for i, order in enumerate(orders):
        g = grads[i].copy()
        for j in order:
            dot = g @ grads[j]
            if dot < 0:
                g -= dot / (grads[j] @ grads[j]) * grads[j]
        out.append(g)
    return np.sum(out, axis=0)


def test_pcgrad_gram_form_matches_vector_form():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 6))
    orders = [list(rng.permutation([j for j in range(4) if j != i])) for i in range(4)]
    coeffs = pcgrad_coefficients(torch.from_numpy(grads @ grads.T), orders).numpy()
    assert np.allclose(coeffs @ grads, pcgrad_reference(grads, orders))
