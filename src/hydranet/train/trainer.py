"""The multi-task training loop: batches → (perturbations) → forward → task and extra losses → balancer → step.
It never names a method: its components get the hooks of train/surface.py and see the trainer as `TrainerView`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable

import torch
from torch import nn

from hydranet.config import Config
from hydranet.data.batches import Batches, on_device
from hydranet.data.dataset import Dataset, weight_key
from hydranet.distributed.batchnorm import sync_batch_norm
from hydranet.distributed.context import rank, world_size
from hydranet.distributed.reduce import average_buffers, average_gradients, summed
from hydranet.errors import UserError
from hydranet.randomness import Purpose, seed_global
from hydranet.tasks import Task
from hydranet.train.evaluation import eval_settings, evaluate_split
from hydranet.train.optim import build_optimizer, load_optimizer_state, lr_factor, param_groups, set_lr
from hydranet.train.precision import autocast, resolve_precision


class RunningMeans:
    """Per-epoch (sum, count) pairs kept as tensors, so adding a step's values never syncs with the device."""

    def __init__(self):
        self.sums: dict[str, tuple[Any, Any]] = {}

    def add(self, name: str, total: Any, count: Any) -> None:
        old = self.sums.get(name)
        self.sums[name] = (total, count) if old is None else (old[0] + total, old[1] + count)

    def means(self) -> dict[str, float]:
        """The epoch's means as plain numbers (the one sync per epoch), over every rank's examples under torchrun
        (one all-reduce: every rank records the same epoch); NaN where nothing was counted."""
        if not self.sums:
            return {}
        pairs = torch.tensor([[float(t), float(c)] for t, c in self.sums.values()], dtype=torch.float64)
        device = next((t.device for t, _ in self.sums.values() if isinstance(t, torch.Tensor)), None)
        totals = summed(pairs.to(device) if device is not None else pairs, "the epoch's running means").cpu()
        return {k: float(t) / float(c) if float(c) else float("nan") for k, (t, c) in zip(self.sums, totals.tolist())}


class TrainingDiverged(UserError):
    """The loss became NaN or ±inf. Raised before the epoch's hooks run, so its checkpoint, metrics and best
    weights are not written and the previous epoch's stay; `epoch` is the one that diverged."""

    def __init__(self, epoch: int, what: str, lr: float):
        super().__init__(f"training diverged at epoch {epoch} ({what}): lower train.optimizer.lr (now {lr:g}), add "
                         f"warm-up (train.schedule.warmup) or gradient clipping (train.grad_clip), or check the data "
                         f"for extreme values")
        self.epoch = epoch


def member_outputs(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """An ensemble's per-member outputs of its last training forward (TabM's loss scores each member), taken off the
    model: left there, tensors of the autograd graph would stop the model from being copied (deepcopy, pickle)."""
    outputs = getattr(model, "member_outputs", None)
    if outputs is not None:
        model.member_outputs = None
    return outputs


class Trainer:
    """Trains a HydraNet on a Dataset; `state_dict` / `load_state_dict` make it resumable.

    Components (balancer, perturbations, extra losses, callbacks) receive the trainer in every hook and use only
    its `TrainerView` (train/surface.py); whoever builds, resumes or summarizes a trainer may use all of it.
    Components' states go into the checkpoint through `state_dict`; a component with `parameters()` (a
    balancer's learnable task weights) is optimized too.
    """

    def __init__(self, model: nn.Module, tasks: dict[str, Task], cfg: Config, balancer: Any, *,
                 device: torch.device, callbacks: Iterable = (), perturbations: Iterable = (), extra_losses: Iterable = ()):
        self.model, self.tasks, self.cfg, self.balancer, self.device = model, tasks, cfg, balancer, device
        self.callbacks, self.perturbations, self.extra_losses = list(callbacks), list(perturbations), list(extra_losses)
        if cfg.train.sync_batch_norm:  # BatchNorm over all ranks' examples, the methods' heads too (one process: no-op)
            for module in [model, *self.components]:
                if isinstance(module, nn.Module):
                    sync_batch_norm(module, device)
        for component in self.components:
            if isinstance(component, nn.Module):  # components with tensors live on the training device
                component.to(device)
        train = cfg.train
        groups = param_groups(model, train.optimizer.weight_decay, train.trunk_lr_mult)
        extra = [p for c in self.components if hasattr(c, "parameters") for p in c.parameters() if p.requires_grad]
        if extra:  # learnable parts of components (e.g. a balancer's task weights): optimized, never decayed
            groups.append({"params": extra, "weight_decay": 0.0})
        self.optimizer = build_optimizer(train.optimizer, groups)
        self.shared = [p for p in getattr(model, "shared_parameters", model.parameters)() if p.requires_grad]
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.should_stop = False
        self.total_steps = 0
        self.lr = train.optimizer.lr
        self.precision = resolve_precision(train.precision, device)  # fp32 or bf16, decided once

    @property
    def seed(self) -> int:
        """The run's seed, from which components draw their own named random streams."""
        return self.cfg.seed

    @property
    def epochs(self) -> int:
        """Planned epochs (`train.epochs`); early stopping may end the run before."""
        return self.cfg.train.epochs

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def components(self) -> list:
        return [self.balancer, *self.perturbations, *self.extra_losses, *self.callbacks]

    def hook(self, name: str, *args: Any) -> None:
        """Call an optional hook (train/surface.py `HOOKS`) on every component that defines it, in order."""
        for component in self.components:
            method = getattr(component, name, None)
            if method is not None:
                method(self, *args)

    def fit(self, data: Dataset) -> list[dict]:
        """Train until `train.epochs` or until a callback sets `should_stop`; returns the history.

        A fit that stops early by an error (`TrainingDiverged`, Ctrl-C) still ends with `on_fit_end`, so components
        let go of what they hold (the progress bar, TensorBoard's writer) before the error is printed; the unfinished
        epoch's `on_epoch_end` never runs, so nothing of it is saved."""
        cfg = self.cfg
        batches = Batches(data, self.device, cfg.train.batch_size, cfg.data.augment, cfg.seed, cfg.train.channels_last)
        val = self.to_device(data.split("val")) if len(data.index["val"]) else None
        self.total_steps = cfg.train.epochs * len(batches)
        self.hook("on_fit_start")
        try:
            self._epochs(batches, val)
        finally:
            self.hook("on_fit_end")
        return self.history

    def _epochs(self, batches: Batches, val: dict[str, torch.Tensor] | None) -> None:
        """The remaining epochs, each followed by its checks and `on_epoch_end` (which saves it)."""
        while self.epoch < self.cfg.train.epochs and not self.should_stop:
            start = time.perf_counter()
            record = self._train_epoch(batches)
            self._check_finite("train loss", record["train"]["loss"])
            if not self._weights_finite():  # the epoch's losses came before its last step, which may have broken them
                raise self._diverged("weights nan or inf")
            if val is not None and self.tasks:
                record["val"], record["val_loss"] = self.evaluate(val)
                self._check_finite("val loss", record["val_loss"])
            record["seconds"] = round(time.perf_counter() - start, 4)
            self.train_seconds += record["seconds"]
            self.history.append(record)
            self.epoch += 1
            self.hook("on_epoch_end", record)

    def _check_finite(self, what: str, loss: float) -> None:
        """Stop at the end of an epoch whose loss is NaN or ±inf, before any hook saves it as a good epoch.

        Checked once per epoch on the epoch's mean, which the loop computes anyway: a check per step would sync
        with the device every step. A NaN step poisons the mean, so no diverged step goes unnoticed."""
        if not math.isfinite(loss):
            raise self._diverged(f"{what} {loss:g}")

    def _diverged(self, what: str) -> TrainingDiverged:
        return TrainingDiverged(self.epoch + 1, what, self.cfg.train.optimizer.lr)

    def _weights_finite(self) -> bool:
        """Whether every parameter is finite: one device sync for all of them."""
        checks = [p.detach().isfinite().all() for p in self.model.parameters()]
        return not checks or bool(torch.stack(checks).all())

    # --- one epoch ------------------------------------------------------------------------------

    def _train_epoch(self, batches: Batches) -> dict:
        epoch = batches.epoch(self.epoch)  # shuffled, normalized, augmented: the same batches on a resume
        self._seed_dropout()
        running, weights = RunningMeans(), RunningMeans()  # weights: epoch means (RLW, FAMO change every step)
        self.model.train()
        self.hook("on_epoch_start")
        for batch in epoch:
            size = len(batch["x"])
            losses, stats, step_weights = self.train_step(batch)
            for name, loss in losses.items():
                running.add(name, loss.detach().float() * size, size)
            for name, (total, count) in stats.items():
                running.add(name, total, count)
            for name, weight in step_weights.items():
                weights.add(name, weight, 1)
            self.hook("on_step_end", losses)
        for model in {id(m): m for m in (self.model, self.eval_model)}.values():  # before evaluation and saving
            average_buffers(model)
        return self._epoch_record(running.means(), weights.means())

    def _seed_dropout(self) -> None:
        """Dropout draws from the global RNG: one stream per epoch, and per rank under torchrun (each rank's share
        of the batch gets its own masks, as the examples of one process's batch do)."""
        if world_size() == 1:
            seed_global(self.cfg.seed, Purpose.DROPOUT, self.epoch)
        else:
            seed_global(self.cfg.seed, Purpose.RANK_DROPOUT, self.epoch, rank())

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
        """One optimizer step; returns the loss terms, running stats and the balancer's weights."""
        self.lr = self.cfg.train.optimizer.lr * lr_factor(self.cfg.train.schedule, self.step, self.total_steps)
        set_lr(self.optimizer, self.lr)
        for perturb in self.perturbations:
            batch = perturb(self.model, batch, self.loss_terms)
        preds = {}
        if self.tasks:  # a model without tasks (self-supervised pretraining) is trained by extra losses only
            with autocast(self.device, self.precision):
                preds = self.model(batch["x"])  # {task: (B, outputs) or (B,)}
        losses = self.task_losses(member_outputs(self.model) or preds, batch)
        for extra in self.extra_losses:  # named terms beside the tasks' ("digit@trades", "simclr")
            losses.update(extra(self.model, batch))
        self.hook("on_losses", losses)  # before backward: diagnostics may take per-term gradients here
        weights = self.balancer.backward(losses, self.shared)
        if getattr(self.model, "features", None) is not None:  # MGDA-UB's z, used: a graph tensor would stop copies
            self.model.features = self.model.head_inputs = None
        average_gradients(p for group in self.optimizer.param_groups for p in group["params"])  # torchrun: all ranks'
        if self.cfg.train.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        with torch.no_grad():
            stats = {f"{t}/{k}": v for t, task in self.tasks.items() for k, v in task.train_stats(preds[t].float(), batch[t]).items()}
        # detached: the caller holds them through the next step, which must not keep this step's graph alive
        return {name: loss.detach() for name, loss in losses.items()}, stats, weights

    def task_losses(self, preds: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One named loss term per task, computed in float32 even under autocast, weighted by the task's example
        weights where the batch carries them (`weight_key`).

        Predictions may hold several rows per example, member-major (an ensemble's `member_outputs`: k blocks of
        the batch): each block is scored against the batch's targets, and the mean over all rows is the mean over
        members of each member's own loss."""
        def rows(target: torch.Tensor | None, n: int) -> torch.Tensor | None:
            if target is None or len(target) == n:  # one prediction per example: no copy
                return target
            return target.repeat(n // len(target), *[1] * (target.dim() - 1))

        return {t: task.loss(preds[t].float(), rows(batch[t], len(preds[t])),
                             rows(batch.get(weight_key(t)), len(preds[t])))
                for t, task in self.tasks.items()}

    def loss_terms(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss function handed to perturbations (attacks maximize it)."""
        with autocast(self.device, self.precision):
            preds = model(batch["x"])
        return self.task_losses(member_outputs(model) or preds, batch)  # an ensemble: what training minimizes

    def _epoch_record(self, means: dict[str, float], weights: dict[str, float]) -> dict:
        """{"epoch", "lr", "train": {term: {"loss", stats…}, "loss": Σ terms}, "weights": {term: mean w}}."""
        train: dict[str, Any] = {t: {} for t in self.tasks}
        for name, value in means.items():
            owner, _, metric = name.partition("/")  # "digit" is a loss term, "digit/accuracy" a running stat
            train.setdefault(owner, {})[metric or "loss"] = value
        train["loss"] = sum(v for k, v in means.items() if "/" not in k)
        return {"epoch": self.epoch + 1, "lr": self.lr, "train": train, "weights": weights}

    # --- evaluation -----------------------------------------------------------------------------

    @property
    def eval_model(self) -> nn.Module:
        """The weights that evaluation, early stopping and saving use: the first component offering an
        `eval_model` (the weight average of `train.ema`), else the model being trained."""
        offered = (getattr(c, "eval_model", None) for c in self.components)
        return next((m for m in offered if m is not None), self.model)

    def evaluate(self, split: dict[str, torch.Tensor]) -> tuple[dict, float]:
        """Metrics per task on a whole split (with the eval model), and the sum of the task losses."""
        batch_size, _, tta = eval_settings(self.cfg.train)
        metrics = evaluate_split(self.eval_model, self.tasks, split, batch_size, self.precision, tta)
        return metrics, sum(m.get("loss", 0.0) for m in metrics.values())

    def to_device(self, split: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return on_device(split, self.device, self.cfg.train.channels_last)

    # --- checkpointing --------------------------------------------------------------------------

    def _named_components(self) -> dict[str, Any]:
        named = {"balancer": self.balancer}
        for c in [*self.perturbations, *self.extra_losses, *self.callbacks]:
            key, n = type(c).__name__, 1
            while key in named:  # two components of one class keep separate states
                key, n = f"{type(c).__name__}#{n}", n + 1
            named[key] = c
        return {k: c for k, c in named.items() if hasattr(c, "state_dict")}

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "history": self.history, "train_seconds": self.train_seconds,
            "should_stop": self.should_stop, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "components": {k: c.state_dict() for k, c in self._named_components().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.train_seconds, self.should_stop = state["train_seconds"], state["should_stop"]
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        for name, component in self._named_components().items():
            if name in state["components"]:
                component.load_state_dict(state["components"][name])
