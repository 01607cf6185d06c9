"""From a config to a `Dataset`: read the source, encode targets, split, fit normalization (or a tokenizer) on train.

`to_model_inputs` applies the same fitted preprocessing to new images, tables, texts or sequences at prediction time,
from the `DataInfo` that a run directory stores as `data.json`.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import torch

from hydranet import registry
from hydranet.config import Config
from hydranet.data.dataset import Dataset, ImageNormalizer, RawData, missing_mask
from hydranet.data.info import IMAGE, SEQUENCE, TABLE, TEXT, DataInfo
from hydranet.data.sequences import feature_statistics, standardized
from hydranet.data.sources.table import side_columns
from hydranet.data.split import label_subset, make_splits
from hydranet.data.tabular import TableEncoder
from hydranet.data.text import encode_texts, joined_texts, run_tokenizer, train_tokenizer
from hydranet.data.targets import encode_target
from hydranet.errors import UserError
from hydranet.kinds import TaskInfo, get_kind
from hydranet.randomness import Purpose, numpy_stream
from hydranet.rundir import RunDir


def build_dataset(cfg: Config, labels_required: bool = True, raw: RawData | None = None) -> Dataset:
    """Everything training needs, in memory, on the CPU (the trainer moves it to its device).

    With `labels_required` false (self-supervised pretraining), tasks whose column is absent or holds no
    label at all are left out instead of refused: unlabeled data is what pretraining is for. `raw` is the
    config's `load_raw`, when the caller has read it already.
    """
    raw = load_raw(cfg) if raw is None else raw
    targets, infos = {}, {}
    for task, task_cfg in cfg.tasks.items():
        column = cfg.column(task)
        if not labels_required and (column not in raw.labels or missing_mask(np.asarray(raw.labels[column], dtype=object)).all()):
            continue
        if column not in raw.labels:
            known = ", ".join(sorted(raw.labels)) or "none"
            raise UserError(f"tasks.{task}.column: source {cfg.data.source} has no column {column!r} (columns: {known})")
        targets[task], infos[task] = encode_target(raw.labels[column], task_cfg, f"tasks.{task} (column {column!r})")
    stratify = cfg.data.split.stratify if cfg.data.split.stratify in targets else None
    # class indices, missing labels (-1) their own stratum
    strata = get_kind(infos[stratify].kind).class_index(targets[stratify]).numpy() if stratify else None
    index = make_splits(len(raw), cfg.data.split, cfg.seed, strata, raw.split)
    index["train"] = label_subset(index["train"], cfg.data.labels_fraction, cfg.seed, _label_strata(cfg, targets, strata))
    train = index["train"]
    for task, task_info in infos.items():
        kind, y = get_kind(task_info.kind), targets[task][train]
        if not kind.labeled(y).any():
            raise UserError(f"tasks.{task}: no example of the train split has a label")
        kind.fit(task_info, y)  # regression: mean and std of the train targets
    info = fit_preprocessing(raw, train.numpy(), cfg)
    # images stay as read (uint8: 4x smaller than float32) and are normalized per batch or split
    x = raw.images if info.is_image else to_model_inputs(info, frame=raw.frame, series=raw.series)
    info.tasks, info.input_shape = infos, tuple(x.shape[1:])  # a table's width is its encoding's
    mitigation = mitigation_method(cfg)
    return Dataset(x=x, targets=targets, index=index, info=info,
                   weights=example_weights(cfg, raw, targets, infos, train, mitigation),
                   extras=mitigation_tensors(cfg, raw, train, mitigation), frame=raw.frame)


def mitigation_method(cfg: Config) -> object | None:
    """The `fairness.mitigation` object made with its options; None for `none`. What it gives the data is optional:
    `example_weights` (pre-processing: reweigh) and `batch_tensors` (in-processing: what its training part reads)."""
    mitigation = cfg.fairness.mitigation
    if mitigation.name == "none":
        return None
    return registry.get("mitigation", mitigation.name, "fairness.mitigation")(mitigation.options)


def mitigation_tensors(cfg: Config, raw: RawData, train: torch.Tensor, method: object | None) -> dict[str, torch.Tensor]:
    """The mitigation's per-example tensors that batches carry (`Dataset.extras`), fitted on the `train` indices."""
    make = getattr(method, "batch_tensors", None)
    return {} if make is None else make(cfg.fairness, raw.columns, train)


def example_weights(cfg: Config, raw: RawData, targets: dict[str, torch.Tensor], infos: dict[str, TaskInfo],
                    train: torch.Tensor, method: object | None = None) -> dict[str, torch.Tensor]:
    """Per task, the weight of each example in its training loss: `data.weight_column` times the weights of the
    mitigation `method` for the tasks it mitigates. Empty when neither is set, so the loss is today's plain mean."""
    column = user_weights(cfg, raw)
    mitigated: dict[str, torch.Tensor] = {}
    weigh = getattr(method, "example_weights", None)
    if weigh is not None:
        tasks = cfg.fairness.tasks or list(targets)
        mitigated = weigh(cfg.fairness, raw.columns, {t: targets[t] for t in tasks}, infos, train, column)
    if column is None:
        return mitigated
    return {task: column * mitigated[task] if task in mitigated else column for task in targets}


def user_weights(cfg: Config, raw: RawData) -> torch.Tensor | None:
    """`data.weight_column` as float32 (N,) (the table source has checked every row holds a number ≥ 0), or None
    when no column is set."""
    name = cfg.data.weight_column
    if name is None:
        return None
    return torch.from_numpy(pd.to_numeric(pd.Series(raw.columns[name], dtype=object)).to_numpy(dtype=np.float32))


def _label_strata(cfg: Config, targets: dict[str, torch.Tensor], strata: np.ndarray | None) -> np.ndarray | None:
    """Strata of a labels_fraction subset: the split's, else the classes of the first task whose head scores
    every class (classification)."""
    if strata is not None:
        return strata
    task = next((t for t, c in cfg.tasks.items() if get_kind(c.kind).class_scores and t in targets), None)
    return targets[task].numpy() if task else None


def load_raw(cfg: Config) -> RawData:
    """The source's examples as training indexes them (after `data.limit`): what monitoring draws raw rows from,
    and the fairness audit its sensitive columns."""
    raw = registry.get("source", cfg.data.source, "data.source")(cfg)
    for name, field in side_columns(cfg).items():
        if name not in raw.columns:  # a table source refuses a missing column itself, naming the columns it has
            raise UserError(f"{field}: source {cfg.data.source} has no column {name!r} (weight and sensitive "
                            f"columns need a table source: csv or parquet)")
    return _limit(raw, cfg)


def _limit(raw: RawData, cfg: Config) -> RawData:
    """Keep a seeded random subset of `data.limit` examples (for quick runs)."""
    limit = cfg.data.limit
    if limit is None or limit >= len(raw):
        return raw
    keep = np.sort(numpy_stream(cfg.seed, Purpose.LIMIT).permutation(len(raw))[:limit])
    return RawData(
        labels={k: _rows(v, keep) for k, v in raw.labels.items()},
        images=raw.images[torch.from_numpy(keep)] if raw.images is not None else None,
        frame=raw.frame.iloc[keep].reset_index(drop=True) if raw.frame is not None else None,
        split=raw.split[keep] if raw.split is not None else None,
        columns={k: v[keep] for k, v in raw.columns.items()},
        texts=[raw.texts[i] for i in keep] if raw.texts is not None else None,
        series=raw.series[torch.from_numpy(keep)] if raw.series is not None else None,
    )


def _rows(values, keep: np.ndarray) -> np.ndarray:
    """The kept rows of a label column; an array keeps its dtype (a dense task's (N, H, W) maps stay numbers)."""
    return values[keep] if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)[keep]


def fit_preprocessing(raw: RawData, train: np.ndarray, cfg: Config) -> DataInfo:
    """Preprocessing fitted on the train split only (no leakage from val/test); tasks are added by the caller."""
    if raw.kind == "image":
        images = raw.images[torch.from_numpy(train)]
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        mean = torch.zeros(images.shape[1])
        std = torch.ones(images.shape[1])
        if cfg.data.normalize:
            # per-channel statistics in float64 over chunks, so 50k images need no float copy at once
            total = torch.zeros(images.shape[1], dtype=torch.float64)
            squares = torch.zeros_like(total)
            for chunk in images.split(4096):
                c = chunk.to(torch.float64) / scale
                total += c.sum(dim=(0, 2, 3))
                squares += (c * c).sum(dim=(0, 2, 3))
            count = images.shape[0] * images.shape[2] * images.shape[3]
            mean = (total / count).float()
            std = (squares / count - (total / count) ** 2).clamp_min(1e-12).sqrt().float()
        return DataInfo(IMAGE, tuple(images.shape[1:]), scale=scale, mean=mean.tolist(), std=std.tolist(),
                        channels=int(images.shape[1]), size=tuple(images.shape[2:]))
    if raw.kind == TEXT:
        text = cfg.data.text
        tokenizer = fitted_tokenizer(cfg, [raw.texts[i] for i in train])
        return DataInfo(TEXT, (text.max_length,), features=list(text.columns), separator=text.separator,
                        max_length=text.max_length, tokenizer=tokenizer)
    if raw.kind == SEQUENCE:
        mean, std = feature_statistics(raw.series[torch.from_numpy(train)])
        return DataInfo(SEQUENCE, tuple(raw.series.shape[1:]), mean=mean, std=std)
    encoder = registry.get("encoder", cfg.data.encoder.name, "data.encoder")(cfg.data.encoder.options).fit(raw.frame.iloc[train])
    return DataInfo(TABLE, (), encoder=encoder.state_dict(), features=list(raw.frame.columns))


def fitted_tokenizer(cfg: Config, texts: list[str]) -> str:
    """`data.text.tokenizer_from`'s tokenizer, else that of `model.init_from` when it names a text run (the rows of
    its embedding stand for that tokenizer's ids: a tokenizer trained anew would scramble them), else one trained on
    `texts` (the train split's)."""
    if cfg.data.text.tokenizer_from is not None:
        return run_tokenizer(cfg.data.text.tokenizer_from, "data.text.tokenizer_from")
    source = cfg.model.init_from
    if source is not None and RunDir(source).data.is_file():
        return run_tokenizer(source, "model.init_from")
    return train_tokenizer(cfg.data.text, texts)


def to_model_inputs(info: DataInfo, images: torch.Tensor | None = None, frame: pd.DataFrame | None = None,
                    series: torch.Tensor | None = None) -> torch.Tensor:
    """Apply fitted preprocessing: images → normalized float (N, C, H, W); tables → encoded float (N, F); texts (the
    text columns of `frame`) → int64 token ids (N, max_length); sequences → standardized float (N, T, F + 1)."""
    if info.kind == TEXT:
        return text_inputs(info, frame)
    if info.kind == SEQUENCE:
        if series is None:
            raise UserError("input: this model expects numeric sequences (an .npz with x and lengths)")
        return standardized(series, info.mean, info.std)
    if info.is_image:
        if images is None:
            raise UserError("input: this model expects images")
        normalize = ImageNormalizer(info)
        x = torch.empty(images.shape, dtype=torch.float32)
        for out, chunk in zip(x.split(4096), images.split(4096)):
            out.copy_(normalize(chunk))
        return x
    if frame is None:
        raise UserError("input: this model expects a table (CSV/Parquet)")
    return torch.from_numpy(TableEncoder.from_state(info.encoder).transform(frame))


def text_inputs(info: DataInfo, frame: pd.DataFrame | None, where: str = "input") -> torch.Tensor:
    """The trained text columns of `frame` (from `where`), joined and tokenized as in training."""
    if frame is None:
        raise UserError(f"{where}: this model expects texts (a CSV/Parquet with the column(s) {', '.join(info.features)})")
    missing = [name for name in info.features if name not in frame.columns]
    if missing:
        raise UserError(f"{where}: no column {missing[0]!r}, which the model was trained with (expected the text "
                        f"column(s) {', '.join(info.features)}; columns: {', '.join(map(str, frame.columns))})")
    columns = {name: frame[name].to_numpy(dtype=object) for name in info.features}
    texts = joined_texts(columns, info.features, info.separator, where)
    return encode_texts(info.tokenizer, texts, info.max_length)
