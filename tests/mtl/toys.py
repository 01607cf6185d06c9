"""Toy problems for the balancer tests: linear losses with hand-set gradients, and a tiny HydraNet."""

import torch
from torch import nn

from hydranet import registry
from hydranet.config import Config, TaskConfig
from hydranet.models import HydraNet
from hydranet.models.trunks import MLPOptions, mlp
from hydranet.tasks import Task, TaskInfo


class LinearToy:
    """L_t = g_t·w + (t+1)·h_t²: ∇_w L_t = g_t exactly (w shared), ∇_{h_t} L_t = 2(t+1)·h_t (h_t private)."""

    def __init__(self, grads, names=None):
        self.grads = torch.as_tensor(grads, dtype=torch.float32)  # (T, P)
        self.names = names or [f"t{i}" for i in range(len(self.grads))]
        self.w = nn.Parameter(torch.zeros(self.grads.shape[1]))
        self.heads = [nn.Parameter(torch.ones(1)) for _ in self.names]

    def losses(self) -> dict:
        return {n: self.grads[i] @ self.w + (i + 1) * self.heads[i].pow(2).sum() for i, n in enumerate(self.names)}

    def head_grad(self, i: int) -> torch.Tensor:
        """∇_{h_i} L_i, the gradient a private parameter gets at weight 1."""
        return 2 * (i + 1) * self.heads[i].detach()


def tiny_problem(seed: int = 0):
    """(cfg, tasks, model, batch): two tasks on an 8-wide MLP, four-example batch, labels partly missing."""
    cfg = Config(seed=seed, tasks={"digit": TaskConfig(kind="classification"), "even": TaskConfig(kind="binary")})
    infos = {"digit": TaskInfo("classification", 4, list("abcd")), "even": TaskInfo("binary", 1, ["odd", "even"])}
    tasks = {name: Task(name, cfg.tasks[name], infos[name]) for name in cfg.tasks}
    torch.manual_seed(seed)
    trunk = mlp(MLPOptions(hidden=[8]), (1, 4, 4))
    model = HydraNet(trunk, {name: task.head(trunk.out_dim) for name, task in tasks.items()})
    gen = torch.Generator().manual_seed(seed + 1)
    batch = {"x": torch.randn(8, 1, 4, 4, generator=gen), "digit": torch.tensor([0, 3, -1, 1, 2, 2, 0, 1]),
             "even": torch.tensor([1.0, 0.0, 1.0, float("nan"), 0.0, 1.0, 1.0, 0.0])}
    return cfg, tasks, model, batch


def task_losses(tasks, model, batch) -> dict:
    preds = model(batch["x"])
    return {name: task.loss(preds[name], batch[name]) for name, task in tasks.items()}


def config(**mtl) -> Config:
    return Config(mtl=mtl)


def make_balancer(cls_or_name, cfg: Config | None = None, tasks: dict | None = None, **options):
    """A balancer (its class or registered name) made as a run makes it: its own options (given here, or else
    `cfg.mtl.balancer`'s when that names the same method), the tasks and the seed."""
    cfg = cfg or Config()
    name = cls_or_name if isinstance(cls_or_name, str) else next(
        n for n in registry.names("balancer") if registry.get("balancer", n) is cls_or_name)
    method = cfg.mtl.balancer if cfg.mtl.balancer.name == name and not options else Config(mtl={"balancer": {"name": name, **options}}).mtl.balancer
    return registry.get("balancer", name)(method.options, tasks or {}, cfg.seed)


def check_private_grads(toy: LinearToy, weights) -> None:
    for i, head in enumerate(toy.heads):
        assert torch.allclose(head.grad, weights[i] * toy.head_grad(i), atol=1e-6)
