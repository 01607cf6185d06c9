"""Shared gradient helpers and PCGrad: against autograd, a hand-computed projection, a vector-form reference."""

import numpy as np
import torch
from tests.mtl.toys import LinearToy, check_private_grads, config, make_balancer, task_losses, tiny_problem

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
    gradients.combine(losses, shared, gradients.TermGradients(grads), torch.tensor([2.0, 0.5]), weights)
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
    assert np.allclose(list(weights.values()), [2.0, 1.5])
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
    coeffs = pcgrad_coefficients(grads @ grads.T, orders)
    assert np.allclose(coeffs @ grads, pcgrad_reference(grads, orders))


def test_pcgrad_does_not_project_on_a_gradient_the_float32_gram_matrix_lost():
    """|g2|² = 1e-46 is 0 in float32 while g1·g2 = −1e-23 is not: dividing by it gave a coefficient of 10²⁸⁴ (inf in
    float32, then a NaN gradient); g2 is no direction to project on, so g1 keeps its own."""
    grads = torch.tensor([[1.0, 0.0], [-1e-23, 0.0]])
    gram = (grads @ grads.T).double().numpy()
    assert gram[1, 1] == 0 and gram[0, 1] < 0
    assert np.allclose(pcgrad_coefficients(gram, [[1], [0]]), [1.0, 1.0])


def test_set_grad_keeps_the_parameters_memory_layout():
    """A channels_last conv weight gets a channels_last gradient, as from autograd: fused optimizers step a
    parameter and its gradient in storage order, so a contiguous gradient would move the wrong elements."""
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    flat = torch.arange(conv.weight.numel() + 4, dtype=torch.float32)
    gradients.set_grad([conv.weight, conv.bias], flat)
    assert conv.weight.grad.stride() == conv.weight.stride()
    assert torch.equal(conv.weight.grad, flat[:conv.weight.numel()].view(conv.weight.shape))
    gradients.set_grad([conv.weight, conv.bias], flat)  # accumulates like backward()
    assert torch.equal(conv.weight.grad, 2 * flat[:conv.weight.numel()].view(conv.weight.shape))


def test_a_gradient_method_steps_a_channels_last_model_like_a_contiguous_one():
    """One PCGrad step with fused AdamW on a channels_last CNN equals the same step on its NCHW twin."""
    from hydranet.models import HydraNet
    from hydranet.models.trunks import CNNOptions, cnn

    _, tasks, _, batch = tiny_problem()
    steps = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        trunk = cnn(CNNOptions(channels=[4, 6], dense=[8]), (1, 4, 4))  # the second conv's layouts differ
        model = HydraNet(trunk, {name: task.head(trunk.out_dim) for name, task in tasks.items()}).to(memory_format=layout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
        x = batch["x"].contiguous(memory_format=layout)
        make_balancer(PCGrad).backward(task_losses(tasks, model, {**batch, "x": x}), model.shared_parameters())
        optimizer.step()
        steps.append({k: v.contiguous() for k, v in model.state_dict().items()})
    for key in steps[0]:
        torch.testing.assert_close(steps[1][key], steps[0][key], rtol=1e-5, atol=1e-6)
