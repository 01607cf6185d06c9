"""The catastrophic-overfitting guard: a small PGD check on held-out val examples after each epoch.

It records robust accuracy, keeps the best-robust weights, and says when robustness collapsed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import Tensor

from hydranet.config import AdversarialConfig
from hydranet.data.split import random_rows
from hydranet.files import read_tensors, write_tensors
from hydranet.randomness import Purpose, stream
from hydranet.robust.attack_loss import AttackLoss
from hydranet.robust.pgd import pgd
from hydranet.robust.space import PixelSpace
from hydranet.tasks import Task
from hydranet.train.evaluation import predict_batches


def mean_accuracy(tasks: dict[str, Task], outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> float:
    """Mean accuracy over the (single-label) tasks, labeled examples only."""
    values = []
    for name, task in tasks.items():
        y = batch[name]
        right, labeled = task.spec.correct(outputs[name], y), task.spec.labeled(y)
        if labeled.any():
            values.append(float((right & labeled).sum()) / float(labeled.sum()))
    return sum(values) / len(values) if values else float("nan")


class RobustGuard:
    """Each `every` epochs: PGD (`steps`, full eps, `adversarial.norm`) on `examples` val images → `record["robust"]`.

    FGSM training can "catastrophically overfit" within one epoch: PGD accuracy drops to about 0 while clean
    accuracy holds or rises (Wong et al. 2020, §5). A collapse here is robust accuracy below half its best
    while clean accuracy stays within `clean_slack` of its value at the best epoch. The best-robust weights
    are kept in `checkpoint/best_robust.safetensors` and restored at fit end when a collapse happened.
    `tasks` are the attacked ones (`adversarial.tasks`); accuracy is measured on their single-label kinds.
    """

    def __init__(self, cfg: AdversarialConfig, tasks: dict[str, Task], space: PixelSpace, val: dict[str, Tensor],
                 best_path: Path, seed: int = 0, batch_size: int = 1024, clean_slack: float = 0.1,
                 metadata: dict[str, str] | None = None):
        self.cfg, self.space, self.best_path, self.clean_slack = cfg, space, best_path, clean_slack
        self.metadata = metadata  # the run's stamp, as every weights file of a run carries (rundir.RunDir.stamp)
        self.seed, self.batch_size = seed, batch_size
        self.tasks = {n: t for n, t in tasks.items() if t.spec.single_label}
        self.val = random_rows(val, cfg.guard_examples, seed)  # all classes, not the first in file order
        self.best: float | None = None
        self.best_clean = float("nan")
        self.best_epoch = 0
        self.collapsed = False

    def check(self, trainer) -> dict[str, float]:
        """Clean and PGD accuracy of the current model on the guard's examples."""
        model, x = trainer.eval_model, self.val["x"]
        generator = stream(self.seed, Purpose.GUARD_START, trainer.epoch, device=x.device)
        attack_loss = AttackLoss(self.tasks, {n: self.val[n] for n in self.tasks})
        x_adv = pgd(model, x, attack_loss, self.space, self.cfg.eps, norm=self.cfg.norm, steps=self.cfg.guard_steps,
                    generator=generator)
        clean = mean_accuracy(self.tasks, predict_batches(model, x, self.batch_size), self.val)
        robust = mean_accuracy(self.tasks, predict_batches(model, x_adv, self.batch_size), self.val)
        return {"pgd_accuracy": robust, "clean_accuracy": clean, "eps": self.cfg.eps, "norm": self.cfg.norm,
                "steps": self.cfg.guard_steps}

    def on_epoch_end(self, trainer, record: dict) -> None:
        if not self.tasks or record["epoch"] % self.cfg.guard_every:
            return
        result = self.check(trainer)
        robust, clean = result["pgd_accuracy"], result["clean_accuracy"]
        if self.best is None or robust > self.best:
            self.best, self.best_clean, self.best_epoch = robust, clean, record["epoch"]
            write_tensors(self.best_path, trainer.eval_model.state_dict(), self.metadata)
        collapsed = robust < self.best / 2 and clean >= self.best_clean - self.clean_slack
        if collapsed:
            self.collapsed = True
            print(f"warning: robust accuracy collapsed at epoch {record['epoch']}: PGD {robust:.3f} vs best "
                  f"{self.best:.3f} (epoch {self.best_epoch}) while clean accuracy is {clean:.3f} — catastrophic "
                  f"overfitting; the best-robust weights will be restored at the end", file=sys.stderr)
        record["robust"] = {**result, "best": self.best, "best_epoch": self.best_epoch, "collapsed": collapsed}

    def on_fit_end(self, trainer) -> None:
        if self.collapsed and self.best_path.exists():
            trainer.model.load_state_dict(read_tensors(self.best_path)[0])

    def state_dict(self) -> dict:
        return {"best": self.best, "best_clean": self.best_clean, "best_epoch": self.best_epoch, "collapsed": self.collapsed}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_clean = state["best"], state["best_clean"]
        self.best_epoch, self.collapsed = state["best_epoch"], state["collapsed"]
