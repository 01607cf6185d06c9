"""Gradient attacks on a trained HydraNet: the pixel space they work in, what they maximize, FGSM and PGD.

Perturbations live in raw pixel space [0, 1] (before normalization); the model sees `x + δ / std`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from hydranet.errors import UserError
from hydranet.tasks import Task

NORMS = ("linf", "l2")


@dataclass
class PixelSpace:
    """Raw pixels in [0, 1] ↔ normalized model inputs, from a run's `data.json` (mean, std per channel)."""

    mean: Tensor  # (1, C, 1, 1)
    std: Tensor  # (1, C, 1, 1)

    @classmethod
    def from_info(cls, info: dict, device: torch.device | str = "cpu") -> "PixelSpace":
        if info.get("kind") != "image":
            # A table's encoded columns (one-hot, standardized) have no common valid range or distance.
            raise UserError("attacks need an image run (this run was trained on a table)")
        view = (1, -1, 1, 1)
        return cls(torch.tensor(info["mean"], device=device).view(view), torch.tensor(info["std"], device=device).view(view))

    def raw(self, x: Tensor) -> Tensor:
        """Normalized (B, C, H, W) → raw pixels in [0, 1]; the clamp absorbs float round-off."""
        return (x * self.std + self.mean).clamp(0, 1)

    def model_input(self, x: Tensor, delta: Tensor) -> Tensor:
        """The normalized input with a raw-space perturbation added: exactly `x` when δ = 0."""
        return x + delta / self.std


class Objective:
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


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm uses, never updates, its running statistics; no dropout), restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def loss_and_grad(model: nn.Module, space: PixelSpace, x: Tensor, delta: Tensor,
                  objective: Callable[[dict[str, Tensor]], Tensor]) -> tuple[Tensor, Tensor]:
    """Objective per example (B,) at x + δ and its gradient with respect to δ (B, C, H, W).

    `torch.autograd.grad` with `inputs=δ` leaves every parameter's `.grad` as it was.
    """
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = objective(model(space.model_input(x, delta)))
        (grad,) = torch.autograd.grad(loss.sum(), delta)
    return loss.detach(), grad.detach()


# --- norm geometry: steepest-ascent step, projection on the eps-ball, random start -------------------


def _norms(t: Tensor) -> Tensor:
    """Per-example L2 norms, shaped (B, 1, 1, 1) to broadcast over (B, C, H, W)."""
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.dim() - 1)).clamp_min(1e-12)


def ascent(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit norm: sign(g) for L∞, g/‖g‖₂ for L2."""
    return grad.sign() if norm == "linf" else grad / _norms(grad)


def project(delta: Tensor, x_raw: Tensor, eps: float | Tensor, norm: str) -> Tensor:
    """Onto the eps-ball, then into [0, 1]: clamping x+δ only shrinks |δᵢ|, so δ stays in the ball."""
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, torch.as_tensor(eps)), -torch.as_tensor(eps))
    else:
        delta = delta * (eps / _norms(delta)).clamp(max=1.0)
    return (x_raw + delta).clamp(0, 1) - x_raw


def random_start(x_raw: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """Uniform in the L∞ ball, or uniform in the L2 ball (Gaussian direction, radius eps·u^(1/d))."""
    if norm == "linf":
        noise = torch.rand(x_raw.shape, generator=generator, device=x_raw.device) * 2 - 1
        return project(noise * eps, x_raw, eps, norm)
    direction = torch.randn(x_raw.shape, generator=generator, device=x_raw.device)
    radius = torch.rand(len(x_raw), generator=generator, device=x_raw.device) ** (1 / x_raw[0].numel())
    return project(direction / _norms(direction) * eps * radius.view(-1, *[1] * (x_raw.dim() - 1)), x_raw, eps, norm)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise UserError(f"--norm: {norm!r} is not a norm (expected {' or '.join(NORMS)})")
    return norm


# --- the attacks: each returns adversarial *model* inputs (B, C, H, W) --------------------------------


def fgsm(model: nn.Module, x: Tensor, objective: Callable, space: PixelSpace, eps: float, norm: str = "linf",
         **_: object) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015): one step of size eps along the ascent direction.

    For L2 the step is eps·g/‖g‖₂ (the "fast gradient method").
    """
    check_norm(norm)
    with frozen(model):
        x_raw = space.raw(x)
        _, grad = loss_and_grad(model, space, x, torch.zeros_like(x), objective)
        delta = project(eps * ascent(grad, norm), x_raw, eps, norm)
        return space.model_input(x, delta).detach()


def pgd(model: nn.Module, x: Tensor, objective: Callable, space: PixelSpace, eps: float, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, restarts: int = 1, random_init: bool = True,
        generator: torch.Generator | None = None) -> Tensor:
    """Projected gradient descent (Madry et al. 2018): `steps` ascent steps, each projected back.

    Default step size 2.5·eps/steps (Madry et al.), so the walk can cross the ball and back. Each restart
    starts from a new random point; each example keeps the restart whose final loss is highest.
    """
    check_norm(norm)
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    with frozen(model):
        x_raw = space.raw(x)
        best_delta, best_loss = torch.zeros_like(x), torch.full((len(x),), -math.inf, device=x.device)
        for _ in range(max(restarts, 1)):
            delta = random_start(x_raw, eps, norm, generator) if random_init else torch.zeros_like(x)
            for _ in range(steps):
                _, grad = loss_and_grad(model, space, x, delta, objective)
                delta = project(delta + alpha * ascent(grad, norm), x_raw, eps, norm)
            with torch.no_grad():
                loss = objective(model(space.model_input(x, delta)))  # (B,)
            better = loss > best_loss
            best_delta = torch.where(better.view(-1, *[1] * (x.dim() - 1)), delta, best_delta)
            best_loss = torch.where(better, loss, best_loss)
        return space.model_input(x, best_delta).detach()
