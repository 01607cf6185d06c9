"""An eps sweep of one attack with the sanity checks of Carlini et al. 2019 ("On evaluating adversarial
robustness") and Athalye et al. 2018 that flag likely gradient masking; writes attack-<name>-sweep.json.

Besides the points of the sweep it runs three checks: the same attack at the largest eps with twice the
steps, and with twice the restarts (a working attack can only do better with either), and one at the
*reach* eps, where the budget lets every input become the same mid-grey image, so no model can stay above
chance against a working attack.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch
from torch import Tensor

from hydranet.files import write_json
from hydranet.robust.attack_run import attack_run, attacked_tasks, get_attack, load_split, parse_eps, robust_accuracy
from hydranet.robust.space import check_norm
from hydranet.rundir import RunDir
from hydranet.train.run import Run

SWEEPS = {"linf": ("0", "1/255", "2/255", "4/255", "8/255", "16/255"),  # raw pixels in [0, 1]: pixel levels
          "l2": ("0", "0.125", "0.25", "0.5", "1", "2")}  # CIFAR-10's usual L2 budgets are 0.25–1
ABOVE_CHANCE = 0.10  # margin above chance at the reach eps before the sweep calls it masking


def tolerance(examples: int) -> float:
    """Differences below 1 percentage point or 2 examples count as noise (random starts differ per run)."""
    return max(0.01, 2 / max(examples, 1))


def reach_eps(norm: str, x: Tensor) -> float:
    """The smallest budget of the norm's ball around *every* image of [0, 1]^d that holds the mid-grey image ½·1.

    There an attacker can turn every input into that one image, so the model answers one label for all and
    robust accuracy cannot exceed chance (the majority-label rate), whatever the model, the resolution or
    the number of grey levels: L∞ ½ (half the pixel range), L2 ½·√d (half the cube's L2 diameter √d).
    """
    return 0.5 if norm == "linf" else 0.5 * math.sqrt(x[0].numel())


def chance(run: Run, names: Sequence[str], batch: dict[str, Tensor]) -> float:
    """Accuracy of always answering the most common label of the split, averaged over the tasks."""
    shares = []
    for name in names:
        y = run.tasks[name].spec.class_index(batch[name])
        y = y[y >= 0]  # labeled examples
        shares.append(float(torch.bincount(y.cpu()).max()) / max(len(y), 1))
    return sum(shares) / len(shares)


def sweep_run(run: Run, attack: str = "pgd", eps_values: Sequence[str | float] | None = None, norm: str = "linf",
              steps: int | None = None, restarts: int = 1, task: str | None = None, split: str = "test",
              limit: int | None = None, step_size: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Robust accuracy per eps, the steps, restarts and reach checks, and gradient-masking warnings."""
    started = time.perf_counter()
    get_attack(attack), check_norm(norm)
    values = sorted(parse_eps(e) for e in (eps_values or SWEEPS[norm]))
    batch = load_split(run, split, limit)
    common = dict(norm=norm, task=task, split=split, write=False, batch=batch)
    points = [attack_run(run, attack, eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed, **common)
              for eps in values]
    names = attacked_tasks(run, task)
    steps, restarts, reach = points[-1]["steps"], points[-1]["restarts"], reach_eps(norm, batch["x"])
    # name → (attack, eps, steps, restarts). FGSM has neither steps nor restarts to add: a 10-step PGD
    # stands in for "more steps" (it must not do worse) and for the reach check. The reach check takes the
    # default step size (2.5·eps/steps): a step_size set for small eps could never cross its large ball.
    plan = {"steps": ("pgd", values[-1], 10, 1), "reach": ("pgd", reach, 10, 1)} if attack == "fgsm" else {
        "steps": (attack, values[-1], 2 * steps, restarts), "restarts": (attack, values[-1], steps, 2 * restarts),
        "reach": (attack, reach, steps, restarts)}
    checks = {}
    for offset, (name, (check_attack, eps, check_steps, check_restarts)) in enumerate(plan.items(), start=1):
        result = attack_run(run, check_attack, eps, steps=check_steps, restarts=check_restarts, seed=seed + offset,
                            step_size=None if name == "reach" else step_size, **common)
        checks[name] = {"attack": check_attack, "eps": eps, "steps": check_steps, "restarts": result["restarts"],
                        "robust_accuracy": robust_accuracy(result, names)}
    result = {"attack": attack, "norm": norm, "steps": points[0]["steps"], "restarts": points[0]["restarts"],
              "task": task, "split": split, "examples": len(batch["x"]),
              "clean_accuracy": robust_accuracy(points[0], names, key="clean"),
              "points": [{"eps": p["eps"], "robust_accuracy": robust_accuracy(p, names),
                          "success_rate": p["success_rate"], "robust": p["robust"]} for p in points],
              "checks": checks, "chance": chance(run, names, batch) if names else None}
    result["warnings"] = masking_warnings(result)
    result["seconds"] = round(time.perf_counter() - started, 3)
    write_json(RunDir(run.dir).attack_file(attack, sweep=True), result)
    return result


def masking_warnings(sweep: dict[str, Any]) -> list[str]:
    """Signs that gradients hide adversarial examples rather than the model lacking them."""
    points = [p for p in sweep["points"] if p["robust_accuracy"] is not None]
    if not points:
        return []
    tol, warnings = tolerance(sweep["examples"]), []
    for low, high in zip(points, points[1:]):
        if high["robust_accuracy"] > low["robust_accuracy"] + tol:
            warnings.append(f"robust accuracy rises with eps ({low['robust_accuracy']:.3f} at {low['eps']:.4g} → "
                            f"{high['robust_accuracy']:.3f} at {high['eps']:.4g}): likely gradient masking")
    last = points[-1]
    for what in ("steps", "restarts"):  # more of either can only help a working attack
        check = sweep["checks"].get(what)
        if check is None or check["robust_accuracy"] is None:
            continue
        stronger = f"{check['attack']} with {check[what]} {what}"
        if check["robust_accuracy"] > last["robust_accuracy"] + tol:
            warnings.append(f"{stronger} leaves robust accuracy higher ({check['robust_accuracy']:.3f} vs "
                            f"{last['robust_accuracy']:.3f}) at eps {last['eps']:.4g}: more {what} can only lower it "
                            "for a working attack; likely gradient masking")
        elif check["robust_accuracy"] < last["robust_accuracy"] - tol:
            warnings.append(f"{stronger} lowers robust accuracy to {check['robust_accuracy']:.3f} (from "
                            f"{last['robust_accuracy']:.3f}) at eps {last['eps']:.4g}: the attack has not converged; "
                            f"use more {what}")
    reach = sweep["checks"]["reach"]
    if sweep["chance"] is not None and reach["robust_accuracy"] > sweep["chance"] + ABOVE_CHANCE:
        warnings.append(f"at eps {reach['eps']:.4g}, where every input can be turned into the same mid-grey image, "
                        f"robust accuracy is {reach['robust_accuracy']:.3f}, well above chance ({sweep['chance']:.3f}): "
                        "no model can be there against a working attack; likely gradient masking")
    return warnings
