"""One attack on a run directory (`attack_run`): the run's split rebuilt, attacked in chunks, clean and robust
metrics and the success rate written to attack-<name>.json; the attacks by name (`ATTACKS`), eps parsing.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from hydranet.data import build_dataset
from hydranet.data.split import random_rows
from hydranet.errors import UserError
from hydranet.files import write_json
from hydranet.randomness import Purpose, stream
from hydranet.robust.apgd import apgd
from hydranet.robust.attack_loss import AttackLoss
from hydranet.robust.fgsm import fgsm
from hydranet.robust.pgd import pgd
from hydranet.robust.space import PixelSpace, check_norm
from hydranet.rundir import RunDir
from hydranet.train.evaluation import predict_batches
from hydranet.train.lifecycle import apply_process_settings
from hydranet.train.run import Run
from hydranet.tasks import refuse_dense

ATTACKS: dict[str, Callable[..., Tensor]] = {"fgsm": fgsm, "pgd": pgd, "apgd": apgd}
DEFAULT_STEPS = {"fgsm": 1, "pgd": 10, "apgd": 100}


def parse_eps(text: str | float, option: str = "--eps") -> float:
    """'8/255', '0.03' or a number → a float ≥ 0; anything else is a UserError naming the option."""
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{option}: {text!r} is not a number or fraction (expected e.g. 8/255 or 0.03)") from None
    if value < 0:
        raise UserError(f"{option}: {text!r} is negative (expected eps ≥ 0)")
    return value


def get_attack(name: str) -> Callable[..., Tensor]:
    if name not in ATTACKS:
        raise UserError(f"--attack: {name!r} is not an attack (expected {', '.join(ATTACKS)})")
    return ATTACKS[name]


def load_split(run: Run, split: str, limit: int | None) -> dict[str, Tensor]:
    """The run's split rebuilt from its config (same seed → same split) on the model's device; with `limit`,
    that many examples drawn at random, seeded by the run's seed (`random_rows`)."""
    if split not in ("train", "val", "test"):
        raise UserError(f"--split: {split!r} is not a split (expected train, val or test)")
    PixelSpace.from_info(run.info)  # refuse table runs before building their data
    data = build_dataset(run.config)
    if len(data.index[split]) == 0:
        raise UserError(f"--split: the {split} split of this run is empty")
    device = next(run.model.parameters()).device
    return {k: v.to(device) for k, v in random_rows(data.split(split), limit, run.config.seed).items()}


def attacked_tasks(run: Run, task: str | None) -> list[str]:
    """Tasks the attack maximizes the loss of whose predictions can be right or wrong (single-label kinds)."""
    names = [task] if task else list(run.tasks)
    return [n for n in names if run.tasks[n].spec.single_label]


def correct(run: Run, name: str, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(right, labeled), both (B,) bool, for a single-label task (classification, binary)."""
    spec = run.tasks[name].spec
    return spec.correct(pred, target), spec.labeled(target)


def success_rate(run: Run, names: Sequence[str], clean: dict, adv: dict, batch: dict,
                 goal: Tensor | None = None) -> float | None:
    """Untargeted: the share of examples right on every attacked task before the attack that are wrong on
    one after it. Targeted (`goal`, one classification task): the share of examples right before the attack
    and not of the target class that the attack turns into the target class."""
    if not names:
        return None
    right_clean = right_adv = torch.ones(len(batch["x"]), dtype=torch.bool, device=batch["x"].device)
    for name in names:
        before, labeled = correct(run, name, clean[name], batch[name])
        after, _ = correct(run, name, adv[name], batch[name])
        right_clean = right_clean & (before | ~labeled)
        right_adv = right_adv & (after | ~labeled)
    if goal is not None:
        (name,) = names
        spec = run.tasks[name].spec
        eligible = right_clean & spec.labeled(batch[name]) & (batch[name] != goal)
        hit = spec.correct(adv[name], goal)  # the attacked prediction is the target class
        count = int(eligible.sum())
        return float((eligible & hit).sum()) / count if count else None
    count = int(right_clean.sum())
    return float((right_clean & ~right_adv).sum()) / count if count else None


def targeted_task(run: Run, task: str | None) -> str:
    """The one classification task a targeted attack pulls towards its target: `--task`, or the run's only task."""
    name = task if task is not None else (next(iter(run.tasks)) if len(run.tasks) == 1 else None)
    if name is None or not run.tasks[name].spec.class_scores:
        raise UserError("--target: a targeted attack needs --task naming a classification task"
                        + (f" ({name!r} is {run.tasks[name].kind})" if name else ""))
    return name


def target_index(run: Run, task: str, target: str | int) -> int | None:
    """A target class by name or index → its index; "random" → None."""
    if str(target) == "random":
        return None
    classes, k, text = run.tasks[task].info.classes or [], run.tasks[task].info.outputs, str(target)
    if text in classes:
        return classes.index(text)
    if text.isdigit() and int(text) < k:
        return int(text)
    raise UserError(f"--target: {text!r} is not a class of {task!r} (expected random, a name of "
                    f"{', '.join(classes[:12])}{', …' if len(classes) > 12 else ''} or an index below {k})")


def target_classes(index: int | None, classes: int, labels: Tensor, seed: int) -> Tensor:
    """The target class of every example (N,): `index`, or for None a class drawn uniformly from those
    other than the example's own label (the "random target" of Carlini & Wagner 2017)."""
    if index is not None:
        return torch.full_like(labels, index)
    offset = torch.randint(1, classes, (len(labels),), generator=stream(seed, Purpose.ATTACK_TARGETS))
    return (labels.clamp(min=0) + offset.to(labels.device)) % classes  # never the label itself


def metrics(run: Run, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    result = {name: task.metrics(outputs[name], batch[name]) for name, task in run.tasks.items()}
    return {name: m for name, m in result.items() if m}


def adversarial_inputs(run: Run, batch: dict[str, Tensor], attack: str, eps: float, norm: str, steps: int,
                       restarts: int, task: str | None, step_size: float | None, seed: int,
                       goal: Tensor | None = None) -> Tensor:
    """The attacked split (N, C, H, W), attacked in chunks of `train.eval_batch_size` (batched within a chunk).

    `goal` (N,): target classes of a targeted attack on `task` (None: untargeted)."""
    space = PixelSpace.from_info(run.info, batch["x"].device)
    generator = stream(seed, Purpose.EVAL_ATTACK_START, device=batch["x"].device)
    size, attack_fn, chunks = run.config.train.eval_batch_size, get_attack(attack), []
    for start in range(0, len(batch["x"]), size):
        part = {k: v[start:start + size] for k, v in batch.items()}
        attack_loss = AttackLoss(run.tasks, {n: part[n] for n in run.tasks}, task,
                                 target_class=None if goal is None else goal[start:start + size])
        chunks.append(attack_fn(run.model, part["x"], attack_loss, space, eps, norm=norm, steps=steps,
                                restarts=restarts, step_size=step_size, generator=generator))
    return torch.cat(chunks)


def attack_run(run: Run, attack: str = "pgd", eps: str | float = 8 / 255, norm: str = "linf", steps: int | None = None,
               restarts: int = 1, task: str | None = None, split: str = "test", limit: int | None = None,
               step_size: float | None = None, seed: int = 0, write: bool = True,
               batch: dict[str, Tensor] | None = None, target: str | int | None = None) -> dict[str, Any]:
    """Clean and robust metrics of one attack on one split; writes attack-<name>.json into the run directory.

    `target`: a class (name or index) or "random" makes the attack targeted on `task` (see `target_classes`);
    `success_rate` then means reaching the target.
    """
    refuse_dense(run.tasks, "hydranet attack")
    started = time.perf_counter()
    get_attack(attack), check_norm(norm)
    apply_process_settings(run.config)  # threads; freed memory kept (attacks allocate like training steps)
    eps = parse_eps(eps)
    steps = DEFAULT_STEPS[attack] if attack == "fgsm" or steps is None else steps
    restarts = 1 if attack == "fgsm" else restarts
    if target is not None:
        task = targeted_task(run, task)
        index = target_index(run, task, target)  # checked before the data loads
    batch = load_split(run, split, limit) if batch is None else batch
    goal = None if target is None else target_classes(index, run.tasks[task].info.outputs, batch[task], seed)
    x_adv = adversarial_inputs(run, batch, attack, eps, norm, steps, restarts, task, step_size, seed, goal)
    size = run.config.train.eval_batch_size
    clean = predict_batches(run.model, batch["x"], size)
    adv = predict_batches(run.model, x_adv, size)
    result = {"attack": attack, "eps": eps, "norm": norm, "steps": steps, "restarts": restarts, "task": task,
              "target": None if target is None else str(target), "split": split, "examples": len(batch["x"]),
              "clean": metrics(run, clean, batch), "robust": metrics(run, adv, batch),
              "success_rate": success_rate(run, attacked_tasks(run, task), clean, adv, batch, goal),
              "seconds": round(time.perf_counter() - started, 3)}
    if write:
        write_json(RunDir(run.dir).attack_file(attack), result)
    return result


def robust_accuracy(result: dict, names: Sequence[str], key: str = "robust") -> float | None:
    """Mean accuracy over the attacked classification/binary tasks (None when there are none)."""
    values = [result[key][n]["accuracy"] for n in names if n in result[key]]
    return sum(values) / len(values) if values else None
