"""Everything a meta-learning run is built from its config: the problem, the class pools (or sinusoid tasks), the
network (a registry trunk and the head its method asks for), the method, and episode sampling; shared by
`meta train`, `meta eval` and resume, so all three rebuild the same thing from a run's config.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import replace_all_batch_norm_modules_

from hydranet import registry
from hydranet.config import Config
from hydranet.data import DataInfo
from hydranet.errors import UserError
from hydranet.files import tensor_digest
from hydranet.meta import omniglot
from hydranet.meta.classes import source_pools
from hydranet.meta.episodes import ClassPool, Episodes, sample_classes, sample_sinusoids, with_rotations
from hydranet.meta.learner import MetaNet, Params, Problem
from hydranet.randomness import Purpose, seed_global


@dataclass
class MetaSetup:
    """A meta-learning run's parts, rebuilt alike by train, resume and eval from the run's config."""

    cfg: Config
    problem: Problem
    net: MetaNet
    method: object
    train: ClassPool | None  # None: sinusoid tasks are drawn, not picked from a pool
    val: ClassPool | None
    test: ClassPool | None = None  # meta.source data: the held-out classes (Omniglot's are read by test_pool)
    info: DataInfo | None = None  # meta.source data: the source's preprocessing, fitted on the meta-train classes

    @property
    def omniglot(self) -> bool:
        return self.cfg.meta.source == "omniglot"

    def sample(self, pool: ClassPool | None, tasks: int, ways: int, shots: int, queries: int,
               generator: torch.Generator) -> Episodes:
        """`tasks` episodes from a class pool, or sinusoid tasks (ways do not apply to regression)."""
        if pool is None:
            return sample_sinusoids(tasks, shots, queries, generator)
        return sample_classes(pool, tasks, ways, shots, queries, generator)

    @property
    def fixed_ways(self) -> int | None:
        """The only episode width a method with one head output per episode class handles (None: any)."""
        return self.cfg.meta.ways if self.method.head == "ways" and not self.problem.regression else None

    def initial_parameters(self) -> Params:
        """The meta-parameters as trainable leaves: the network's and the method's own (Meta-SGD's rates)."""
        extra = {name: value.requires_grad_(True) for name, value in self.method.extra_parameters(self.net).items()}
        return {**dict(self.net.named_parameters()), **extra}

    def fingerprint(self) -> str | None:
        """SHA-256 of the class pools, so `--resume` refuses other data (sinusoid tasks are drawn, not read)."""
        if self.train is None:
            return None
        return tensor_digest({"train": self.train.images, "val": self.val.images})

    def test_pool(self) -> ClassPool | None:
        """The classes `meta eval` scores: the held-out classes of a data source, or Omniglot's evaluation
        characters (Lake's runs)."""
        if not self.omniglot:
            return self.test
        return omniglot.evaluation_pool(_omniglot_folder(self.cfg), self.cfg.meta.image_size)


def _omniglot_folder(cfg: Config) -> str:
    if cfg.meta.path is None:
        raise UserError("meta.path: the omniglot source needs the folder of its zip files (e.g. ../shared/data/omniglot)")
    return cfg.meta.path


def build(cfg: Config) -> MetaSetup:
    """Pools, network and method of a config."""
    _check_model(cfg)
    meta = cfg.meta
    problem = Problem(regression=meta.source == "sinusoid")
    train = val = test = info = None
    if meta.source == "omniglot":
        train, val = omniglot.pools(_omniglot_folder(cfg), meta.image_size, meta.val_alphabets)
        train = with_rotations(train) if meta.rotations else train
    elif meta.source == "data":
        train, val, test, info = source_pools(cfg).parts()
    method_type = registry.get("meta", meta.method.name, "meta.method")
    if method_type.head == "ways" and meta.train_ways not in (None, meta.ways):
        raise UserError(f"meta.train_ways: {meta.method.name} has one head output per episode class, so it trains "
                        f"and tests with meta.ways ({meta.ways}) classes; got {meta.train_ways}")
    if train is not None:
        _check_episodes(cfg, train, val)
    input_shape = (1,) if problem.regression else tuple(train.images.shape[2:])
    net, method = learner(cfg, problem, input_shape, None if train is None else train.classes)
    return MetaSetup(cfg, problem, net, method, train, val, test, info)


def _check_model(cfg: Config) -> None:
    """The meta-network is the trunk and one head, adapted per task: settings that build something else are refused
    rather than silently dropped."""
    if cfg.model.ensemble > 1:
        raise UserError(f"model.ensemble: meta-learning adapts one network per task, not an ensemble of "
                        f"{cfg.model.ensemble} (set it to 1)")
    if getattr(cfg.data.encoder.options, "categorical", None) == "embedding":
        raise UserError("data.encoder.categorical: meta-learning reads a table's columns as numbers, so category "
                        "codes would pass for quantities; use one-hot (categorical: onehot)")


def _check_episodes(cfg: Config, train: ClassPool, val: ClassPool) -> None:
    """Refuse episode settings the pools cannot fill, naming the setting, before any run folder is claimed."""
    meta = cfg.meta
    for pool, role, ways in ((train, "meta-train", meta.train_ways or meta.ways), (val, "meta-validation", meta.ways)):
        if ways > pool.classes:
            raise UserError(f"meta.{'train_ways' if meta.train_ways and pool is train else 'ways'}: {ways}-way "
                            f"episodes need {ways} classes; the {role} pool has {pool.classes}")
        if meta.shots + meta.queries > pool.per_class:
            raise UserError(f"meta.shots + meta.queries: {meta.shots} + {meta.queries} examples per class; the "
                            f"{role} pool has {pool.per_class} per class")


def learner(cfg: Config, problem: Problem, input_shape: tuple[int, ...], train_classes: int | None) -> tuple[MetaNet, object]:
    """The network and method of a config for inputs of `input_shape`, the weights initialised from the seed
    (Purpose.INIT); `meta adapt` builds them without reading the data (the shapes come from the run)."""
    method_type = registry.get("meta", cfg.meta.method.name, "meta.method")
    seed_global(cfg.seed, Purpose.INIT)
    trunk = registry.get("trunk", cfg.model.trunk.name, "model.trunk")(cfg.model.trunk.options, input_shape)
    net = MetaNet(trunk, _head_width(method_type.head, problem, cfg.meta.ways, train_classes))
    replace_all_batch_norm_modules_(net)  # batch statistics per task: no running buffers to update under vmap
    return net, method_type(cfg.meta.method.options, net, problem)


def _head_width(head: str, problem: Problem, ways: int, train_classes: int | None) -> int | None:
    if head == "none":
        return None
    if problem.regression:
        return 1
    return ways if head == "ways" else train_classes
