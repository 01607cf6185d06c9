"""Attacks against references: an independent PGD, FGSM's closed form on a logistic model, the eps-ball and
[0, 1] constraints, eps 0, monotonicity in eps, targeted PGD, and a model left exactly as it was."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hydranet as hn
from hydranet.config import TaskConfig
from hydranet.robust import AttackLoss, PixelSpace, apgd, attack_run, fgsm, parse_eps, pgd
from hydranet.robust.apgd import checkpoints
from hydranet.robust.attack_run import load_split, success_rate, target_classes, target_index
from hydranet.tasks import Task, TaskInfo
from hydranet.train import load_run


@pytest.fixture(scope="module")
def batch(run):
    return load_split(run, "test", 120)


def space_of(run):
    return PixelSpace.from_info(run.info)


def reference_pgd(model, x, y, mean, std, eps, steps, alpha):
    """Minimal L∞ PGD written independently, in normalized space: the budget and [0, 1] become per-channel bounds."""
    low, high = (0 - mean) / std, (1 - mean) / std
    x_low, x_high = torch.maximum(x - eps / std, low), torch.minimum(x + eps / std, high)
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv)["digit"], y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + alpha / std * grad.sign(), x_low), x_high)
    return adv


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x)["digit"].argmax(-1) == y).float().mean().item()


def test_pgd_matches_an_independent_reference(run, batch):
    space, eps, steps = space_of(run), 24 / 255, 5
    x, y = batch["x"], batch["digit"]
    ours = pgd(run.model, x, AttackLoss(run.tasks, batch, "digit"), space, eps, steps=steps, step_size=eps / 4,
               random_init=False)
    theirs = reference_pgd(run.model, x, y, space.mean, space.std, eps, steps, eps / 4)
    clean, a, b = accuracy(run.model, x, y), accuracy(run.model, ours, y), accuracy(run.model, theirs, y)
    assert a < clean - 0.05  # the attack does something
    assert abs(a - b) <= 0.01


def test_fgsm_on_a_logistic_model_is_the_closed_form():
    torch.manual_seed(0)
    linear = nn.Linear(12, 1)

    class Logistic(nn.Module):
        def forward(self, x):
            return {"y": linear(x.flatten(1)).squeeze(-1)}

    task = Task("y", TaskConfig(kind="binary"), TaskInfo("binary", 1, ["no", "yes"]))
    space = PixelSpace(torch.tensor([0.3, 0.5, 0.4]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1))
    x_raw = torch.rand(6, 3, 2, 2) * 0.8 + 0.1  # away from 0 and 1, so no clamp acts
    x = (x_raw - space.mean) / space.std
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    adv = fgsm(Logistic(), x, AttackLoss({"y": task}, {"y": y}), space, eps=0.05)
    sign = torch.where(y.view(-1, 1) > 0.5, -1.0, 1.0) * linear.weight.sign()  # loss rises against the label
    torch.testing.assert_close(space.raw(adv), x_raw + 0.05 * sign.view(6, 3, 2, 2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("attack", [pgd, apgd])
@pytest.mark.parametrize("norm,eps", [("linf", 16 / 255), ("l2", 0.5)])
def test_perturbations_stay_in_the_ball_and_the_pixel_range(run, batch, attack, norm, eps):
    space = space_of(run)
    x = batch["x"][:24]
    adv = attack(run.model, x, AttackLoss(run.tasks, {k: v[:24] for k, v in batch.items()}), space, eps,
                 norm=norm, steps=3, restarts=2, generator=torch.Generator().manual_seed(0))
    raw, delta = space.raw(adv), space.raw(adv) - space.raw(x)
    size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert (size <= eps + 1e-5).all() and size.max() > eps / 2
    assert raw.min() >= 0 and raw.max() <= 1
    assert ((adv * space.std + space.mean) >= -1e-5).all() and ((adv * space.std + space.mean) <= 1 + 1e-5).all()


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "apgd"])
def test_eps_zero_equals_clean_exactly(run, batch, attack):
    result = attack_run(run, attack, "0", steps=2, restarts=2, write=False, batch={k: v[:60] for k, v in batch.items()})
    assert result["robust"] == result["clean"]
    assert result["success_rate"] == 0


def test_robust_accuracy_falls_with_eps_to_near_zero(run, batch):
    small = {k: v[:80] for k, v in batch.items()}
    accs = [attack_run(run, "pgd", eps, steps=8, task="digit", write=False, batch=small)["robust"]["digit"]["accuracy"]
            for eps in ("0", "8/255", "32/255", "64/255", "128/255")]
    assert all(b <= a + 0.02 for a, b in zip(accs, accs[1:])), accs
    assert accs[0] > 0.7 and accs[-1] <= 0.05, accs


def test_apgd_is_at_least_as_strong_as_pgd(run, batch):
    kwargs = dict(steps=10, task="digit", write=False, batch=batch, eps="24/255")
    assert attack_run(run, "apgd", **kwargs)["robust"]["digit"]["accuracy"] <= \
        attack_run(run, "pgd", **kwargs)["robust"]["digit"]["accuracy"] + 0.01


def test_apgd_checkpoints_follow_the_paper():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_targeted_pgd_raises_the_target_rate(run, batch):
    space, target = space_of(run), 3
    attack_loss = AttackLoss(run.tasks, batch, "digit", target_class=target)
    adv = pgd(run.model, batch["x"], attack_loss, space, 64 / 255, steps=10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = (run.model(batch["x"])["digit"].argmax(-1) == target).float().mean()
        after = (run.model(adv)["digit"].argmax(-1) == target).float().mean()
    assert after > before + 0.3


def test_parse_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps("0.03") == 0.03 and parse_eps(0) == 0
    for bad in ("eight", "1/0", "-1/255", ""):
        with pytest.raises(hn.UserError, match="--eps"):
            parse_eps(bad)


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bn") / "run"
    overrides = {"train.epochs": 1, "train.progress": False, "data.limit": 300, "model.trunk.batch_norm": True}
    hn.Experiment("quickstart", overrides).fit(path)
    return load_run(path)


@pytest.mark.parametrize("attack", [fgsm, pgd, apgd])
def test_attacks_leave_the_model_untouched(bn_run, attack):
    model = bn_run.model
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.train()  # an attack must not update BatchNorm statistics even on a model left in train mode
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = load_split(bn_run, "test", 32)
    attack(model, data["x"], AttackLoss(bn_run.tasks, data), PixelSpace.from_info(bn_run.info), 8 / 255, steps=3)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    model.eval()


def test_cli_writes_the_documented_json(cli, run):
    code, out, err = cli("attack", run.dir, "--attack", "pgd", "--eps", "8/255", "--steps", "2", "--limit", "40")
    assert code == 0, err
    result = json.loads((run.dir / "attack-pgd.json").read_text())
    assert {"attack", "eps", "norm", "steps", "restarts", "clean", "robust", "success_rate", "seconds"} <= set(result)
    assert result["attack"] == "pgd" and result["eps"] == pytest.approx(8 / 255) and "attack-pgd.json" in out
    assert set(result["robust"]) == {"digit", "parity", "ink"}


def test_cli_sweep(cli, run):
    code, out, err = cli("attack", run.dir, "--sweep", "--eps", "0,4/255,64/255", "--steps", "2", "--limit", "40",
                         "--task", "digit")
    assert code == 0, err
    result = json.loads((run.dir / "attack-pgd-sweep.json").read_text())
    assert [p["eps"] for p in result["points"]] == pytest.approx([0, 4 / 255, 64 / 255])
    assert result["points"][0]["robust_accuracy"] == result["clean_accuracy"]
    checks = result["checks"]
    assert (checks["steps"]["steps"], checks["restarts"]["restarts"], checks["reach"]["eps"]) == (4, 2, 0.5)
    assert "reach check: pgd, 2 steps, 1 restarts" in out, out


@pytest.mark.parametrize("args,needle", [(("--eps", "8/25x"), "--eps"), (("--eps", "1/255", "--attack", "cw"), "--attack"),
                                         (("--eps", "1/255", "--norm", "l3"), "--norm"),
                                         (("--eps", "1/255", "--task", "nope"), "--task")])
def test_cli_bad_input_is_one_line(cli, run, args, needle):
    code, out, err = cli("attack", run.dir, *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


# --- targeted attacks ----------------------------------------------------------------------------------


def test_targeted_success_rate_counts_only_hits_on_the_target(run):
    labels = torch.tensor([0, 1, 2, 3, 3])
    def logits(classes):
        return F.one_hot(torch.tensor(classes), 10).float()

    batch = {"x": torch.zeros(5, 1, 8, 8), "digit": labels}
    clean, adv = {"digit": logits([0, 1, 5, 3, 3])}, {"digit": logits([3, 7, 3, 3, 0])}
    # right before and not already of class 3: examples 0 and 1; only example 0 is turned into a 3
    assert success_rate(run, ["digit"], clean, adv, batch, goal=torch.full((5,), 3)) == 0.5
    assert success_rate(run, ["digit"], clean, adv, batch) == 0.75  # untargeted: 0, 1 and 4 flipped of 0, 1, 3, 4


def test_target_classes():
    labels = torch.arange(10).repeat(100)
    random = target_classes(None, 10, labels, seed=0)
    assert (random != labels).all() and (random >= 0).all() and (random < 10).all()
    counts = torch.bincount(random[labels == 4], minlength=10)  # uniform over the 9 other classes
    assert counts[4] == 0 and counts.min() == 0 and sorted(counts.tolist())[1] >= 3
    assert torch.equal(target_classes(None, 10, labels, seed=0), random)  # seeded
    assert torch.equal(target_classes(7, 10, labels, seed=0), torch.full_like(labels, 7))


def test_target_index_by_name_or_index(run):
    assert target_index(run, "digit", "3") == 3 and target_index(run, "digit", 9) == 9
    assert target_index(run, "digit", "random") is None
    with pytest.raises(hn.UserError, match="--target: '10' is not a class of 'digit'"):
        target_index(run, "digit", "10")


def test_cli_targeted_attack_reaches_its_target(cli, run):
    code, out, err = cli("attack", run.dir, "--eps", "96/255", "--steps", "10", "--limit", "60", "--task", "digit",
                         "--target", "3")
    assert code == 0, err
    result = json.loads((run.dir / "attack-pgd.json").read_text())
    assert result["target"] == "3" and result["task"] == "digit" and "target 3 on digit" in out
    assert result["success_rate"] >= 0.8, result  # measured 0.98
    assert result["robust"]["digit"]["accuracy"] < result["clean"]["digit"]["accuracy"] - 0.3  # true labels lost too
    code, out, err = cli("attack", run.dir, "--eps", "96/255", "--steps", "10", "--limit", "60", "--task", "digit",
                         "--target", "random")
    assert code == 0, err
    assert json.loads((run.dir / "attack-pgd.json").read_text())["success_rate"] >= 0.8, out  # measured 0.98


@pytest.mark.parametrize("args", [("--task", "digit", "--target", "10"), ("--task", "parity", "--target", "odd"),
                                  ("--target", "3"), ("--task", "digit", "--target", "3", "--sweep")])
def test_cli_bad_target_is_one_line(cli, run, args):
    code, _, err = cli("attack", run.dir, "--eps", "8/255", *args)
    assert code == 2 and "--target" in err and len(err.strip().splitlines()) == 1, err
