"""Task gradients in one batched backward: equal to one backward per term on every trunk and sharing, chunked,
with the loop as fallback where an op has no batching rule; and the representation-level option."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tests.contracts.conftest import IMAGE_SHAPE, TABLE_SHAPE, make_problem
from tests.mtl.toys import make_balancer, task_losses, tiny_problem

from hydranet.config import ModelConfig
from hydranet.models import build_model
from hydranet.mtl import gradients
from hydranet.mtl.aligned_mtl import balance_matrix
from hydranet.mtl.fairgrad import fairgrad_weights
from hydranet.mtl.graddrop import graddrop_combine
from hydranet.mtl.gradvac import gradvac_coefficients
from hydranet.mtl.imtl import imtl_g_coefficients
from hydranet.mtl.upgrad import upgrad_coefficients
from hydranet.randomness import Purpose, stream
from hydranet.train import gradients as term
from hydranet.train.precision import autocast

TRUNKS = {  # every built-in trunk, small; the MLP with BatchNorm (batch statistics couple the examples)
    "mlp": {"name": "mlp", "hidden": [8, 6], "batch_norm": True},
    "cnn": {"name": "cnn", "channels": [4, 6], "dense": [8], "batch_norm": True},
    "resnet": {"name": "resnet", "channels": [4], "blocks": [1]},
}
SHARINGS = ["hard", "mmoe", "cgc", "cross_stitch"]


def model_and_losses(sharing: str, trunk: str, precision: str = "fp32"):
    """A train-mode model of every task kind and its loss terms on an 8-example batch (the last term constant)."""
    torch.manual_seed(0)
    tasks, targets = make_problem(8)
    shape = TABLE_SHAPE if trunk == "mlp" else IMAGE_SHAPE
    model = build_model(ModelConfig(sharing=sharing, trunk=TRUNKS[trunk]), shape, tasks).train()
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    if x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)  # the layout training uses
    with autocast(torch.device("cpu"), precision):
        out = model(x)
    losses = [task.loss(out[name].float(), targets[name]) for name, task in tasks.items()]
    return model, losses + [torch.zeros(())]  # a term that reaches nothing gets a row of zeros


@pytest.mark.parametrize("trunk", list(TRUNKS))
@pytest.mark.parametrize("sharing", SHARINGS)
def test_batched_rows_equal_one_backward_per_term(sharing, trunk):
    model, losses = model_and_losses(sharing, trunk)
    shared = model.shared_parameters()
    batched = term.term_gradients(losses, shared, batched=True)
    expected = torch.cat([term.loop_rows(losses[:-1], shared), torch.zeros(1, batched.shape[1])])
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)
    assert batched[:-1].abs().sum(dim=1).min() > 0  # every real term reaches the shared parameters


def test_batched_rows_under_bf16_autocast_match_the_loop():
    model, losses = model_and_losses("hard", "cnn", precision="bf16")
    shared = model.shared_parameters()
    torch.testing.assert_close(term.term_gradients(losses[:-1], shared, batched=True), term.loop_rows(losses[:-1], shared))


def test_chunks_give_the_same_rows():
    model, losses = model_and_losses("hard", "cnn")
    shared = model.shared_parameters()
    whole = term.term_gradients(losses, shared, batched=True)
    for rows in (1, 2, 3):
        torch.testing.assert_close(term.term_gradients(losses, shared, max_rows=rows, batched=True), whole)
    torch.testing.assert_close(term.term_gradients(losses, shared), whole)  # the CPU default: the loop


class NoBatchingRule(torch.autograd.Function):
    """tanh with a hand-written backward that branches on a value (`.item()`): vmap cannot batch it."""

    @staticmethod
    def forward(ctx, x):
        y = x.tanh()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y) if grad.abs().sum().item() > 0 else grad


def test_an_op_without_batching_rule_falls_back_to_the_loop():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 4))
    x = torch.randn(5, 4)
    z = NoBatchingRule.apply(x @ w.T)  # (5, 3)
    losses = [z[:, i].pow(2).mean() for i in range(3)]
    with pytest.raises(RuntimeError):
        term.batched_rows(losses, [w])
    rows = term.term_gradients(losses, [w], batched=True)
    torch.testing.assert_close(rows, term.loop_rows(losses, [w]))
    assert term.term_gradients(losses, [w], batched=True).equal(rows)  # remembered: the next call goes straight to the loop


# --- gradients on the shared representation -------------------------------------------------------


def representation_step(name: str, seed: int = 0, gradients: str = "representation", **options):
    """(model, balancer weights, tasks, batch): one step of `name` with gradients on the features."""
    cfg, tasks, model, batch = tiny_problem(seed)
    balancer = make_balancer(name, cfg, tasks, gradients=gradients, **options)
    balancer.on_fit_start(SimpleNamespace(model=model))
    weights = balancer.backward(task_losses(tasks, model, batch), model.shared_parameters())
    return model, weights, tasks, batch


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "nash_mtl", "mgda"])
def test_representation_level_shared_gradient_is_the_weighted_backward(name):
    """The trunk gets ∇_θ Σ c_t L_t with the method's coefficients c (from the z-gradients' Gram matrix), and the
    heads the gradient of Σ c_t L_t where the method weights them (mgda, nash_mtl), else of Σ L_t."""
    options = {"max_norm": 0.0} if name == "nash_mtl" else {}
    model, weights, tasks, batch = representation_step(name, seed=1, **options)  # seed 1: the terms conflict on z
    coeffs = {task: float(w) for task, w in weights.items()}  # each term's coefficient in the shared gradient
    assert len(set(coeffs.values())) > 1  # the heads' weighting is seen
    losses = task_losses(tasks, model, batch)
    shared, heads = model.shared_parameters(), [p for task in tasks for p in model.task_parameters(task)]
    head_coeffs = coeffs if name in ("mgda", "nash_mtl") else dict.fromkeys(coeffs, 1.0)
    expected = [*torch.autograd.grad(sum(coeffs[t] * loss for t, loss in losses.items()), shared, retain_graph=True),
                *torch.autograd.grad(sum(head_coeffs[t] * loss for t, loss in losses.items()), heads)]
    for p, ref in zip([*shared, *heads], expected, strict=True):
        torch.testing.assert_close(p.grad, ref, rtol=1e-4, atol=1e-6)


def combined_by_hand(name: str, rows: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(Σ_t c_t rows_t or GradDrop's masked sum, the heads' weights when the method weights them): each newer
    aggregator's own rule applied directly to the (T, N) gradients on z, with the draws its balancer makes."""
    gram = (rows @ rows.T).double().numpy()
    t = len(rows)
    if name == "graddrop":
        uniform = torch.rand(rows.shape[1], generator=stream(seed, Purpose.GRADDROP), dtype=rows.dtype)
        return graddrop_combine(rows, uniform), None
    if name == "gradvac":
        gen = stream(seed, Purpose.GRADVAC)
        orders = [[j for j in torch.randperm(t, generator=gen).tolist() if j != i] for i in range(t)]
        coeffs = gradvac_coefficients(gram, np.zeros((t, t)), orders, beta=0.5)
    else:
        coeffs = {"upgrad": upgrad_coefficients, "aligned_mtl": lambda g: balance_matrix(g).sum(0),
                  "imtl": lambda g: t * imtl_g_coefficients(g), "fairgrad": lambda g: fairgrad_weights(g, 1.0)}[name](gram)
    coeffs = torch.as_tensor(coeffs, dtype=rows.dtype)
    return coeffs @ rows, coeffs if name == "fairgrad" else None


@pytest.mark.parametrize("name", ["upgrad", "aligned_mtl", "imtl", "gradvac", "graddrop", "fairgrad"])
def test_newer_aggregators_on_the_representation(name):
    """Each method's rule applied by hand to the gradients on z (seed 1: the terms conflict on z, not on the
    parameters, so the parameter-level step differs) gives the trunk's `.grad` through z's backward, and every
    head its own gradient (fairgrad's: of Σ w_t L_t)."""
    cfg, tasks, model, batch = tiny_problem(seed=1)
    losses = task_losses(tasks, model, batch)
    z, shared = model.features, model.shared_parameters()
    heads = [p for task in tasks for p in model.task_parameters(task)]
    combined, head_weights = combined_by_hand(name, term.loop_rows(list(losses.values()), [z]), cfg.seed)
    head_weights = torch.ones(len(losses)) if head_weights is None else head_weights.float()
    expected = [*torch.autograd.grad(z, shared, combined.view(z.shape), retain_graph=True),
                *torch.autograd.grad(sum(w * loss for w, loss in zip(head_weights, losses.values())), heads)]
    stepped, *_ = representation_step(name, seed=1)  # the same model and batch: tiny_problem is seeded
    params = [*stepped.shared_parameters(), *(p for task in tasks for p in stepped.task_parameters(task))]
    for p, ref in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, ref, rtol=1e-4, atol=1e-6)


def test_a_module_balancer_does_not_adopt_the_model():
    """imtl with loss scaling is an nn.Module: holding the model as an attribute would make it a submodule, so
    its weights would enter the balancer's parameters and checkpoint state a second time."""
    cfg, tasks, model, batch = tiny_problem()
    balancer = make_balancer("imtl", tasks=tasks, loss_scale=True, gradients="representation")
    balancer.on_fit_start(SimpleNamespace(model=model))
    assert list(balancer.state_dict()) == ["log_scales"] and len(list(balancer.parameters())) == 1
    balancer.backward(task_losses(tasks, model, batch), model.shared_parameters())
    assert all(p.grad is not None for p in model.parameters())


def test_pcgrad_on_the_representation_projects_the_feature_gradients():
    """The coefficients are PCGrad's on the gradients w.r.t. z, not on the parameters: with seed 1 the two
    terms conflict on z but not on the parameters, so only the representation-level step projects."""
    cfg, tasks, model, batch = tiny_problem(seed=1)
    losses = task_losses(tasks, model, batch)
    z_rows = term.loop_rows(list(losses.values()), [model.features])  # (2, B·D)
    gram = z_rows @ z_rows.T
    _, weights, _, _ = representation_step("pcgrad", seed=1)
    _, on_parameters, _, _ = representation_step("pcgrad", seed=1, gradients="parameters")
    assert gram[0, 1] < 0 and all(float(w) == 1.0 for w in on_parameters.values())
    expected = 1 - gram[0, 1] / gram.diagonal()  # T = 2: c_i = 1 − g_0·g_1/|g_i|² (g_j's projection off g_i)
    torch.testing.assert_close(torch.tensor([weights["digit"], weights["even"]]), expected)


def test_soft_sharing_falls_back_to_the_parameters():
    """Each task has its own features under mmoe: no common z, so the rows are the parameters' gradients."""
    _, tasks, _, batch = tiny_problem()
    torch.manual_seed(0)
    model = build_model(ModelConfig(sharing="mmoe", trunk={"name": "mlp", "hidden": [8]}), (1, 4, 4), tasks)
    balancer = make_balancer("pcgrad", tasks=tasks, gradients="representation")
    balancer.on_fit_start(SimpleNamespace(model=model))
    losses = task_losses(tasks, model, batch)
    grads = balancer.task_gradients(losses, model.shared_parameters())
    assert grads.features is None and grads.matrix.shape[1] == sum(p.numel() for p in model.shared_parameters())


def test_a_term_that_misses_the_features_falls_back_to_the_parameters():
    """A term from another forward (an extra loss on other views) does not reach this forward's z."""
    cfg, tasks, model, batch = tiny_problem()
    losses = task_losses(tasks, model, batch)
    first_z = model.features
    losses["again"] = task_losses(tasks, model, batch)["digit"]  # overwrites model.features
    assert gradients.representation(list(losses.values()), first_z) is None
    assert gradients.representation(list(losses.values())[:2], first_z) is first_z


def test_one_backward_through_the_heads_gives_every_terms_gradient_on_the_features():
    """Each head reads its own view of z, so one backward of Σ L_t gives each ∂L_t/∂z (`head_rows`), equal to one
    backward per term, and each head's parameters their own term's gradient; a term that is no task's, or one that
    reads two heads, falls back to the loop (None)."""
    cfg, tasks, model, batch = tiny_problem()
    make_balancer("pcgrad", cfg, tasks).on_fit_start(SimpleNamespace(model=model))  # parameters: no views asked
    assert not model.head_views
    make_balancer("mgda", cfg, tasks).on_fit_start(SimpleNamespace(model=model))  # representation level: views
    assert model.head_views
    losses = task_losses(tasks, model, batch)
    z, shared = model.features, model.shared_parameters()
    expected_rows = term.loop_rows(list(losses.values()), [z])
    heads = {id(p): torch.autograd.grad(losses[task], p, retain_graph=True)[0]
             for task in tasks for p in model.task_parameters(task)}
    rows, private = gradients.head_rows(losses, z, model.head_inputs, shared)
    torch.testing.assert_close(rows, expected_rows)
    assert len({view.grad_fn for view in model.head_inputs.values()}) == len(tasks)  # one view per head
    assert {id(leaf) for leaf, _, _ in private} == set(heads)
    for leaf, grad, name in private:
        torch.testing.assert_close(grad, heads[id(leaf)])
    z.backward(torch.ones_like(z))  # the trunk's graph outlives the heads' (freed by the rows' backward)
    outputs = model(batch["x"])
    mixed = {name: task.loss(outputs[name], batch[name]) for name, task in tasks.items()}
    first, second = list(outputs)[:2]
    mixed[first] = mixed[first] + outputs[second].float().pow(2).mean()  # reads the second head too
    assert gradients.head_rows(mixed, model.features, model.head_inputs, shared) == (None, None)
    extra = {**task_losses(tasks, model, batch), "aux": model.features.pow(2).mean()}  # no task's term
    assert gradients.head_rows(extra, model.features, model.head_inputs, shared) == (None, None)
    direct = task_losses(tasks, model, batch)
    direct[first] = direct[first] + model.features.pow(2).mean()  # reads z beside its head
    assert gradients.head_rows(direct, model.features, model.head_inputs, shared) == (None, None)
    tied = task_losses(tasks, model, batch)
    head = model.task_parameters(first)[0]
    tied[second] = tied[second] + head.pow(2).sum()  # a head's parameter in another term: rows, no leaves
    rows, private = gradients.head_rows(tied, model.features, model.head_inputs, shared)
    assert rows is not None and private is None
    model.eval()
    model(batch["x"])
    assert all(view is model.features for view in model.head_inputs.values())  # views only in training


class ScaleWithoutGrad(torch.autograd.Function):
    """x·s whose backward gives s no gradient (None), as a straight-through quantizer's step size may."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.save_for_backward(s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        return grad * s, None


def test_the_heads_gradients_come_from_the_rows_backward_only_where_they_are_their_own():
    """`head_rows` returns the heads' gradients only when no other leaf is involved: a leaf below z that is not
    shared (an input that requires grad), or a shared parameter a term reaches beside z, send the heads to a
    backward of their own (None); a head leaf that gets no gradient is left out, as a backward leaves it."""
    cfg, tasks, model, batch = tiny_problem()
    make_balancer("mgda", cfg, tasks).on_fit_start(SimpleNamespace(model=model))
    shared = model.shared_parameters()
    x = batch["x"].clone().requires_grad_()
    rows, private = gradients.head_rows(task_losses(tasks, model, {**batch, "x": x}), model.features,
                                        model.head_inputs, shared)
    assert rows is not None and private is None
    losses = task_losses(tasks, model, batch)
    first = next(iter(losses))
    losses[first] = losses[first] + shared[0].pow(2).sum()  # a trunk weight read beside z
    rows, private = gradients.head_rows(losses, model.features, model.head_inputs, shared)
    assert rows is not None and private is None
    step = torch.nn.Parameter(torch.tensor(2.0))
    losses = task_losses(tasks, model, batch)
    losses[first] = ScaleWithoutGrad.apply(losses[first], step)
    rows, private = gradients.head_rows(losses, model.features, model.head_inputs, shared)
    assert {id(leaf) for leaf, _, _ in private} == {id(p) for task in tasks for p in model.task_parameters(task)}


def test_accumulated_gradients_take_the_parameters_layout_and_are_their_own():
    """A gradient autograd hands back may be shared by several leaves or broadcast (stride 0), and a conv weight
    may be channels_last: each `.grad` gets p's strides and a tensor of its own; sparse ones stay sparse."""
    a, b = torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(3, 4))
    g = torch.ones(()).expand(3, 4)  # what the backward of p.sum() gives
    gradients.accumulate(a, g)
    gradients.accumulate(b, g)
    assert a.grad.stride() == a.stride() and a.grad.data_ptr() != b.grad.data_ptr()
    conv = torch.nn.Parameter(torch.zeros(2, 3, 3, 3).contiguous(memory_format=torch.channels_last))
    gradients.accumulate(conv, torch.arange(54.0).view(2, 3, 3, 3))
    assert conv.grad.stride() == conv.stride() and conv.grad.equal(torch.arange(54.0).view(2, 3, 3, 3))
    gradients.accumulate(conv, torch.ones(2, 3, 3, 3))
    assert conv.grad.equal(torch.arange(54.0).view(2, 3, 3, 3) + 1)
    table = torch.nn.Parameter(torch.zeros(5, 2))
    sparse = torch.sparse_coo_tensor([[1, 3]], torch.ones(2, 2), (5, 2), check_invariants=True)
    gradients.accumulate(table, sparse)
    assert table.grad.is_sparse and table.grad.to_dense()[[1, 3]].eq(1).all()
