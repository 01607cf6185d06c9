"""Helpers shared by the gradient balancers: per-term gradients on the shared parameters (from train/gradients.py,
which diagnostics share) or on the shared representation, a combined gradient written into `.grad`, and one
backward for everything not shared. Under torchrun the per-term gradients are averaged over the ranks here, where
every balancer takes them, so each combines the global batch's task gradients and all ranks take the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
import weakref

from pydantic import Field
import torch
from torch import Tensor

from hydranet.config import Options
from hydranet.distributed.context import rank, world_size
from hydranet.distributed.reduce import averaged, concatenated
from hydranet.train import gradients as local
from hydranet.train.gradients import flatten  # noqa: F401  (the balancers take it from here)

Level = Literal["parameters", "representation"]


class GradientOptions(Options):
    """The option every method that combines task gradients shares: which gradients it combines."""

    gradients: Level = Field("parameters", description="parameters: each term's gradient on the shared parameters (exact) | representation: on the shared features z, as MGDA-UB and LibMTL's rep_grad (one pass through the trunk; soft sharing falls back to parameters)")


def term_gradients(losses: list[Tensor], params: list[Tensor], **options) -> Tensor:
    """(T, P) gradients of each loss on `params` (train/gradients.py's, batched or looped), averaged over the ranks
    under torchrun: every rank's losses are its share of the global mean (`Task.loss`), so the average is each task's
    gradient on the global batch, identical on every rank, before any balancer combines the rows."""
    return averaged(local.term_gradients(losses, params, **options), "the per-task gradients")


@dataclass
class TermGradients:
    """The (T, N) matrix a method combines, and where its rows live: on the shared features z when `features`
    is z, else on the shared parameters (N = P).

    On z under torchrun, the matrix holds the features of every rank's examples (the global batch's gradients on
    z, in the order of one process's batch), so a method's coefficients are the same on every rank; `own` cuts
    from a combined row what this rank's backward through its own z needs."""

    matrix: Tensor
    features: Tensor | None = None
    private: list[tuple[Tensor, Tensor, str]] | None = None  # (leaf, ∂(Σ_t L_t)/∂leaf, the one term reaching it)

    def own(self, combined: Tensor) -> Tensor:
        """This rank's part of a combined row on z ((W·B·D,) → (B·D,)), as its own losses' gradient (W times the
        global batch's: the ranks' averaged parameter gradients are then the global ones); the row itself in one
        process."""
        if world_size() == 1:
            return combined
        width = self.features.numel()
        return combined[rank() * width:(rank() + 1) * width] * world_size()


class GradientMethod:
    """What the gradient balancers share: the model (for its features), read at `on_fit_start`, and the choice
    between parameter- and representation-level gradients (`gradients` option). Optional: a balancer may call
    `term_gradients` and `backward_combined` directly."""

    level: Level = "parameters"
    model_ref = None  # set by on_fit_start; without it (a bare backward call) the shared parameters are used

    def on_fit_start(self, trainer) -> None:
        # a weak reference, not the model itself: an nn.Module balancer (imtl) would register the model as its
        # submodule and put its weights into the balancer's own state_dict a second time
        self.model_ref = weakref.ref(trainer.model)
        if self.level == "representation" and hasattr(trainer.model, "head_views"):
            trainer.model.head_views = True  # the rows on z from one backward (`head_rows`)

    def features(self) -> Tensor | None:
        """The last forward's shared features z (`model.features`), if the model is known and records them."""
        model = self.model_ref() if self.model_ref is not None else None
        return getattr(model, "features", None)

    def task_gradients(self, losses: dict[str, Tensor], shared: list[Tensor]) -> TermGradients:
        """Gradients on z = `model.features` when asked for and usable, else on the shared parameters."""
        terms = list(losses.values())
        z = self.features() if self.level == "representation" else None
        rows, private = head_rows(losses, z, self.head_inputs(), shared) if z is not None else (None, None)
        if rows is None and z is not None and representation(terms, z) is not None:
            rows = local.term_gradients(terms, [z])  # one backward per term
        if rows is None:
            return TermGradients(term_gradients(terms, shared))
        if world_size() > 1:  # every rank's rows (on its own examples' features) side by side, / W: of the global loss
            rows = concatenated(rows, "the per-task gradients on the features") / world_size()
        return TermGradients(rows, z, private)

    def head_inputs(self) -> dict[str, Tensor] | None:
        """The last forward's input of each head (`model.head_inputs`: a view of z per head), if recorded."""
        model = self.model_ref() if self.model_ref is not None else None
        return getattr(model, "head_inputs", None)


def head_rows(losses: dict[str, Tensor], z: Tensor, inputs: dict[str, Tensor] | None, shared: list[Tensor]
              ) -> tuple[Tensor | None, list[tuple[Tensor, Tensor, str]] | None]:
    """(T, B·D) each term's gradient on z from ONE backward through the heads, and from the same backward the
    task-specific leaves' gradients with the term each belongs to; (None, None) where the rows cannot be had so.

    Each head reads its own view v_t of z (`HydraNet.head_inputs`), so ∂(Σ_s L_s)/∂v_t = ∂L_t/∂v_t when every term
    is a task's loss and reaches z through its own task's view only (checked by a walk of each term's graph down to
    the views, which also shows that it reaches z). Otherwise (an extra term, a loss of several heads, soft
    sharing) (None, None), and the caller takes one backward per term. The leaves' gradients come along when
    each task-specific leaf is reached by one term, above the views, so that `backward_combined` can weight them
    per term instead of a second backward through the heads; else None.
    """
    if not isinstance(z, Tensor) or z.grad_fn is None or not inputs or not all(name in inputs for name in losses):
        return None, None
    views = [inputs[name] for name in losses]
    nodes = {view.grad_fn for view in views}
    if None in nodes or len(nodes) != len(views) or z.grad_fn in nodes:
        return None, None
    walks = [walk_to_views(loss, nodes, z.grad_fn) for loss in losses.values()]
    if not all(found == {view.grad_fn} for (found, _), view in zip(walks, views)):
        return None, None
    owned = leaf_owners(list(losses), [leaves for _, leaves in walks], shared, private_leaves([z], shared))
    # the heads' graph is kept only for the fallback's second pass through them; the trunk's stays either way
    grads = torch.autograd.grad(sum(losses.values()), views + [leaf for leaf, _ in owned or []],
                                retain_graph=owned is None, allow_unused=True)
    rows = torch.stack([(torch.zeros_like(view) if grad is None else grad).reshape(-1).float()
                        for view, grad in zip(views, grads)])
    if owned is None:
        return rows, None
    return rows, [(leaf, grad, name) for (leaf, name), grad in zip(owned, grads[len(views):]) if grad is not None]


def walk_to_views(loss: Tensor, views: set, z_node) -> tuple[set, list[Tensor]]:
    """(the nodes of `views` that the graph of `loss` reaches, walking no further down than them, with z's node
    itself for a path that reaches it without passing one of them; the leaves met on the way)."""
    found, seen, stack, leaves = set(), set(), [loss.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn in views or fn is z_node:
            found.add(fn)
            continue
        leaf = getattr(fn, "variable", None)  # AccumulateGrad nodes hold the leaf they write into
        if leaf is not None:
            leaves.append(leaf)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found, leaves


def leaf_owners(names: list[str], reached: list[list[Tensor]], shared: list[Tensor],
                below: list[Tensor]) -> list[tuple[Tensor, str]] | None:
    """[(leaf, the term reaching it)] for the leaves the terms reach above their views, when these are all the
    task-specific leaves (none shared, none `below` z) and each is reached by one term only; else None."""
    if below:
        return None
    owners, excluded = {}, {id(p) for p in shared}
    for name, leaves in zip(names, reached):
        for leaf in leaves:
            if id(leaf) in owners or id(leaf) in excluded:
                return None
            owners[id(leaf)] = (leaf, name)
    return list(owners.values())


def representation(losses: list[Tensor], features) -> Tensor | None:
    """z when every term reaches it, else None: soft sharing (a dict of features), no forward seen, a term that
    does not require grad, or one computed by a later forward (an extra loss on other views overwrites
    `model.features`) would make gradients on z miss part of the shared gradient."""
    if not isinstance(features, Tensor) or features.grad_fn is None:
        return None
    return features if all(reaches(loss, features.grad_fn) for loss in losses) else None


def reaches(loss: Tensor, node) -> bool:
    """Whether the autograd graph of `loss` passes through `node` (a walk of the graph; no backward)."""
    seen, stack = set(), [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        if fn is node:
            return True
        seen.add(fn)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return False


def independent_backward(losses: dict[str, Tensor]) -> dict[str, float]:
    """With no shared parameter the tasks cannot conflict: the plain sum is every method's answer."""
    sum(losses.values()).backward()
    return {name: 1.0 for name in losses}


def set_grad(params: list[Tensor], flat: Tensor) -> None:
    """Add a flat (P,) gradient into `.grad` of each parameter, as `backward()` would accumulate it.

    The gradient takes the parameter's memory layout, as autograd's does: fused and foreach optimizers step a
    parameter and its gradient in storage order, so a contiguous gradient of a channels_last conv weight would
    update the wrong elements (it did: multidigits' gradient methods lost 9 points of accuracy).
    """
    offset = 0
    for p in params:
        n = p.numel()
        accumulate(p, flat[offset:offset + n].view(p.shape))
        offset += n


def accumulate(p: Tensor, g: Tensor, owned: bool = False) -> None:
    """Add `g` into `p.grad` as autograd's accumulation does: in p's memory layout (see `set_grad`), and as a
    tensor of p's own unless `owned` says nobody else holds `g` (a gradient autograd returned may be shared by
    several leaves: `.grad` clipped in place would be clipped once per leaf). Sparse gradients are kept sparse."""
    if p.grad is not None:
        p.grad = p.grad + g if g.layout != torch.strided or p.grad.layout != torch.strided else p.grad.add_(g)
    elif g.layout != torch.strided or (owned and g.stride() == p.stride()):
        p.grad = g
    else:
        p.grad = torch.empty_like(p).copy_(g)


def private_leaves(losses: list[Tensor], shared: list[Tensor]) -> list[Tensor]:
    """Leaf tensors the losses reach that are not shared (heads, extra losses' projection layers…).

    Found by walking the autograd graph (~0.03 ms for the quickstart CNN), so no model needs to list its
    task-specific parameters and terms added by extra losses are covered too.
    """
    excluded = {id(p) for p in shared}
    seen, stack, found = set(), [loss.grad_fn for loss in losses], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        leaf = getattr(fn, "variable", None)  # AccumulateGrad nodes hold the leaf they write into
        if leaf is not None:
            if id(leaf) not in excluded:
                found.append(leaf)
            continue
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


def backward_private(losses: dict[str, Tensor], weights: dict[str, float | Tensor], shared: list[Tensor]) -> None:
    """Backward of Σ_t w_t·L_t into the non-shared leaves only; the trunk is not traversed again."""
    terms = [loss for loss in losses.values() if loss.requires_grad]
    leaves = private_leaves(terms, shared)
    if leaves:
        total = sum(weights[name] * loss for name, loss in losses.items() if loss.requires_grad)
        torch.autograd.backward(total, inputs=leaves)


def combine(losses: dict[str, Tensor], shared: list[Tensor], grads: TermGradients, coeffs: Tensor,
            head_weights: dict[str, float | Tensor]) -> None:
    """`backward_combined` of coeffs @ grads ((T,) @ (T, N)): the pattern of every gradient method is
    grads = task_gradients(…), a method-specific (T,) coefficient vector, then this. CPU coefficients are copied
    without waiting (a blocking host-to-device copy would sync the step)."""
    coeffs = coeffs.to(grads.matrix.device, non_blocking=True).to(grads.matrix.dtype)
    backward_combined(losses, shared, grads, coeffs @ grads.matrix, head_weights)


def backward_combined(losses: dict[str, Tensor], shared: list[Tensor], grads: TermGradients, combined: Tensor,
                      head_weights: dict[str, float | Tensor]) -> None:
    """The shared parameters get a combined row of the task gradients; the rest the backward of Σ head_weights·L.

    On the parameters the row (P,) is their gradient, written into `.grad`; on z it is a cotangent (B·D,) and the
    shared parameters get the backward of z with it, which is ∇_θ Σ_t c_t L_t when the row is Σ_t c_t ∇_z L_t
    (one pass through the trunk). On the parameters the trunk is traversed T times (once per term for the rows),
    never T + 1: the private backward stops where the shared parameters begin. On z it is traversed once, and the
    heads once too when the rows' backward brought the task-specific gradients along (`grads.private`: each is
    scaled by its term's weight here), else twice (for the rows, then here for their own parameters).
    """
    if grads.private is None:
        backward_private(losses, head_weights, shared)
    else:
        for leaf, grad, name in grads.private:
            weight = head_weights[name]
            if isinstance(weight, float) and weight == 1.0:
                accumulate(leaf, grad)
            else:  # a weight that is a graph tensor scales the gradient, not its graph (as in backward_private)
                accumulate(leaf, grad * (weight.detach() if isinstance(weight, Tensor) else weight), owned=True)
    if grads.features is None:
        set_grad(shared, combined)
        return
    z = grads.features
    torch.autograd.backward(z, grads.own(combined).view(z.shape).to(z.dtype), inputs=shared)


def last_matrix(params: list[Tensor]) -> Tensor:
    """The last parameter with ndim ≥ 2 (the last shared layer's weight), else the last parameter."""
    matrices = [p for p in params if p.ndim >= 2]
    return matrices[-1] if matrices else params[-1]
