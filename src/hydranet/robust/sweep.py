"""An eps sweep of one attack with the sanity checks of Carlini et al. 2019 ("On evaluating adversarial
robustness") and Athalye et al. 2018 that flag likely gradient masking; writes attack-<name>-sweep.json.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

from hydranet.robust.evaluate import (LARGE_LINF, ABOVE_CHANCE, SWEEP, attack_run, attacked_tasks, chance,
                                      get_attack, load_split, parse_eps, robust_accuracy)
from hydranet.train.run import Run


def tolerance(examples: int) -> float:
    """Differences below 1 percentage point or 2 examples count as noise (random starts differ per run)."""
    return max(0.01, 2 / max(examples, 1))


def sweep_run(run: Run, attack: str = "pgd", eps_values: Sequence[str | float] | None = None, norm: str = "linf",
              steps: int | None = None, restarts: int = 1, task: str | None = None, split: str = "test",
              limit: int | None = None, step_size: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Robust accuracy per eps, one stronger attack at the largest eps, and gradient-masking warnings."""
    started = time.perf_counter()
    get_attack(attack)
    values = sorted(parse_eps(e) for e in (eps_values or SWEEP))
    batch = load_split(run, split, limit)
    common = dict(norm=norm, restarts=restarts, task=task, split=split, step_size=step_size, seed=seed,
                  write=False, batch=batch)
    points = [attack_run(run, attack, eps, steps=steps, **common) for eps in values]
    # The check at the largest eps: twice the steps (FGSM: 10-step PGD, which must not do worse).
    check_attack, check_steps = ("pgd", 10) if attack == "fgsm" else (attack, 2 * points[-1]["steps"])
    check = attack_run(run, check_attack, values[-1], steps=check_steps, **{**common, "seed": seed + 1})
    names = attacked_tasks(run, task)
    result = {"attack": attack, "norm": norm, "steps": points[0]["steps"], "restarts": points[0]["restarts"],
              "task": task, "split": split, "examples": len(batch["x"]),
              "clean_accuracy": robust_accuracy(points[0], names, key="clean"),
              "points": [{"eps": p["eps"], "robust_accuracy": robust_accuracy(p, names),
                          "success_rate": p["success_rate"], "robust": p["robust"]} for p in points],
              "check": {"attack": check_attack, "steps": check_steps, "eps": values[-1],
                        "robust_accuracy": robust_accuracy(check, names)},
              "chance": chance(run, names, batch) if names else None}
    result["warnings"] = masking_warnings(result)
    result["seconds"] = round(time.perf_counter() - started, 3)
    (run.dir / f"attack-{attack}-sweep.json").write_text(json.dumps(result, indent=2))
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
    check, last = sweep["check"], points[-1]
    if check["robust_accuracy"] is not None and check["robust_accuracy"] > last["robust_accuracy"] + tol:
        warnings.append(f"{check['attack']} with {check['steps']} steps leaves robust accuracy higher "
                        f"({check['robust_accuracy']:.3f} vs {last['robust_accuracy']:.3f}) at eps {last['eps']:.4g}: "
                        "a stronger attack should never do worse; likely gradient masking")
    if check["robust_accuracy"] is not None and check["robust_accuracy"] < last["robust_accuracy"] - tol:
        warnings.append(f"{check['attack']} with {check['steps']} steps lowers robust accuracy to "
                        f"{check['robust_accuracy']:.3f} (from {last['robust_accuracy']:.3f}): the attack has not "
                        "converged; use more steps or restarts")
    large = [p for p in points if sweep["norm"] == "linf" and p["eps"] >= LARGE_LINF - 1e-9]
    if large and sweep["chance"] is not None and large[-1]["robust_accuracy"] > sweep["chance"] + ABOVE_CHANCE:
        warnings.append(f"at eps {large[-1]['eps']:.4g} (L∞ ≥ 16/255) robust accuracy is {large[-1]['robust_accuracy']:.3f}, "
                        f"well above chance ({sweep['chance']:.3f}): an image can be changed beyond recognition "
                        "there, so this suggests gradient masking")
    return warnings
