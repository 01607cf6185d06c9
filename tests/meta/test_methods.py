"""Meta-learners against references computed by hand or by plain autograd: ProtoNet's logits, MAML's second-order
and FOMAML's first-order meta-gradients through one inner SGD step, ANIL's head-only inner loop, Reptile's update."""

import pytest
import torch
import torch.nn.functional as F

from hydranet.config import load_config
from hydranet.meta.episodes import Episodes
from hydranet.meta.learner import MetaNet, Problem
from hydranet.meta.methods.gradient import ANIL, FOMAML, MAML, InnerLoopOptions, MAMLOptions, Reptile, ReptileOptions
from hydranet.meta.methods.protonet import ProtoNet, prototype_logits
from hydranet.meta.setup import learner
from hydranet.models.trunks import MLPOptions, mlp

ALPHA = 0.3
W1, B1, W2, B2 = "trunk.layers.1.weight", "trunk.layers.1.bias", "head.weight", "head.bias"


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    support = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]])  # class 0: (0,0) and (2,0); class 1: (0,4)
    labels = torch.tensor([[0, 0, 1]])
    query = torch.tensor([[[1.0, 1.0], [3.0, 4.0]]])
    # means (1, 0) and (0, 4): (1,1) is 1 and 1+9 away, (3,4) is 4+16 and 9 away
    expected = torch.tensor([[[-1.0, -10.0], [-20.0, -9.0]]])
    assert torch.equal(prototype_logits(support, labels, query, ways=2), expected)


def test_protonet_refuses_regression():
    with pytest.raises(Exception, match="protonet classifies"):
        ProtoNet(None, tiny_net(), Problem(regression=True))


def tiny_net() -> MetaNet:
    """Linear → GELU → linear head: GELU's curvature makes second-order terms that first-order methods drop."""
    torch.manual_seed(0)
    return MetaNet(mlp(MLPOptions(hidden=[4], activation="gelu"), (2,)), head_width=3)


def forward(p, x):
    """The tiny network written out, independent of functional_call."""
    return F.gelu(x @ p[W1].T + p[B1]) @ p[W2].T + p[B2]


def episodes(tasks=3, shots=4, queries=5) -> Episodes:
    g = torch.Generator().manual_seed(1)
    return Episodes(torch.randn(tasks, shots, 2, generator=g), torch.randint(0, 3, (tasks, shots), generator=g),
                    torch.randn(tasks, queries, 2, generator=g), torch.randint(0, 3, (tasks, queries), generator=g),
                    torch.arange(3).expand(tasks, 3))


def reference_meta_gradient(net, eps, adapted, second_order):
    """Mean query loss after one SGD step on the support loss, differentiated by plain autograd."""
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    losses = []
    for t in range(eps.tasks):
        support_loss = F.cross_entropy(forward(theta, eps.support_x[t]), eps.support_y[t])
        grads = torch.autograd.grad(support_loss, [theta[k] for k in adapted], create_graph=second_order)
        fast = dict(theta)
        for k, g in zip(adapted, grads):
            fast[k] = theta[k] - ALPHA * g if second_order else (theta[k] - ALPHA * g).detach().requires_grad_(True)
        losses.append((F.cross_entropy(forward(fast, eps.query_x[t]), eps.query_y[t]), fast))
    if second_order:
        return dict(zip(theta, torch.autograd.grad(torch.stack([l for l, _ in losses]).mean(), list(theta.values()))))
    per_task = [torch.autograd.grad(l, [f[k] for k in theta]) for l, f in losses]  # ∇θ' of each task's query loss
    return {k: torch.stack([g[i] for g in per_task]).mean(0) for i, k in enumerate(theta)}


def method_gradient(method_type, options, net):
    method = method_type(options, net, Problem(regression=False))
    _, grads = method.meta_gradient({k: v.detach() for k, v in net.named_parameters()}, episodes())
    return grads


def assert_close(got, expected):
    assert set(got) == set(expected)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6, msg=k)


def test_maml_meta_gradient_is_the_second_order_one():
    net = tiny_net()
    got = method_gradient(MAML, MAMLOptions(inner_steps=1, inner_lr=ALPHA), net)
    assert_close(got, reference_meta_gradient(net, episodes(), [W1, B1, W2, B2], second_order=True))
    first = reference_meta_gradient(net, episodes(), [W1, B1, W2, B2], second_order=False)
    assert not torch.allclose(got[W1], first[W1], atol=1e-4)  # the case tells second from first order


def test_fomaml_meta_gradient_is_the_first_order_one():
    net = tiny_net()
    got = method_gradient(FOMAML, InnerLoopOptions(inner_steps=1, inner_lr=ALPHA), net)
    assert_close(got, reference_meta_gradient(net, episodes(), [W1, B1, W2, B2], second_order=False))


def test_anil_adapts_only_the_head_and_differentiates_through_it():
    net = tiny_net()
    got = method_gradient(ANIL, MAMLOptions(inner_steps=1, inner_lr=ALPHA), net)
    assert_close(got, reference_meta_gradient(net, episodes(), [W2, B2], second_order=True))


def test_meta_sgd_learns_inner_learning_rates_that_act_like_inner_lr():
    """With learned rates all equal to inner_lr, the weights' meta-gradient is MAML's, and the rates get one."""
    net = tiny_net()
    method = MAML(MAMLOptions(inner_steps=1, inner_lr=ALPHA, learn_inner_lr=True), net, Problem(regression=False))
    params = {**{k: v.detach() for k, v in net.named_parameters()}, **method.extra_parameters(net)}
    _, grads = method.meta_gradient(params, episodes())
    expected = reference_meta_gradient(net, episodes(), [W1, B1, W2, B2], second_order=True)
    for k in expected:
        torch.testing.assert_close(grads[k], expected[k], rtol=1e-5, atol=1e-6)
    assert grads[f"inner_lr:{W1}"].shape == net.trunk.layers[1].weight.shape and grads[f"inner_lr:{W1}"].abs().sum() > 0


def test_reptile_update_moves_theta_by_epsilon_towards_the_adapted_weights():
    net, eps, steps, epsilon = tiny_net(), episodes(), 3, 0.25
    method = Reptile(ReptileOptions(inner_steps=steps, inner_lr=ALPHA), net, Problem(regression=False))
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    adapted = []
    for t in range(eps.tasks):  # plain SGD on the task's support and query examples
        phi = {k: v.clone().requires_grad_(True) for k, v in before.items()}
        x, y = torch.cat([eps.support_x[t], eps.query_x[t]]), torch.cat([eps.support_y[t], eps.query_y[t]])
        for _ in range(steps):
            grads = torch.autograd.grad(F.cross_entropy(forward(phi, x), y), list(phi.values()))
            phi = {k: (v - ALPHA * g).detach().requires_grad_(True) for (k, v), g in zip(phi.items(), grads)}
        adapted.append(phi)
    params = dict(net.named_parameters())
    optimizer = torch.optim.SGD(list(params.values()), lr=epsilon)
    _, grads = method.meta_gradient({k: v.detach() for k, v in params.items()}, eps)
    for k, v in params.items():
        v.grad = grads[k]
    optimizer.step()
    for k in before:
        mean_phi = torch.stack([phi[k].detach() for phi in adapted]).mean(0)
        torch.testing.assert_close(params[k].detach(), before[k] + epsilon * (mean_phi - before[k]), rtol=1e-5, atol=1e-6)


def test_batch_norm_uses_each_tasks_own_statistics_under_vmap():
    """MAML on the papers' BatchNorm network: a task adapted inside a meta-batch predicts as it does alone (batch
    statistics per task, no running buffers shared across the vmapped tasks)."""
    cfg = load_config("sinusoid", ["model.trunk={name: cnn, channels: [4], batch_norm: true, dense: []}",
                                   "meta.method={name: maml, inner_lr: 0.1, inner_steps: 2}", "meta.ways=3"])
    net, method = learner(cfg, Problem(regression=False), (1, 6, 6), None)
    params = {k: v.detach() for k, v in net.named_parameters()}
    g = torch.Generator().manual_seed(0)
    eps = Episodes(torch.randn(4, 6, 1, 6, 6, generator=g), torch.arange(3).repeat(4, 2), torch.randn(4, 5, 1, 6, 6, generator=g),
                   torch.zeros(4, 5, dtype=torch.long), torch.arange(3).expand(4, 3))
    together = method.predict(params, eps)
    for t in range(4):
        torch.testing.assert_close(together[t], method.predict(params, eps.slice(t, t + 1))[0])
    assert not torch.allclose(together[0], together[1])
