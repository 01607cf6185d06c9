"""Adversarial debiasing (Zhang, Lemoine & Mitchell 2018, "Mitigating Unwanted Biases with Adversarial Learning"):
per mitigated task, an adversary predicts the sensitive group from the task's prediction, and its gradient is
reversed into the model.

Per mitigated task, with h = ∇_W L_A (the adversary's loss, W every model parameter it reaches: the trunk and the
task's head) and g the gradient the balancer has combined from the task losses, the model's gradient becomes

    g − proj_h g − α·h,        proj_h g = (g·h / |h|²)·h

(the projection keeps the predictor from moving in a direction that helps the adversary; −α·h moves it against
the adversary), while the adversary's own weights descend ∇_U L_A (their own Adam). The balancer combines first (it never sees the
adversary terms), then this step edits its result: any `mtl.balancer` composes with it. Several mitigated tasks
apply their steps one after the other, in the order of `fairness.tasks`.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from hydranet.config import FairnessConfig, Options
from hydranet.data import Dataset
from hydranet.distributed.context import world_size
from hydranet.errors import UserError
from hydranet.fairness.groups import check_groups, joint_groups
from hydranet.kinds import TaskInfo, get_kind
from hydranet.mtl.gradients import set_grad
from hydranet.registry import register
from hydranet.tasks import Task
from hydranet.train.surface import RunParts

GROUP_KEY = "fairness@group"  # the batch key of each example's sensitive group (an index)


class AdversarialOptions(Options):
    adversary_weight: float = Field(0.3, ge=0, description="α: how strongly the adversary's gradient is reversed into the model")
    constraint: Literal["demographic_parity", "equalized_odds"] = Field(
        "demographic_parity", description="what the adversary sees: the prediction (demographic_parity) or the prediction and the true label (equalized_odds)")
    adversary_lr: float = Field(0.01, gt=0, description="learning rate of the adversaries' own Adam; they must learn faster than the model (about 5× train.optimizer.lr)")
    projection: bool = Field(True, description="also remove the part of the model's gradient along the adversary's (the paper's projection term); false: gradient reversal only")


def adversarial_update(g: Tensor, h: Tensor, alpha: float, projection: bool = True) -> Tensor:
    """The paper's update g − proj_h g − α·h for flat gradients g (the model's loss) and h (the adversary's loss).

    With h = 0 (the adversary cannot tell the groups apart yet) the projection is zero, not NaN."""
    if projection:
        g = g - (g @ h) / (h @ h).clamp(min=torch.finfo(h.dtype).tiny) * h
    return g - alpha * h


class Adversary(nn.Module):
    """One task's adversary, as in the paper: s = σ((1+|c|)·z) of the task's logit z (a softmax over a
    classification task's logits) with c learned, then a linear layer to one logit per sensitive group; under
    equalized odds it sees s and s ⊗ one-hot(y) (for a binary task: s, s·(1−y), s·y)."""

    def __init__(self, outputs: int, classes: int, groups: int, equalized_odds: bool):
        super().__init__()
        self.classes, self.equalized_odds = classes, equalized_odds
        self.c = nn.Parameter(torch.ones(()))
        self.linear = nn.Linear(outputs * (1 + classes) if equalized_odds else outputs, groups)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """(B, groups) logits from the task's (B,) or (B, K) logits and (B,) class indices (ignored under DP)."""
        z = (1 + self.c.abs()) * logits.reshape(len(logits), -1)  # (B, K)
        s = torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, -1)
        if self.equalized_odds:
            onehot = F.one_hot(labels, self.classes).to(s.dtype)  # (B, C)
            s = torch.cat([s, (s[:, :, None] * onehot[:, None, :]).flatten(1)], 1)  # (B, K + K·C)
        return self.linear(s)


def adversary_term(task: str) -> str:
    """The name of a task's adversary loss term (logged with the others)."""
    return f"{task}@adversary"


class AdversarialDebiasing:
    """The training part: an extra loss giving each mitigated task's adversary loss as its own term, and `wrap`,
    which makes the balancer that reverses those terms' gradients into the model after combining the rest.

    The adversary reads the task's prediction from a forward pass of its own, so it needs nothing from the trainer's
    (its graph is separate from the task losses', which the balancer may already have freed). The adversaries have
    their own Adam at `adversary_lr`, stepped as soon as their gradient is known: an adversary that learns no faster
    than the model cannot keep up with it (with the model's optimizer the parity gap of the test table swung from
    one group to the other instead of closing). Their parameters are therefore not offered to the trainer's
    optimizer; weights and optimizer state go into the checkpoint through `state_dict`."""

    def __init__(self, options: AdversarialOptions, tasks: dict[str, Task], groups: int, device: torch.device | str = "cpu"):
        self.tasks, self.alpha, self.projection = tasks, options.adversary_weight, options.projection
        eo = options.constraint == "equalized_odds"
        self.adversaries = nn.ModuleDict({name: Adversary(task.info.outputs, len(task.info.classes), groups, eo)
                                          for name, task in tasks.items()}).to(device)
        self.optimizer = torch.optim.Adam(self.adversaries.parameters(), lr=options.adversary_lr)
        self.predictor: list[Tensor] = []  # the model's learning parameters, seen at the last forward

    @property
    def terms(self) -> dict[str, str]:
        """Loss term → task."""
        return {adversary_term(name): name for name in self.tasks}

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """{"<task>@adversary": cross-entropy of the adversary's group guess over the task's labelled examples}."""
        self.predictor = [p for p in model.parameters() if p.requires_grad]
        preds = model(batch["x"])
        out = {}
        for name, task in self.tasks.items():
            labels = task.spec.class_index(batch[name])  # -1: no label, left out (as from the task's loss)
            keep = (labels >= 0).float()
            logits = self.adversaries[name](preds[name].float(), labels.clamp(min=0))
            losses = F.cross_entropy(logits, batch[GROUP_KEY], reduction="none")
            out[adversary_term(name)] = (losses * keep).sum() / keep.sum().clamp(min=1)
        return out

    def reverse(self, terms: dict[str, Tensor]) -> None:
        """After the balancer's backward: each adversary gets ∇_U L_A, the model's `.grad` the update above."""
        for term, loss in terms.items():
            own = list(self.adversaries[self.terms[term]].parameters())
            grads = torch.autograd.grad(loss, [*self.predictor, *own], allow_unused=True)
            for p, grad in zip(own, grads[len(self.predictor):]):
                p.grad = grad
            reached = [(p, h) for p, h in zip(self.predictor, grads) if h is not None]  # trunk and this task's head
            params = [p for p, _ in reached]
            h = torch.cat([grad.reshape(-1) for _, grad in reached])
            g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
            set_grad(params, adversarial_update(g, h, self.alpha, self.projection) - g)  # adds the change into .grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"adversaries": self.adversaries.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.adversaries.load_state_dict(state["adversaries"])
        self.optimizer.load_state_dict(state["optimizer"])

    def wrap(self, balancer: object) -> DebiasedBalancer:
        """The run's balancer, followed by this step (train/surface.py `RunParts.balancer_wrappers`)."""
        return DebiasedBalancer(balancer, self)


class DebiasedBalancer:
    """The chosen balancer combines the task terms (never seeing the adversary terms), then `reverse` edits the
    combined gradient. Hooks, state and learnable weights are the inner balancer's, so a checkpoint holds what it
    would without the mitigation."""

    def __init__(self, inner: object, debias: AdversarialDebiasing):
        self.inner, self.debias = inner, debias
        if isinstance(inner, nn.Module):  # the trainer moves modules among its components; this one it no longer sees
            inner.to(next(debias.adversaries.parameters()).device)

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float | Tensor]:
        own = {name: loss for name, loss in losses.items() if name in self.debias.terms}
        weights = self.inner.backward({name: loss for name, loss in losses.items() if name not in own}, shared_params)
        self.debias.reverse(own)
        return {**weights, **{name: self.debias.alpha for name in own}}

    def __getattr__(self, name: str):
        """Everything else (lifecycle hooks, state_dict, parameters) is the inner balancer's."""
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


@register("mitigation", "adversarial", options=AdversarialOptions)
class Adversarial:
    """The `adversarial` mitigation: the sensitive group of each example travels in the batches (`GROUP_KEY`), and
    the training part is `AdversarialDebiasing`."""

    def __init__(self, options: AdversarialOptions):
        self.options = options

    def batch_tensors(self, fairness: FairnessConfig, columns: dict[str, np.ndarray], train: torch.Tensor) -> dict[str, Tensor]:
        """{GROUP_KEY: int64 (N,)}: the index of each example's group over all sensitive columns together."""
        if not fairness.sensitive:
            raise UserError("fairness.mitigation: adversarial needs fairness.sensitive (the columns whose groups it protects)")
        groups = joint_groups(fairness, columns).astype(str)
        for warning in check_groups(" × ".join(fairness.sensitive), groups[train.numpy()], "the train split",
                                    fairness.min_group_size):
            warnings.warn(f"adversarial: {warning}", stacklevel=2)
        return {GROUP_KEY: torch.from_numpy(np.unique(groups, return_inverse=True)[1].astype(np.int64))}

    def check(self, infos: dict[str, TaskInfo]) -> None:
        """Refuse a mitigated task without class labels (the adversary reads class scores and labels)."""
        for task, info in infos.items():
            if not get_kind(info.kind).single_label:
                raise UserError(f"fairness.tasks: adversarial needs class labels, and task {task!r} is {info.kind} "
                                f"(name the binary or classification tasks to mitigate in fairness.tasks)")

    def run_parts(self, tasks: dict[str, Task], data: Dataset, device: torch.device) -> RunParts:
        """The adversaries of the mitigated `tasks`, as an extra loss and a balancer wrapper.

        Not under torchrun yet: the adversaries' own steps and the projection of the model's gradient would need
        every rank's gradients first (a per-rank projection, averaged, is not the projection of the average)."""
        if world_size() > 1:
            raise UserError(f"fairness.mitigation: adversarial debiasing trains in one process only ({world_size()} "
                            f"were started); train it without --nproc/torchrun, or use fairness.mitigation reweigh")
        self.check({name: task.info for name, task in tasks.items()})
        debias = AdversarialDebiasing(self.options, tasks, int(data.extras[GROUP_KEY].max()) + 1, device)
        return RunParts(extra_losses=[debias], balancer_wrappers=[debias.wrap])
