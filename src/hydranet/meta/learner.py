"""What every meta-learner shares: the problem (a classification or regression loss and score), the network (a
registry trunk plus an optional linear head), and the functional inner loop of the gradient-based methods.

Parameters travel as a dict name → tensor and the network is called with `torch.func.functional_call`, so one
function can adapt a copy of them per task, `vmap` it over a meta-batch and differentiate through it (`grad`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from hydranet.meta.episodes import Episodes

Params = dict[str, Tensor]
LR_PREFIX = "inner_lr:"  # Meta-SGD's learned per-parameter inner learning rates travel with the weights


@dataclass(frozen=True)
class Problem:
    """The loss adapted and meta-trained on, and the score reported per task (accuracy, or MSE for regression)."""

    regression: bool

    @property
    def metric(self) -> str:
        return "mse" if self.regression else "accuracy"

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred (B, out), target (B,) labels or (B, 1) values → mean loss."""
        return F.mse_loss(pred, target) if self.regression else F.cross_entropy(pred, target)

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred (T, Q, out), target (T, Q[, 1]) → (T,) per-task MSE or accuracy."""
        if self.regression:
            return (pred - target).pow(2).mean(dim=(1, 2))
        return (pred.argmax(-1) == target).float().mean(1)


class MetaNet(nn.Module):
    """A trunk from the model registry and, for methods that need one, a linear head (`head_width` outputs)."""

    def __init__(self, trunk: nn.Module, head_width: int | None):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk.out_dim, head_width) if head_width else None

    def forward(self, x: Tensor, embed: bool = False) -> Tensor:
        features = self.trunk(x)  # (B, D)
        return features if embed or self.head is None else self.head(features)


def weights_of(params: Params) -> Params:
    """The network's own tensors of a parameter dict (without Meta-SGD's learning rates)."""
    return {name: value for name, value in params.items() if not name.startswith(LR_PREFIX)}


def call(net: MetaNet, params: Params, x: Tensor, embed: bool = False) -> Tensor:
    """The network with these weights on a batch x (B, *shape)."""
    return functional_call(net, weights_of(params), (x,), {"embed": embed})


class InnerLoop:
    """Plain SGD steps on a task's support set, as a pure function of the parameters (MAML's inner loop).

    `adapts(name)` says which weights the inner loop changes (all for MAML, the head for ANIL); the others enter
    the task loss unchanged, yet stay differentiable for the outer gradient. The step size is `inner_lr`, or the
    learned tensor `inner_lr:<name>` of the same shape when the parameters carry one (Meta-SGD, Li et al. 2017).
    """

    def __init__(self, net: MetaNet, problem: Problem, inner_lr: float, adapts: Callable[[str], bool]):
        self.net, self.problem, self.inner_lr, self.adapts = net, problem, inner_lr, adapts

    def adapt(self, params: Params, x: Tensor, y: Tensor, steps: int) -> Params:
        """The task's adapted weights after `steps` steps on (x, y), one task's (S, *shape) and (S[, 1])."""
        weights = weights_of(params)
        fast = {name: value for name, value in weights.items() if self.adapts(name)}

        def support_loss(fast: Params) -> Tensor:
            return self.problem.loss(call(self.net, {**weights, **fast}, x), y)

        for _ in range(steps):
            grads = grad(support_loss)(fast)
            fast = {name: value - self.step_size(params, name) * grads[name] for name, value in fast.items()}
        return {**weights, **fast}

    def step_size(self, params: Params, name: str) -> Tensor | float:
        return params.get(LR_PREFIX + name, self.inner_lr)

    def query_loss(self, params: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, steps: int) -> Tensor:
        """One task's query loss after adapting on its support set."""
        return self.problem.loss(call(self.net, self.adapt(params, sx, sy, steps), qx), qy)

    def predict(self, params: Params, episodes: Episodes, steps: int) -> Tensor:
        """(T, Q, out) query predictions, each task adapted on its own support set (vmapped over tasks)."""
        def one(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            return call(self.net, self.adapt(params, sx, sy, steps), qx)

        return vmap(one)(episodes.support_x, episodes.support_y, episodes.query_x)


def task_tensors(episodes: Episodes) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return episodes.support_x, episodes.support_y, episodes.query_x, episodes.query_y


def no_learning_rates(net: MetaNet) -> Params:
    """What a method without learned inner learning rates adds to the network's parameters: nothing."""
    return {}


def mean_over_tasks(grads: Params) -> Params:
    return {name: value.mean(0) for name, value in grads.items()}

