"""Gradient-based meta-learners: MAML (Finn et al. 2017) with true second-order meta-gradients, first-order MAML,
ANIL (Raghu et al. 2020: only the head adapts in the inner loop) and Reptile (Nichol et al. 2018).

All share `InnerLoop`: SGD steps on a task's support set as a pure function of the weights, vmapped over the
tasks of a meta-batch. MAML differentiates the mean query loss through those steps (`torch.func.grad` over the
vmapped inner `grad`: second order); FOMAML takes the query gradient at the adapted weights as the meta-gradient;
Reptile's "gradient" is θ − θ', so an SGD outer step with learning rate ε moves θ by ε·(θ' − θ).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor
from torch.func import grad_and_value, vmap

from hydranet.config.methods import Options
from hydranet.meta.episodes import Episodes
from hydranet.meta.learner import (LR_PREFIX, InnerLoop, MetaNet, Params, Problem, call, mean_over_tasks,
                                   task_tensors, weights_of)
from hydranet.registry import register


class InnerLoopOptions(Options):
    """Options of fomaml and reptile (and the base of maml's and anil's)."""

    inner_steps: int = Field(1, ge=1, description="SGD steps on each task's support set during meta-training")
    inner_lr: float = Field(0.4, gt=0, description="learning rate of the inner SGD steps")
    eval_steps: int | None = Field(None, ge=1, description="inner steps when adapting at evaluation (null: inner_steps)")


class MAMLOptions(InnerLoopOptions):
    """Options of `meta.method: {name: maml | anil, …}`."""

    learn_inner_lr: bool = Field(False, description="learn a per-parameter inner learning rate with the weights, initialised at inner_lr (Meta-SGD, Li et al. 2017)")


class ReptileOptions(InnerLoopOptions):
    """Options of `meta.method: {name: reptile, …}` (Nichol et al. use several inner steps on support and query)."""

    inner_steps: int = Field(5, ge=1, description="SGD steps on each task's support and query examples")
    inner_lr: float = Field(0.02, gt=0, description="learning rate of the inner SGD steps")


class _InnerLoopMethod:
    """What the gradient-based methods share: their inner loop, head and evaluation-time adaptation."""

    head = "ways"

    def __init__(self, options: InnerLoopOptions, net: MetaNet, problem: Problem):
        self.options, self.net, self.problem = options, net, problem
        self.loop = InnerLoop(net, problem, options.inner_lr, self.adapts)

    def adapts(self, name: str) -> bool:
        return True

    def extra_parameters(self, net: MetaNet) -> Params:
        if not getattr(self.options, "learn_inner_lr", False):
            return {}
        return {LR_PREFIX + name: torch.full_like(value, self.options.inner_lr)
                for name, value in net.named_parameters() if self.adapts(name)}

    def predict(self, params: Params, episodes: Episodes) -> Tensor:
        return self.loop.predict(params, episodes, self.options.eval_steps or self.options.inner_steps)


@register("meta", "maml", options=MAMLOptions)
class MAML(_InnerLoopMethod):
    """Second-order MAML: ∇θ of the mean query loss at θ' = θ − α∇θ L_support(θ), through the inner steps."""

    def meta_gradient(self, params: Params, episodes: Episodes) -> tuple[Tensor, Params]:
        steps = self.options.inner_steps

        def meta_loss(params: Params) -> Tensor:
            losses = vmap(self.loop.query_loss, in_dims=(None, 0, 0, 0, 0, None))(params, *task_tensors(episodes), steps)
            return losses.mean()

        grads, loss = grad_and_value(meta_loss)(params)
        return loss, grads


@register("meta", "anil", options=MAMLOptions)
class ANIL(MAML):
    """MAML whose inner loop adapts only the head; the trunk is meta-learned through the outer loop alone."""

    def adapts(self, name: str) -> bool:
        return name.startswith("head.")


@register("meta", "fomaml", options=InnerLoopOptions)
class FOMAML(_InnerLoopMethod):
    """First-order MAML: the query gradient at the adapted weights θ', the inner loop's Jacobian dropped."""

    def meta_gradient(self, params: Params, episodes: Episodes) -> tuple[Tensor, Params]:
        def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Params, Tensor]:
            fast = self.loop.adapt(params, sx, sy, self.options.inner_steps)
            return grad_and_value(lambda w: self.problem.loss(call(self.net, w, qx), qy))(fast)

        grads, losses = vmap(one_task)(*task_tensors(episodes))
        return losses.mean(), mean_over_tasks(grads)


@register("meta", "reptile", options=ReptileOptions)
class Reptile(_InnerLoopMethod):
    """Reptile: adapt on each task's support and query examples, and move θ towards the mean adapted θ'."""

    def meta_gradient(self, params: Params, episodes: Episodes) -> tuple[Tensor, Params]:
        weights = weights_of(params)

        def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Params, Tensor]:
            x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
            fast = self.loop.adapt(params, x, y, self.options.inner_steps)
            return {name: weights[name] - fast[name] for name in weights}, self.problem.loss(call(self.net, fast, x), y)

        differences, losses = vmap(one_task)(*task_tensors(episodes))
        return losses.mean(), mean_over_tasks(differences)


__all__ = ["ANIL", "FOMAML", "MAML", "Reptile"]
