"""Prototypical networks (Snell et al. 2017): a class's prototype is the mean embedding of its support examples,
and a query's logits are the negative squared Euclidean distances to the prototypes. Training may use more
ways than testing (their Omniglot setup: 60-way training, 5- and 20-way testing).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.func import grad_and_value

from hydranet.errors import UserError
from hydranet.meta.episodes import Episodes
from hydranet.meta.learner import MetaNet, Params, Problem, call, no_learning_rates
from hydranet.registry import register


def prototype_logits(support: Tensor, labels: Tensor, query: Tensor, ways: int) -> Tensor:
    """support (T, S, D) embeddings with labels (T, S) in 0..ways-1, query (T, Q, D) → logits (T, Q, ways)."""
    onehot = F.one_hot(labels, ways).to(support.dtype)  # (T, S, N)
    prototypes = onehot.transpose(1, 2) @ support / onehot.sum(1)[..., None]  # (T, N, D): mean per class
    return -(query[:, :, None, :] - prototypes[:, None, :, :]).pow(2).sum(-1)


@register("meta", "protonet")
class ProtoNet:
    """Metric-based: no inner loop, no head; the trunk's embedding is meta-learned through the query loss."""

    head = "none"
    extra_parameters = staticmethod(no_learning_rates)

    def __init__(self, options: object, net: MetaNet, problem: Problem):
        if problem.regression:
            raise UserError("meta.method: protonet classifies; the sinusoid source is regression (use maml, fomaml, "
                            "anil, reptile or finetune)")
        self.net, self.problem = net, problem

    def predict(self, params: Params, episodes: Episodes) -> Tensor:
        tasks, shots = episodes.support_y.shape
        queries = episodes.query_y.shape[1]
        support = call(self.net, params, episodes.support_x.flatten(0, 1)).view(tasks, shots, -1)
        query = call(self.net, params, episodes.query_x.flatten(0, 1)).view(tasks, queries, -1)
        return prototype_logits(support, episodes.support_y, query, episodes.classes.shape[1])

    def meta_gradient(self, params: Params, episodes: Episodes) -> tuple[Tensor, Params]:
        def loss(params: Params) -> Tensor:
            return self.problem.loss(self.predict(params, episodes).flatten(0, 1), episodes.query_y.flatten())

        grads, value = grad_and_value(loss)(params)
        return value, grads
