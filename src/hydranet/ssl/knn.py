"""Frozen trunk features and weighted k-nearest-neighbour prediction on them.

The kNN classifier of Wu et al. (2018), the usual progress meter of self-supervised training: cosine
similarity to a labeled memory bank, the top k neighbours vote with weight exp(similarity / 0.07).
It needs no training, so it measures the features alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydranet.train.precision import autocast

VOTE_TEMPERATURE = 0.07


@torch.inference_mode()
def trunk_features(trunk: nn.Module, x: Tensor, batch_size: int, precision: str = "fp32") -> Tensor:
    """Trunk outputs (N, D) in eval mode, as float32; the trunk's train/eval mode is restored."""
    was_training = trunk.training
    trunk.eval()
    with autocast(x.device, precision):
        out = torch.cat([trunk(chunk).float() for chunk in x.split(batch_size)])
    trunk.train(was_training)
    return out


def knn_average(bank: Tensor, values: Tensor, queries: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """For each query, the similarity-weighted mean of its k nearest bank rows' `values` (N, ...).

    With one-hot class vectors as values this is Wu et al.'s weighted vote (class scores summing to 1).
    """
    bank = F.normalize(bank.float(), dim=1)
    flat = values.float().reshape(len(values), -1)
    k = min(k, len(bank))
    out = []
    for q in queries.split(chunk):
        sims, idx = (F.normalize(q.float(), dim=1) @ bank.T).topk(k, dim=1)
        weights = (sims / VOTE_TEMPERATURE).softmax(dim=1)  # ∝ exp(sim/T), normalized per query
        out.append(torch.einsum("qk,qkv->qv", weights, flat[idx]))
    return torch.cat(out).reshape(len(queries), *values.shape[1:])


def knn_accuracy(bank: Tensor, labels: Tensor, queries: Tensor, query_labels: Tensor, k: int, classes: int) -> float:
    """Accuracy of the weighted kNN vote (labels are class indices; -1 marks a missing label)."""
    known = labels >= 0
    scores = knn_average(bank[known], F.one_hot(labels[known], classes), queries, k)
    asked = query_labels >= 0
    return float((scores.argmax(1) == query_labels)[asked].float().mean())


class KNNMonitor:
    """Trainer callback: kNN accuracy of the trunk's features on held-out examples after every epoch,
    in the epoch record as {"knn": {task: {"accuracy": …}}} (classification and binary tasks)."""

    def __init__(self, tasks: dict, bank: dict[str, Tensor], queries: dict[str, Tensor], k: int, batch_size: int):
        self.tasks = {t: task for t, task in tasks.items() if task.spec.single_label}
        self.bank, self.queries, self.k, self.batch_size = bank, queries, k, batch_size

    def on_epoch_end(self, trainer, record: dict) -> None:
        if not self.tasks:
            return
        trunk = trainer.model.trunk
        bank = trunk_features(trunk, self.bank["x"], self.batch_size, trainer.precision)
        queries = trunk_features(trunk, self.queries["x"], self.batch_size, trainer.precision)
        record["knn"] = {t: {"accuracy": knn_accuracy(bank, task.spec.class_index(self.bank[t]), queries,
                                                      task.spec.class_index(self.queries[t]), self.k,
                                                      max(2, task.info.outputs))}
                         for t, task in self.tasks.items()}
