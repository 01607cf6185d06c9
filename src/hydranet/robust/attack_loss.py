"""What an attack maximizes (`AttackLoss`: per example, one task's loss, the sum of all tasks' losses, or a pull
towards a target class) and its gradient with respect to a pixel-space perturbation δ.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.robust.space import PixelSpace
from hydranet.tasks import Task


class AttackLoss:
    """What an attack maximizes, per example (B,): one task's loss, or the sum of all tasks' losses.

    Targeted (`target_class`, classification tasks): minus the cross-entropy to the target class, so
    maximizing it pulls the prediction towards that class.
    """

    def __init__(self, tasks: dict[str, Task], targets: dict[str, Tensor], task: str | None = None,
                 target_class: Tensor | int | None = None):
        if task is not None and task not in tasks:
            raise UserError(f"--task: {task!r} is not a task of this run (tasks: {', '.join(tasks)})")
        self.tasks = {task: tasks[task]} if task else dict(tasks)
        self.targets = targets
        self.target_class = target_class
        if target_class is not None and (len(self.tasks) != 1 or not next(iter(self.tasks.values())).spec.class_scores):
            raise UserError("--task: a targeted attack needs one classification task")

    def __call__(self, outputs: dict[str, Tensor]) -> Tensor:
        if self.target_class is not None:
            (name, task), = self.tasks.items()
            goal = torch.as_tensor(self.target_class, device=outputs[name].device).expand(len(outputs[name]))
            return -task.example_losses(outputs[name], goal)
        return sum(task.example_losses(outputs[name], self.targets[name]) for name, task in self.tasks.items())


def loss_and_grad(model: nn.Module, space: PixelSpace, x: Tensor, delta: Tensor,
                  attack_loss: Callable[[dict[str, Tensor]], Tensor]) -> tuple[Tensor, Tensor]:
    """The attack loss per example (B,) at x + δ and its gradient with respect to δ (B, C, H, W).

    `torch.autograd.grad` with `inputs=δ` leaves every parameter's `.grad` as it was.
    """
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = attack_loss(model(space.model_input(x, delta)))
        (grad,) = torch.autograd.grad(loss.sum(), delta)
    return loss.detach(), grad.detach()
