"""The sweep's gradient-masking checks: more steps, more restarts, and the reach eps where no model can stay
above chance — silent on an honest 8×8 digits model, loud on a masked one and on a broken attack."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from hydranet.robust import PixelSpace, pgd, sweep_run
from hydranet.robust.attack_run import ATTACKS
from hydranet.robust.sweep import masking_warnings, reach_eps


def test_reach_eps_is_half_the_range_or_half_the_l2_diameter():
    assert reach_eps("linf", torch.zeros(2, 1, 8, 8)) == 0.5
    assert reach_eps("l2", torch.zeros(2, 1, 8, 8)) == 4.0  # ½·√64
    assert reach_eps("l2", torch.zeros(2, 3, 32, 32)) == pytest.approx(0.5 * math.sqrt(3072))
    # the mid-grey image is within reach of the farthest images there are: all-black and all-white
    for x in (torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)):
        assert (x - 0.5).abs().max() <= reach_eps("linf", x) and (x - 0.5).norm() <= reach_eps("l2", x) + 1e-6


def sweep_record(last: float, steps: float | None = None, restarts: float | None = None, reach: float = 0.0) -> dict:
    def check(acc, **kw):
        return {"attack": "pgd", "eps": 0.1, "steps": 10, "restarts": 1, "robust_accuracy": acc, **kw}

    checks = {"reach": check(reach, eps=0.5)}
    if steps is not None:
        checks["steps"] = check(steps, steps=20)
    if restarts is not None:
        checks["restarts"] = check(restarts, restarts=2)
    return {"examples": 500, "chance": 0.1, "checks": checks,
            "points": [{"eps": 0.0, "robust_accuracy": 0.9}, {"eps": 0.1, "robust_accuracy": last}]}


@pytest.mark.parametrize("restarts, needle", [
    (0.45, ("pgd with 2 restarts leaves robust accuracy higher (0.450 vs 0.400) at eps 0.1: more restarts can "
            "only lower it for a working attack; likely gradient masking")),
    (0.35, ("pgd with 2 restarts lowers robust accuracy to 0.350 (from 0.400) at eps 0.1: the attack has not "
            "converged; use more restarts")),
    (0.405, None),  # within noise (1 pp at 500 examples)
])
def test_restart_check_mirrors_the_steps_check(restarts, needle):
    warnings = masking_warnings(sweep_record(0.4, steps=0.4, restarts=restarts))
    assert warnings == ([needle] if needle else [])
    steps_warnings = masking_warnings(sweep_record(0.4, steps=restarts, restarts=0.4))
    assert steps_warnings == ([needle.replace("2 restarts", "20 steps").replace("restarts", "steps")] if needle else [])


def test_reach_check_compares_with_chance():
    assert masking_warnings(sweep_record(0.4, reach=0.19)) == []  # chance 0.1 + 10 pp margin
    assert "well above chance (0.100)" in masking_warnings(sweep_record(0.4, reach=0.21))[0]


def test_an_honest_digits_model_raises_no_masking_warning(run, one_thread):
    """On 8×8 digits (17 grey levels) 16/255 is one level step: an undefended model keeps ~0.66
    there, which the old fixed "16/255 ⇒ near 0%" rule called masking. The reach check does not."""
    for norm in ("linf", "l2"):
        result = sweep_run(run, "pgd", norm=norm, task="digit", limit=100, steps=5)
        assert result["warnings"] == [], (norm, result["warnings"])
        assert result["checks"]["reach"]["robust_accuracy"] <= result["chance"], result["checks"]


class Binarized(nn.Module):
    """1-bit input quantization (feature squeezing): torch.round has zero gradient everywhere, so gradient
    attacks stall — the shattered gradients of Athalye et al. 2018 — while the model still classifies."""

    def __init__(self, model: nn.Module, space: PixelSpace):
        super().__init__()
        self.model, self.space = model, space

    def forward(self, x):
        return self.model((torch.round(self.space.raw(x)) - self.space.mean) / self.space.std)


def test_a_masked_model_is_flagged_at_the_reach_eps(run, one_thread):
    masked = dataclasses.replace(run, model=Binarized(run.model, PixelSpace.from_info(run.info)).eval())  # as loaded
    result = sweep_run(masked, "pgd", task="digit", limit=100, steps=5)
    assert result["checks"]["reach"]["robust_accuracy"] > 0.5, result["checks"]  # measured 0.70 at eps 0.5
    assert any("every input can be turned into the same mid-grey image" in w for w in result["warnings"])
    assert not run.model.training  # the shared run is left as loaded


def test_a_broken_restart_logic_is_flagged(run, monkeypatch, one_thread):
    """An attack that returns its worst restart instead of its best (here: the clean input) does better with
    fewer restarts; the restart check catches it."""
    def broken(model, x, attack_loss, space, eps, restarts=1, **kwargs):
        return pgd(model, x, attack_loss, space, eps, **kwargs) if restarts == 1 else x

    monkeypatch.setitem(ATTACKS, "pgd", broken)
    result = sweep_run(run, "pgd", eps_values=["0", "32/255"], task="digit", limit=60, steps=5)
    assert result["checks"]["restarts"]["robust_accuracy"] > result["points"][-1]["robust_accuracy"] + 0.2
    assert any("more restarts can only lower it" in w for w in result["warnings"]), result["warnings"]


def test_the_reach_check_takes_its_own_step_size(run, one_thread):
    """A step size chosen for eps 2/255 (5 steps of 1/255) could never cross the reach ball (½)."""
    result = sweep_run(run, "pgd", eps_values=["0", "2/255"], task="digit", limit=60, steps=5, step_size=1 / 255)
    assert result["checks"]["reach"]["robust_accuracy"] <= result["chance"] and result["warnings"] == []
