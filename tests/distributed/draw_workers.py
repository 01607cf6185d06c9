"""What the spawned ranks of tests/distributed run in the default suite (`two_rank_checks`): the balancer matrix, and
the runs of test_global_draws.py: meta-training, whose episodes every rank draws for the whole
meta-batch, and pretraining steps, whose views and corruptions every rank draws for the whole global batch; each
rank keeps its share.
The same functions run in one process for the references."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path
from unittest import mock

import torch
import torch.distributed as dist

from hydranet import registry
from hydranet.config import NoOptions, load_config
from hydranet.data import build_dataset
from hydranet.data.batches import Batches
from hydranet.distributed import draws
from hydranet.distributed.context import PeerLost
from hydranet.files import write_tensors, write_text
from hydranet.meta import loop
from hydranet.ssl.views import ViewMaker
from hydranet.train.run import fresh_model
from hydranet.train.trainer import Trainer

from tests.distributed.dist_workers import as_rank, balancer_results

META_BATCH = 4  # tasks per meta-iteration: 2 per rank
PRETRAIN_BATCH = 32  # the global batch of the pretraining steps: 16 per rank
CPU = torch.device("cpu")
SHORT = {"meta_batch": META_BATCH, "iterations": 3, "eval_every": 3, "eval_episodes": 8, "outer_optimizer": "sgd"}


def maml_overrides(**meta) -> list[str]:
    """The `--set` values that make the built-in sinusoid experiment a short MAML run."""
    return [f"meta.{k}={v}" for k, v in {**SHORT, "outer_lr": 0.01, **meta}.items()]


def meta_config(method: str, **meta):
    """Three outer SGD steps (plain SGD: Adam's first step, about lr·sign(g), would magnify rounding where g ≈ 0);
    protonet on 3-way episodes of the bundled digits, maml on sinusoids."""
    if method == "maml":
        return load_config("sinusoid", maml_overrides(**meta))
    meta = {**SHORT, **meta}
    return load_config({
        "name": "digits-fewshot", "seed": 3, "data": {"source": "digits"},
        "tasks": {"digit": {"kind": "classification"}},
        "model": {"trunk": {"name": "cnn", "channels": [8], "dense": []}}, "train": {"threads": 1},
        "meta": {"source": "data", "test_classes": ["7", "8", "9"], "per_class": 20, "method": method, "ways": 3,
                 "shots": 2, "queries": 2, "outer_lr": 0.1, **meta}})


def meta_weights(folder: Path, method: str) -> None:
    """Meta-train `method` into folder/method (rank 0 writes it under torchrun)."""
    loop.train(meta_config(method), folder / method, progress=False)


PROJECTION = {"projection_hidden": 16, "projection_dim": 8}
PRETRAININGS = {  # name → (experiment, settings): image views (crops, flips, jitter), SCARF and denoising corruptions
    "simclr-images": ("quickstart", {"model.trunk": {"name": "cnn", "channels": [8], "dense": [16], "batch_norm": True},
                                     "ssl.method": {"name": "simclr", **PROJECTION}, "data.limit": 256}),
    "simclr-table": ("breast-cancer", {"model.trunk": {"name": "mlp", "hidden": [16], "batch_norm": True},
                                       "ssl.method": {"name": "simclr", **PROJECTION}}),
    "denoising-table": ("breast-cancer", {"model.trunk": {"name": "mlp", "hidden": [16]},
                                          "ssl.method": {"name": "denoising", "decoder_hidden": 16}}),
}


def pretrain_config(name: str):
    """A small trunk (BatchNorm synchronized by default), fp32, plain SGD at a constant rate, no dropout."""
    experiment, settings = PRETRAININGS[name]
    settings = {**settings, "train.precision": "fp32", "train.optimizer": {"name": "sgd", "lr": 0.1},
                "train.schedule": {"name": "constant"}}
    return load_config(experiment, [f"{k}={json.dumps(v)}" for k, v in settings.items()])  # JSON is YAML


def pretrain_steps(name: str, batch_size: int, steps: int = 3) -> dict[str, torch.Tensor]:
    """The model's and the method's tensors after `steps` pretraining steps on global batches of `batch_size`."""
    cfg = pretrain_config(name)
    data = build_dataset(cfg, labels_required=False)
    model = fresh_model(cfg, data.info, {}, CPU)
    views = ViewMaker(cfg.ssl, cfg.seed, cfg.train.precision, data.info)
    method = registry.get("ssl", cfg.ssl.method.name, "ssl.method")(cfg.ssl.method.options, model.trunk, views)
    trainer = Trainer(model, {}, cfg, registry.get("balancer", "equal")(NoOptions(), {}, cfg.seed), device=CPU,
                      extra_losses=[method])
    trainer.total_steps = steps
    trainer.hook("on_fit_start")
    trainer.hook("on_epoch_start")
    for batch in itertools.islice(Batches(data, CPU, batch_size, cfg.data.augment, cfg.seed).epoch(0), steps):
        trainer.train_step(batch)
    return {f"{name}/{k}": v.detach().clone() for k, v in [*model.state_dict().items(), *method.state_dict().items()]
            if v.is_floating_point()}


def all_pretrainings(batch_size: int) -> dict[str, torch.Tensor]:
    return {k: v for name in PRETRAININGS for k, v in pretrain_steps(name, batch_size).items()}


def ticking(rank: int):
    """A clock that gains 10 s (rank 0) or 20 s (rank 1) per reading: alone, a 25 s budget would stop rank 0 after
    3 meta-iterations and rank 1 after 2."""
    ticks = itertools.count(step=10 * (rank + 1))
    return lambda: float(next(ticks))


def two_rank_checks(rank: int, world: int, port: int, table: str, folder: str) -> None:
    """Every two-rank run of the default suite in one process group, made here (a group the caller made outlives each
    run): the balancer matrix of test_data_parallel.py, then the meta-learning and pretraining runs of
    test_global_draws.py, the time-budget run last (ranks that disagree on when to stop abort in gloo). Rank 0 writes
    the results and the runs' folders; each rank writes its budget's iterations."""
    as_rank(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    folder = Path(folder)
    balancers = balancer_results(Path(table))
    for method in ("protonet", "maml"):
        meta_weights(folder, method)
    with mock.patch.object(loop, "average_gradients", lambda params: None):  # each rank steps on its own mean
        loop.train(meta_config("protonet"), folder / "not-averaged", progress=False)
    with mock.patch.object(loop, "own_tasks", lambda episodes: episodes.slice(0, META_BATCH // world)):
        loop.train(meta_config("protonet"), folder / "same-tasks", progress=False)  # as if each drew its own
    pretrained = {f"global/{k}": v for k, v in all_pretrainings(PRETRAIN_BATCH).items()}
    with mock.patch.object(draws, "global_rows", lambda rows: (rows, 0)):  # each rank draws as if its share were all
        pretrained.update({f"per-rank/{k}": v for k, v in all_pretrainings(PRETRAIN_BATCH).items()})
    if rank == 0:
        write_tensors(folder / "balancers.safetensors", {k: v.contiguous() for k, v in balancers.items()})
        write_tensors(folder / "pretrained.safetensors", {k: v.contiguous() for k, v in pretrained.items()})
    with mock.patch.dict(loop.CLOCKS, {"wall": ticking(rank)}):
        try:
            iterations = loop.train(meta_config("protonet", iterations=50, time_budget=25), folder / "budget",
                                    progress=False).summary["iterations"]
        except PeerLost:  # the ranks disagreed on when to stop
            iterations = -1
    write_text(folder / f"budget-{rank}.txt", str(iterations))
    dist.destroy_process_group()
