"""The fine-tuning baseline (Chen et al. 2019; Tian et al. 2020): train trunk and head as one ordinary classifier
over all meta-train classes (regression: one model for all tasks, Finn et al.'s "pretrained" baseline), then fit
a new linear head on each episode's support embeddings, here in closed form (ridge regression on one-hot targets
for classes, on the values for regression; L2-normalized embeddings for classes, as Tian et al. normalize).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.func import grad_and_value

from hydranet.config.methods import Options
from hydranet.meta.episodes import Episodes
from hydranet.meta.learner import MetaNet, Params, Problem, call, no_learning_rates
from hydranet.registry import register


class FinetuneOptions(Options):
    """Options of `meta.method: {name: finetune, …}`."""

    ridge: float = Field(1.0, gt=0, description="L2 strength of the linear head fitted to each episode's support set")


def ridge_head(support: Tensor, targets: Tensor, query: Tensor, strength: float) -> Tensor:
    """Per task, the least-squares linear map (with bias) from support (T, S, D) to targets (T, S, out), L2
    `strength` on the weights, applied to query (T, Q, D) → (T, Q, out)."""
    ones = support.new_ones(*support.shape[:2], 1)
    design, query = torch.cat([support, ones], -1), torch.cat([query, query.new_ones(*query.shape[:2], 1)], -1)
    penalty = strength * torch.eye(design.shape[-1], dtype=design.dtype, device=design.device)
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    weights = torch.linalg.solve(design.transpose(1, 2) @ design + penalty, design.transpose(1, 2) @ targets)
    return query @ weights


@register("meta", "finetune", options=FinetuneOptions)
class Finetune:
    """Meta-training is plain supervised training over the pooled classes; adapting is fitting a linear head."""

    head = "classes"
    extra_parameters = staticmethod(no_learning_rates)

    def __init__(self, options: FinetuneOptions, net: MetaNet, problem: Problem):
        self.options, self.net, self.problem = options, net, problem

    def meta_gradient(self, params: Params, episodes: Episodes) -> tuple[Tensor, Params]:
        x = torch.cat([episodes.support_x, episodes.query_x], 1).flatten(0, 1)
        y = torch.cat([episodes.support_y, episodes.query_y], 1)
        if not self.problem.regression:  # episode labels → the pool's class ids, the head's outputs
            y = episodes.classes.gather(1, y)
        grads, loss = grad_and_value(lambda p: self.problem.loss(call(self.net, p, x), y.flatten(0, 1)))(params)
        return loss, grads

    def predict(self, params: Params, episodes: Episodes) -> Tensor:
        tasks, shots = episodes.support_y.shape[:2]
        queries = episodes.query_y.shape[1]
        support = call(self.net, params, episodes.support_x.flatten(0, 1), embed=True).view(tasks, shots, -1)
        query = call(self.net, params, episodes.query_x.flatten(0, 1), embed=True).view(tasks, queries, -1)
        if self.problem.regression:
            return ridge_head(support, episodes.support_y, query, self.options.ridge)
        targets = F.one_hot(episodes.support_y, episodes.classes.shape[1]).to(support.dtype)
        return ridge_head(F.normalize(support, dim=-1), targets, F.normalize(query, dim=-1), self.options.ridge)
