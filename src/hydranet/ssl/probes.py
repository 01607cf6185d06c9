"""`hydranet probe`: how good are a trunk's frozen features for the experiment's tasks?

`linear`: one linear layer per task on standardized features, fitted full-batch with L-BFGS on the
task's own loss, its L2 strength chosen on val or on held-out train labels (the usual linear evaluation
protocol of self-supervised learning). `knn`: the similarity-weighted mean of the k nearest train
examples' targets (Wu et al. 2018), no fitting at all. Both report the task's own metrics on val and test.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor, nn

from hydranet.config import Config, apply_override, validate
from hydranet.data import build_dataset
from hydranet.data.build import load_raw
from hydranet.data.tabular import cardinalities
from hydranet.errors import UserError
from hydranet.files import write_json
from hydranet.models import build_model
from hydranet.models.pretrained import init_from
from hydranet.randomness import Purpose, seed_global, stream
from hydranet.rundir import RunDir, sized
from hydranet.ssl.knn import knn_average, trunk_features
from hydranet.tasks import Task
from hydranet.train.lifecycle import apply_process_settings

MODES = ("linear", "knn")
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # per-example L2 strengths tried; the best on held-out labels wins


def probe(run_dir: str | Path | None, mode: str = "linear", labels_fraction: float | None = None,
          experiment: Config | None = None, out: str | Path | None = None) -> dict:
    """Probe the trunk of a run (pretraining or training) on its own experiment or on `experiment`.

    `labels_fraction` (None: the experiment's `data.labels_fraction`) picks the labeled train examples.
    `run_dir` None probes a randomly initialized trunk of `experiment`: the baseline that shows how much
    of a probe's score the pretraining earned. Writes probe-<mode>.json into the run directory (or `out`)
    and returns the same dict.
    """
    if mode not in MODES:
        raise UserError(f"--mode: {mode!r} is not a probe (expected {' or '.join(MODES)})")
    if run_dir is None and experiment is None:
        raise ValueError("probe: a random trunk (run_dir None) needs the experiment")
    cfg = experiment if experiment is not None else RunDir.open(run_dir).read_config()
    raw = None
    if cfg.grows_with_rows:  # a table default: the probed run's trunk and encoder (or, for a random one, its size's)
        raw = load_raw(cfg)
        cfg = sized(cfg, len(raw), run_dir)
    if labels_fraction is not None:
        cfg = _with(cfg, ["data", "labels_fraction"], labels_fraction)
    if run_dir is not None and cfg.data.source == "text":  # the trunk's embedding rows are its run's token ids
        cfg = _with(cfg, ["data", "text", "tokenizer_from"], str(run_dir))
    apply_process_settings(cfg)
    start = time.perf_counter()
    data = build_dataset(cfg, raw=raw)
    tasks = {t: Task(t, cfg.tasks[t], data.info.tasks[t]) for t in cfg.tasks}
    seed_global(cfg.seed, Purpose.INIT)
    model = build_model(cfg.model, data.info.input_shape, tasks, cardinalities(data.info.encoder))
    if run_dir is not None:
        _load_trunk(model, Path(run_dir))
    splits = {name: data.split(name) for name in ("train", "val", "test") if len(data.index[name])}
    feats = {name: trunk_features(model.trunk, s["x"], cfg.train.eval_batch_size) for name, s in splits.items()}
    fit = _linear if mode == "linear" else _knn
    result: dict = {"mode": mode, "run": None if run_dir is None else str(run_dir), "experiment": cfg.name,
                    "labels_fraction": cfg.data.labels_fraction, "train_examples": len(data.index["train"]),
                    "val": {}, "test": {}}
    for name, task in tasks.items():
        predict = fit(task, feats, splits, cfg)
        for split in ("val", "test"):
            if split in splits:
                metrics = task.metrics(predict(feats[split]), splits[split][name])
                if metrics:
                    result[split][name] = metrics
    result["seconds"] = round(time.perf_counter() - start, 3)
    if out is not None or run_dir is not None:
        write_json(Path(out) if out is not None else RunDir(run_dir).probe_file(mode), result)
    return result


def _load_trunk(model: nn.Module, run_dir: Path) -> None:
    """The run's whole trunk, or a clear error: a partly loaded trunk would be probed silently."""
    report = init_from(model, run_dir)  # nothing matching is already an error
    if report.missing or report.mismatched:
        what = report.missing[:1] or [report.mismatched[0][0]]
        raise UserError(f"{run_dir}: its trunk does not fit this experiment's model ({what[0]} is missing or of another "
                        "shape); probe with the same trunk config and input shape")


def _with(cfg: Config, path: list[str], value: object) -> Config:
    data = cfg.model_dump(mode="json")
    apply_override(data, path, value)
    return validate(data)


def _labeled(task: Task, target: Tensor) -> Tensor:
    """Examples whose every label is known (B,): a probe fits and averages whole rows."""
    return task.spec.labeled(target).reshape(len(target), -1).all(dim=1)


def _linear(task: Task, feats: dict[str, Tensor], splits: dict, cfg: Config):
    """A linear layer on standardized features; its L2 strength is the one with the lowest loss on val, or
    (no val split) on a seeded fifth of the labeled train examples held out while choosing; then refit."""
    y = splits["train"][task.name]
    keep = _labeled(task, y)
    x, y = feats["train"][keep], y[keep]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    if "val" in splits:
        fit_x, fit_y, check_x, check_y = x, y, (feats["val"] - mean) / std, splits["val"][task.name]
    else:
        order = torch.randperm(len(x), generator=stream(cfg.seed, Purpose.PROBE_HOLDOUT))
        held, used = order[: max(1, len(x) // 5)], order[max(1, len(x) // 5):]
        fit_x, fit_y, check_x, check_y = x[used], y[used], x[held], y[held]
    heads, losses = {}, {}
    for l2 in L2_GRID:
        heads[l2] = _fit_head(task, fit_x, fit_y, l2, cfg.seed)
        with torch.no_grad():
            losses[l2] = float(task.loss(heads[l2](check_x), check_y))
    best = min(losses, key=losses.get)
    head = heads[best] if "val" in splits else _fit_head(task, x, y, best, cfg.seed)
    return lambda f: head((f - mean) / std).detach()


def _fit_head(task: Task, x: Tensor, y: Tensor, l2: float, seed: int) -> nn.Module:
    seed_global(seed, Purpose.INIT)
    head = task.head(x.shape[1])
    _lbfgs(head, lambda: task.loss(head(x), y), l2)
    return head


def _lbfgs(head: nn.Module, loss_fn, l2: float, iterations: int = 200) -> None:
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe")
    weights = [p for p in head.parameters() if p.ndim >= 2]

    def closure():
        optimizer.zero_grad()
        loss = loss_fn() + l2 * sum((w * w).sum() for w in weights)
        loss.backward()
        return loss

    optimizer.step(closure)


def _knn(task: Task, feats: dict[str, Tensor], splits: dict, cfg: Config):
    """Predictions in the head's output space from the neighbours' targets (class shares → log-probabilities)."""
    target = splits["train"][task.name]
    keep = _labeled(task, target)
    bank, values = feats["train"][keep], task.average_target(target[keep])
    return lambda f: task.spec.from_average(knn_average(bank, values, f, cfg.ssl.knn_k))

