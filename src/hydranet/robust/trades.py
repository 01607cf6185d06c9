"""TRADES as a trainer objective: β·KL(f(x) ‖ f(x_adv)) per classification task, x_adv from PGD on that KL.

Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydranet.config import AdversarialConfig
from hydranet.errors import UserError
from hydranet.registry import register
from hydranet.robust.attacks import PixelSpace, frozen, pgd
from hydranet.robust.training import attacked, epoch_generator, warmup_eps
from hydranet.tasks import Task


def kl_per_example(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """KL(softmax(clean) ‖ softmax(adv)) per example (B,), in float32."""
    p_log = F.log_softmax(clean_logits.float(), -1)
    return (p_log.exp() * (p_log - F.log_softmax(adv_logits.float(), -1))).sum(-1)


@register("objective", "trades")
class TRADES:
    """The robust term of TRADES; the trainer's task losses are its natural (clean) term.

    The split keeps accuracy and robustness as two named terms the balancer can weigh. x_adv maximizes the
    summed KL over the classification tasks with `robust.attacks.pgd` (eval mode, gradients in δ only, so
    parameters, `.grad` and BatchNorm statistics stay as they were), from a uniform random start in the ball
    (the paper starts at x + 0.001·N(0, I); at δ = 0 the KL's gradient vanishes, so some start is needed).
    """

    def __init__(self, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace):
        self.tasks = [n for n, t in attacked(tasks, cfg.tasks).items() if t.kind == "classification"]
        if not self.tasks:
            raise UserError("adversarial.method: trades needs a classification task among adversarial.tasks")
        self.cfg, self.space = cfg, space
        self.ratio = cfg.step_size / cfg.eps if cfg.step_size and cfg.eps else 2.5 / cfg.steps
        self.eps = warmup_eps(cfg.eps, 0, cfg.warmup_epochs)
        self.generator: torch.Generator | None = None

    def on_epoch_start(self, trainer) -> None:
        self.eps = warmup_eps(self.cfg.eps, trainer.epoch, self.cfg.warmup_epochs)
        self.generator = epoch_generator(trainer, trainer.device)

    def adversarial(self, model: nn.Module, x: Tensor) -> Tensor:
        """PGD inputs maximizing Σ_tasks KL(f(x) ‖ f(x+δ)), the clean side fixed (eval mode, no grad)."""
        with frozen(model), torch.no_grad():
            clean = model(x)

        def objective(outputs: dict[str, Tensor]) -> Tensor:
            return sum(kl_per_example(clean[n], outputs[n]) for n in self.tasks)

        return pgd(model, x, objective, self.space, self.eps, steps=self.cfg.steps,
                   step_size=self.ratio * self.eps, generator=self.generator)

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x_adv = self.adversarial(model, batch["x"])
        clean, adv = model(batch["x"]), model(x_adv)  # train mode: gradients flow through both sides
        return {f"{n}@trades": self.cfg.beta * kl_per_example(clean[n], adv[n]).mean() for n in self.tasks}
