"""Adversarial training (`adversarial:`), one method per file (fgsm_rs, pgd, trades; their shared parts in base.py),
and `build_adversarial`, which makes a run's method and its guard; registered, so run assembly imports none of it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hydranet import registry
from hydranet.config import ADVERSARIAL_KINDS, Config
from hydranet.data import DataInfo, Dataset
from hydranet.data.batches import on_device
from hydranet.errors import UserError
from hydranet.registry import register
from hydranet.robust.defenses import base, fgsm_rs, pgd, trades  # noqa: F401  (importing registers the methods)
from hydranet.robust.defenses.base import attacked
from hydranet.robust.guard import RobustGuard
from hydranet.robust.space import PixelSpace
from hydranet.rundir import RunDir
from hydranet.tasks import Task
from hydranet.train.surface import RunParts


def check_data(cfg: Config, info: DataInfo, val_examples: int | None) -> None:
    """What `adversarial:` needs of the data: images, and val examples for the guard (None: not known yet).

    `fit` calls it once the data has loaded and before the run directory exists, so a refused config leaves
    nothing behind. It cannot be a config check: a source may bring its own val split even with data.split.val 0.
    """
    adv = cfg.adversarial
    if adv.method.name == "none":
        return
    if not info.is_image:
        raise UserError(f"adversarial.method: {adv.method.name} needs an image run (this run is a table)")
    if adv.guard_every and val_examples == 0:
        raise UserError("adversarial.guard_every: the guard needs val examples (set data.split.val > 0, or guard_every 0)")


def build_adversarial(cfg: Config, tasks: dict[str, Task], info: DataInfo, device: torch.device | str = "cpu", *,
                      val: dict[str, Tensor] | None = None, best_path=None,
                      metadata: dict[str, str] | None = None) -> RunParts:
    """`cfg.adversarial`'s method (a perturbation or an extra loss, looked up in the registry by name) and, given
    the val split (on `device`) and where to keep the best-robust weights (with `metadata`: the run's stamp), its
    guard (a callback)."""
    method, adv = cfg.adversarial.method, cfg.adversarial
    if method.name == "none":
        return RunParts()
    check_data(cfg, info, val_examples=None)
    space = PixelSpace.from_info(info, device)
    kind, make = registry.find(method.name, ADVERSARIAL_KINDS)  # the config's validation checked the name
    component = make(method.options, adv, tasks, space)
    guard = []
    if val is not None and best_path is not None and adv.guard_every:
        guard = [RobustGuard(adv, attacked(tasks, adv.tasks), space, val, best_path, cfg.seed, cfg.train.eval_batch_size,
                              metadata=metadata)]
    if kind == "perturbation":
        return RunParts(perturbations=[component], callbacks=guard)
    return RunParts(extra_losses=[component], callbacks=guard)


@register("run_parts", "adversarial")
class AdversarialTraining:
    """What `adversarial:` adds to a training run, found by run assembly through the registry."""

    @staticmethod
    def check(cfg: Config, data: Dataset) -> None:
        check_data(cfg, data.info, len(data.index["val"]))

    @staticmethod
    def build(cfg: Config, tasks: dict[str, Task], data: Dataset, run: RunDir, device: torch.device) -> RunParts:
        check_data(cfg, data.info, len(data.index["val"]))  # fit checked it already; a resumed run's data may have changed
        guarded = cfg.adversarial.method.name != "none" and cfg.adversarial.guard_every
        val = on_device(data.split("val"), device) if guarded else None  # the guard draws its examples from it
        return build_adversarial(cfg, tasks, data.info, device, val=val, best_path=run.best_robust,
                                  metadata=run.stamp())
