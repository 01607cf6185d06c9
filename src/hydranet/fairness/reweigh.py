"""Reweighing (Kamiran & Calders 2012, "Data preprocessing techniques for classification without
discrimination"): example weights that make group and label independent in the weighted train split.

w(g, y) = P(g)·P(y) / P(g, y), each probability counted on the labelled train examples of the task (weighted by
`data.weight_column` when there is one). Under these weights P_w(g, y) = P(g)·P(y): every group has the same
weighted base rate, so a model fitted to them has no reason to learn the group–label association.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from hydranet.config import FairnessConfig
from hydranet.errors import UserError
from hydranet.fairness.groups import check_groups, joint_groups
from hydranet.kinds import TaskInfo, get_kind
from hydranet.registry import register


def reweigh(groups: np.ndarray, labels: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """w = P(g)·P(y) / P(g, y) per example, from the examples with a label (`labels` ≥ 0) and their `base`
    weights (None: 1 each); an unlabelled example gets 1 (its loss is masked anyway)."""
    group_names, g = np.unique(groups.astype(str), return_inverse=True)
    labelled = labels >= 0
    base = np.ones(len(labels)) if base is None else base.astype(np.float64)
    y = np.where(labelled, labels, 0)
    classes = int(y.max()) + 1
    cells = np.bincount(g * classes + y, base * labelled, minlength=len(group_names) * classes)
    joint = cells.reshape(len(group_names), classes) / cells.sum()  # P(g, y)
    expected = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)  # P(g)·P(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.where(joint > 0, expected / joint, 1.0)
    return np.where(labelled, table[g, y], 1.0)


@register("mitigation", "reweigh")
class Reweigh:
    """The `reweigh` mitigation: per mitigated task, the Kamiran–Calders weight of each train example (1 for val
    and test examples: evaluation is unweighted)."""

    def __init__(self, options: object = None):
        self.options = options

    def example_weights(self, fairness: FairnessConfig, columns: dict[str, np.ndarray], targets: dict[str, torch.Tensor],
                        infos: dict[str, TaskInfo], train: torch.Tensor, base: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{task: float32 (N,)}, fitted on the `train` indices; `base`: the user's weights (data.weight_column)."""
        if not fairness.sensitive:
            raise UserError("fairness.mitigation: reweigh needs fairness.sensitive (the columns whose groups it protects)")
        train = train.numpy()
        groups = joint_groups(fairness, columns)[train]
        for warning in check_groups(" × ".join(fairness.sensitive), groups, "the train split", fairness.min_group_size):
            warnings.warn(f"reweigh: {warning}", stacklevel=2)
        out = {}
        for task, target in targets.items():
            kind = get_kind(infos[task].kind)
            if not kind.single_label:
                raise UserError(f"fairness.tasks: reweigh needs class labels, and task {task!r} is {infos[task].kind} "
                                f"(name the binary or classification tasks to mitigate in fairness.tasks)")
            weights = np.ones(len(target))
            weights[train] = reweigh(groups, kind.class_index(target).numpy()[train],
                                     None if base is None else base.numpy()[train])
            out[task] = torch.from_numpy(weights.astype(np.float32))
        return out

