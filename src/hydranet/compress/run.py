"""A trained run → a new, normal run directory holding the compressed model (evaluate, predict, export and serve
take it as they take any run), fine-tuned through the normal trainer when asked, with compress.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from hydranet.compress.profile import parameter_counts
from hydranet.compress.prune import GradualPruning, PruneOptions, magnitude_prune, sparsity, structured_prune
from hydranet.config import Config
from hydranet.config.sections import CompressConfig
from hydranet.data import Dataset, build_dataset
from hydranet.errors import UserError
from hydranet.files import write_json, write_tensors
from hydranet.models.resize import changed_shapes
from hydranet.rundir import RunDir
from hydranet.train import Run, fit, load_run
from hydranet.train.evaluation import eval_settings, evaluate_split
from hydranet.train.run import build_model_for

CHANNEL_SHARINGS = ("hard", "mmoe")  # where Torch-Pruning's dependency graph was checked to prune correctly
TAYLOR_EXAMPLES = 256  # train examples whose summed task losses score channels for Taylor importance


class StartFrom:
    """Trainer callback: a new fine-tuning run starts from the compressed weights (copied in place, so the optimizer
    built before holds the same parameters)."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def on_fit_start(self, trainer) -> None:
        if trainer.step == 0:
            trainer.model.load_state_dict(self.state)


def compress_run(source: str | Path, options: PruneOptions, out: str | Path | None, progress: bool = False) -> Run:
    """Prune the run at `source` into a new run directory `out` (refused if it holds anything) and return it."""
    run = load_run(source, calibrated=False)  # temperatures are fitted to the unpruned model: not carried over
    _check(options, run.config.model.sharing.name)
    before = parameter_counts(run.model)
    data = build_dataset(run.config)
    if options.schedule == "oneshot":
        _prune_once(run, data, options)
    cfg = derived_config(run, options.epochs, "prune", options)
    if options.epochs:
        callbacks = []
        if options.structure == "unstructured":
            end = options.end if options.schedule == "gradual" else 0.0
            callbacks.append(GradualPruning(options.amount, end, options.every))
        pruned = fine_tune(run, cfg, out, callbacks, progress)
    else:
        pruned = _write_run(cfg, out, run, data)
    record(pruned, run.dir, "prune", options, before, sparsity=round(sparsity(pruned.model), 6))
    return pruned


def fine_tune(run: Run, cfg: Config, out: str | Path | None, callbacks: list, progress: bool) -> Run:
    """Train `cfg` into the new run directory `out` through the normal trainer, starting from `run`'s weights as
    they are now, with `callbacks` (what the compression method does during training)."""
    return fit(cfg, out, progress=progress, callbacks=[StartFrom(run.model.state_dict()), *callbacks])


def record(new: Run, source: str | Path, method: str, options: BaseModel, before: dict[str, Any], **extra: Any) -> None:
    """compress.json of the new run: where it came from (the source run's folder), what was done, the parameters
    before and after."""
    report = {"source": str(source), "method": method, "options": options.model_dump(mode="json"),
              "params_before": before, "params_after": parameter_counts(new.model), **extra}
    write_json(RunDir(new.dir).compress, report)


def _check(options: PruneOptions, sharing: str) -> None:
    if options.structure == "channels" and sharing not in CHANNEL_SHARINGS:
        raise UserError(f"--structure: channel pruning supports model.sharing {' and '.join(CHANNEL_SHARINGS)}, not "
                        f"{sharing} (Torch-Pruning cannot follow its expert wiring); use --structure unstructured")
    if options.schedule == "gradual" and options.structure != "unstructured":
        raise UserError("--schedule: gradual pruning is unstructured (the cubic schedule of Zhu & Gupta); use "
                        "--structure unstructured, or --schedule oneshot with --epochs to fine-tune channel pruning")
    if options.schedule == "gradual" and options.epochs < 1:
        raise UserError("--epochs: gradual pruning prunes while fine-tuning, so it needs at least 1 epoch")


def _prune_once(run: Run, data: Dataset, options: PruneOptions) -> None:
    """Prune the loaded model in place to the requested sparsity or channel fraction."""
    if options.structure == "unstructured":
        with torch.no_grad():
            magnitude_prune(run.model, options.amount)
        return
    train = data.split("train")
    example = {k: v[:TAYLOR_EXAMPLES] for k, v in train.items()}
    structured_prune(run.model, run.tasks, example, options.amount, options.importance)


def derived_config(run: Run, epochs: int, method: str, options: BaseModel) -> Config:
    """The source's config for the compressed run: the widths pruning left (`model.pruned`, against the unpruned
    model its options build; none if nothing was pruned), the fine-tuning epochs and, in `compress:`, the method
    that made it; nothing is loaded from `init_from`: the weights come from the source run."""
    unpruned = run.config.model_copy(update={"model": run.config.model.model_copy(update={"pruned": {}})})
    reference = build_model_for(unpruned, run.info, torch.device("cpu"))[0].state_dict()
    model_cfg = run.config.model.model_copy(update={"pruned": changed_shapes(run.model, reference), "init_from": None})
    train_cfg = run.config.train.model_copy(update={"epochs": epochs or run.config.train.epochs})
    done = CompressConfig(method={"name": method, **options.model_dump(mode="json")})
    return run.config.model_copy(update={"model": model_cfg, "train": train_cfg, "compress": done})


def _write_run(cfg: Config, out: str | Path | None, run: Run, data: Dataset) -> Run:
    """A finished run directory for a model pruned without fine-tuning: its config, data info, weights and the
    summary of its val and test metrics, written as training writes them."""
    folder = RunDir.plan(cfg, out)
    summary: dict[str, Any] = {"experiment": cfg.name, "epochs": 0, "params": parameter_counts(run.model)["total"]}
    for split in ("val", "test"):
        held = len(data.index[split]) > 0
        summary[split] = evaluate_split(run.model, run.tasks, data.split(split), *eval_settings(cfg.train)) if held else {}
    folder.claim(cfg, "train", RunDir.open(run.dir).read_run_json().get("data_sha256"))
    folder.write_data_info(run.info.to_dict())
    write_tensors(folder.model, run.model.state_dict(), folder.stamp())
    folder.finish(summary)
    return Run(dir=folder.path, config=cfg, model=run.model, tasks=run.tasks, info=run.info, summary=summary)
