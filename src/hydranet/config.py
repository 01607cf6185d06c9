"""The experiment configuration: pydantic models, YAML loading and `--set a.b=value` overrides.

Config is the single source of truth: every field has a default and a one-line description, unknown
keys are refused, and errors name the dotted path and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hydranet.errors import UserError

TaskKind = Literal["classification", "binary", "multilabel", "regression"]
# What Task.metrics reports per kind (early stopping may monitor any of them).
METRIC_NAMES = {
    "classification": ("loss", "accuracy", "f1_macro"),
    "binary": ("loss", "accuracy", "roc_auc", "f1"),
    "multilabel": ("loss", "f1_micro", "f1_macro"),
    "regression": ("loss", "mae", "rmse", "r2"),
}
EXPERIMENTS_DIR = Path(__file__).parent / "experiments"


def metric_problem(tasks: dict[str, TaskConfig], metric: str) -> str | None:
    """Why `metric` is not `val/loss` or a `val/<task>/<metric>` that some task reports (None: it is fine)."""
    parts = metric.split("/")
    if not (metric == "val/loss" or (len(parts) == 3 and parts[0] == "val" and parts[1] in tasks)):
        return f"{metric!r} must be val/loss or val/<task>/<metric> with a task of {', '.join(tasks)}"
    known = METRIC_NAMES[tasks[parts[1]].kind] if len(parts) == 3 else ("loss",)
    if parts[-1] not in known:
        return f"a {tasks[parts[1]].kind} task has no metric {parts[-1]!r} (metrics: {', '.join(known)})"
    return None


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    val: float = Field(0.1, ge=0, lt=1, description="fraction of the examples held out for validation")
    test: float = Field(0.2, ge=0, lt=1, description="fraction held out for test (when the source has no test split)")
    stratify: str | None = Field(None, description="task whose labels stratify the split (null: plain random split)")


class AugmentConfig(Section):
    crop_padding: int = Field(0, ge=0, description="random crop after zero-padding by this many pixels (0: off)")
    flip: bool = Field(False, description="random horizontal flip with probability 1/2")
    cutout: int = Field(0, ge=0, description="side of a random square set to zero (0: off)")


class DataConfig(Section):
    source: str = Field("digits", description="where examples come from: digits, breast_cancer, csv, parquet, image_folder, cifar10, npz")
    path: str | None = Field(None, description="file or folder for sources that read one (csv, parquet, image_folder, cifar10, npz)")
    features: list[str] | None = Field(None, description="feature columns of a table (null: every column that is not a task column or `split`)")
    split: SplitConfig = Field(default_factory=SplitConfig, description="how examples are split into train/val/test")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="batched image augmentation applied to training batches")
    normalize: bool = Field(True, description="images: standardize each channel with train-split statistics (false: scale to [0, 1]); tables are always standardized")
    image_size: int | None = Field(None, ge=1, description="resize images to this square side (null: keep; all images must then share one size)")
    limit: int | None = Field(None, ge=1, description="use only this many examples, drawn at random with the seed (quick runs)")
    labels_fraction: float = Field(1.0, gt=0, le=1, description="train on a seeded fraction of the train split, stratified by the first classification task (label-efficiency studies; val and test stay whole)")
    cache_dir: str | None = Field(None, description="where decoded image sets are cached (null: $HYDRANET_CACHE or ~/.cache/hydranet)")


class TaskConfig(Section):
    kind: TaskKind = Field("classification", description="classification | binary | multilabel | regression")
    column: str | None = Field(None, description="source column or built-in target (null: the task's name)")
    weight: float = Field(1.0, ge=0, description="loss weight, used by the `static` balancer")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing for classification")
    loss: Literal["mse", "huber"] = Field("mse", description="regression loss")
    positive: str | None = Field(None, description="binary: the value that counts as positive (null: the larger of the two values)")
    separator: str = Field("|", min_length=1, description="multilabel: separator between labels in one cell")


class TrunkConfig(Section):
    name: str = Field("cnn", description="shared feature extractor: mlp, cnn, resnet")
    hidden: list[int] = Field([256, 128], description="mlp: widths of the hidden layers")
    channels: list[int] = Field([32, 64], description="cnn: conv widths (each conv is followed by 2x2 max-pool); resnet: stage widths")
    kernel_size: int = Field(3, ge=1, description="cnn: convolution kernel size")
    padding: Literal["valid", "same"] = Field("same", description="cnn: convolution padding (Keras' default is valid)")
    dense: list[int] = Field([64], description="cnn: widths of the dense layers after flatten")
    blocks: list[int] = Field([1, 1], description="resnet: residual blocks per stage")
    batch_norm: bool = Field(False, description="cnn/mlp: batch normalization after each conv/linear layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before each dense layer")
    activation: Literal["relu", "gelu", "silu"] = Field("relu", description="activation function")


class ModelConfig(Section):
    trunk: TrunkConfig = Field(default_factory=TrunkConfig, description="the shared trunk")
    sharing: str = Field("hard", description="how tasks share the trunk: hard (one trunk for all), mmoe, cgc, cross_stitch")
    experts: int = Field(4, ge=1, description="mmoe: experts (each a copy of the trunk) mixed by one softmax gate per task")
    shared_experts: int = Field(2, ge=0, description="cgc: experts every task's gate may use")
    task_experts: int = Field(1, ge=0, description="cgc: experts of each task's own, used by that task's gate only")
    expert_width_mult: float = Field(1.0, gt=0, description="mmoe/cgc: scale every trunk width (hidden, channels, dense) of each expert")
    gate_pool: int = Field(4, ge=1, description="mmoe/cgc on images: gates see the input average-pooled to this square side (tables: the flat input)")
    cross_stitch_self: float = Field(0.9, gt=0, le=1, description="cross_stitch: initial weight of a column on itself; the rest is split evenly among the others")
    head_hidden: list[int] = Field([], description="hidden widths of each task head (empty: a linear head)")
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before each head")
    weight_init: Literal["default", "glorot"] = Field("default", description="default: each layer's own init (PyTorch's; Kaiming for the resnet trunk) | glorot: Glorot-uniform weights and zero biases in every conv and linear layer, as Keras starts them (for models ported from Keras)")
    init_from: str | None = Field(None, description="start from these weights: a run directory (its trunk.safetensors or model.safetensors) or a .safetensors/.pt state-dict file (null: random init)")
    init_map: dict[str, str] = Field({}, description="init_from: rename source key prefixes before matching, e.g. {'backbone.': 'trunk.'} for a plain PyTorch state dict")
    init_heads: bool = Field(False, description="init_from: also load task heads whose names and shapes match (default: trunk only, fresh heads)")


class OptimizerConfig(Section):
    name: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw | adam | sgd (with Nesterov momentum)")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="weight decay (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    nesterov: bool = Field(True, description="sgd: Nesterov momentum")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam/adamw: betas")


class ScheduleConfig(Section):
    name: Literal["constant", "cosine", "onecycle"] = Field("constant", description="constant | cosine | onecycle")
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of all steps spent warming up linearly from 0")
    min_lr: float = Field(0.0, ge=0, description="cosine/onecycle: final learning rate as a fraction of the peak")


class EarlyStopConfig(Section):
    monitor: str | None = Field(None, description="metric to watch, `val/<task>/<metric>` or `val/loss` (null: off)")
    mode: Literal["auto", "min", "max"] = Field("auto", description="whether lower or higher is better (auto: from the metric's name)")
    patience: int = Field(5, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")
    restore_best: bool = Field(True, description="end with the weights of the best epoch")


class EMAConfig(Section):
    decay: float | None = Field(None, gt=0, lt=1, description="per-step decay of an exponential moving average of the weights, which evaluation, early stopping and the saved model then use (e.g. 0.99; null: off)")
    every: int = Field(1, ge=1, description="update the average every this many steps, with decay**every (fewer updates: less time on GPUs)")
    warmup: bool = Field(True, description="decay at most (1 + n) / (10 + n) at update n, so the first evaluations are not dominated by the initial weights")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1, description="examples per step")
    eval_batch_size: int = Field(1024, ge=1, description="examples per forward pass when evaluating")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="the optimizer")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="the learning-rate schedule")
    grad_clip: float | None = Field(None, gt=0, description="clip the global gradient norm to this (null: off)")
    early_stopping: EarlyStopConfig = Field(default_factory=EarlyStopConfig, description="stop when a val metric stops improving")
    precision: Literal["fp32", "bf16", "auto"] = Field("fp32", description="fp32 | bf16 (autocast of the forward pass; fp32 weights, losses and optimizer) | auto (bf16 where the device has it natively: CPUs with AVX-512 BF16 or AMX, CUDA GPUs with bf16; else fp32)")
    channels_last: bool = Field(True, description="channels_last memory format for image models and batches (faster convolutions and pooling on CPUs; no effect on tables)")
    ema: EMAConfig = Field(default_factory=EMAConfig, description="exponential moving average of the weights")
    eval_tta: Literal["none", "flip"] = Field("none", description="test-time augmentation when evaluating and predicting: flip averages the raw outputs of each image and its mirror image (image runs only)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (null: torch's default)")
    cpu_memory: Literal["keep", "release"] = Field("keep", description="keep: freed CPU memory stays in the process for reuse (glibc mallopt; no page faults per training step, much faster on CPUs) | release: the C library's defaults (freed blocks go back to the OS at once)")
    freeze: str | list[str] = Field("none", description="parameters kept fixed: none, trunk, or a list of trunk stages such as [stage1, stage2] (frozen BatchNorm layers also keep their statistics)")
    unfreeze_at: int | None = Field(None, ge=1, description="epoch (1-based) from which frozen parts train again (null: never)")
    unfreeze_gradual: bool = Field(False, description="unfreeze one trunk stage per epoch from the top, starting at unfreeze_at (ULMFiT's gradual unfreezing)")
    trunk_lr_mult: float = Field(1.0, ge=0, description="learning rate of the trunk as a multiple of the heads' (discriminative learning rates, e.g. 0.1 when fine-tuning)")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to <run>/tensorboard")
    progress: bool = Field(True, description="show a progress bar")

    @model_validator(mode="before")
    @classmethod
    def _legacy_bf16(cls, data: Any) -> Any:
        """Run directories written before `precision` existed say `bf16: true|false`: read that as the precision."""
        if isinstance(data, dict) and isinstance(data.get("bf16"), bool) and "precision" not in data:
            data = {**data, "precision": "bf16" if data["bf16"] else "fp32"}
            del data["bf16"]
        return data


class MTLConfig(Section):
    balancer: str = Field("equal", description="how task losses are combined: equal, static, uncertainty, dwa, gradnorm, rlw, pcgrad, mgda, cagrad, nash_mtl, famo")
    dwa_temperature: float = Field(2.0, gt=0, description="dwa: softmax temperature of the loss-descent ratios (Liu et al., 2019)")
    gradnorm_alpha: float = Field(1.5, ge=0, description="gradnorm: asymmetry α, how strongly slow tasks are pulled up (Chen et al., 2018)")
    gradnorm_lr: float = Field(0.025, gt=0, description="gradnorm: Adam learning rate of the task weights")
    cagrad_c: float = Field(0.4, ge=0, description="cagrad: radius c of the ball around the mean gradient (0: the mean gradient)")
    nash_update_every: int = Field(1, ge=1, description="nash_mtl: re-solve the weights every this many steps, reuse them in between")
    nash_max_norm: float = Field(1.0, ge=0, description="nash_mtl: clip the shared gradient to this norm (0: off)")
    famo_lr: float = Field(0.025, gt=0, description="famo: Adam learning rate of the task logits ξ")
    famo_gamma: float = Field(0.001, ge=0, description="famo: weight decay γ of the task logits ξ")
    diagnostics_every: int = Field(25, ge=0, description="every this many steps, log the cosine and conflict rate of task gradients on the shared parameters (0: off)")


ADVERSARIAL_KINDS = ("perturbation", "objective")  # an adversarial method replaces the inputs or adds a loss term


class AdversarialConfig(Section):
    method: str = Field("none", description="adversarial training: none | fgsm_rs (FGSM with random start, Wong et al. 2020) | pgd (Madry et al. 2018) | trades (Zhang et al. 2019); image runs only")
    norm: Literal["linf", "l2"] = Field("linf", description="the threat model: linf bounds every pixel's change by eps, l2 the Euclidean length of the whole change")
    eps: float = Field(8 / 255, ge=0, description="budget in raw pixels [0, 1]: per pixel for linf (8/255 ≈ 0.0314), over the whole image for l2 (e.g. 0.5 on CIFAR-10)")
    steps: int = Field(7, ge=1, description="pgd, trades: attack steps per training batch (fgsm_rs always takes one)")
    step_size: float | None = Field(None, gt=0, description="raw-pixel step of the attack (null: fgsm_rs 1.25·eps, Wong et al. 2020; pgd and trades 2.5·eps/steps, Madry et al. 2018)")
    beta: float = Field(6.0, ge=0, description="trades: weight β of the KL(f(x) ‖ f(x_adv)) term (Zhang et al. 2019)")
    warmup_epochs: int = Field(0, ge=0, description="grow eps linearly over this many epochs, reaching the full eps in the last of them (0: off)")
    tasks: list[str] = Field([], description="tasks whose losses the attack maximizes (empty: all tasks; trades: their classification, binary and multilabel tasks, and it refuses a regression task)")
    guard_every: int = Field(1, ge=0, description="every this many epochs, PGD on held-out val examples: record robust accuracy, keep the best-robust weights, warn on a collapse (0: off)")
    guard_examples: int = Field(256, ge=1, description="guard: val examples attacked (drawn at random from the val split, seeded by the run's seed)")
    guard_steps: int = Field(10, ge=1, description="guard: PGD steps of the check")


class SSLConfig(Section):
    objective: str = Field("simclr", description="self-supervised objective of `hydranet pretrain`: simclr (Chen et al. 2020), byol (Grill et al. 2020), denoising (Vincent et al. 2008)")
    temperature: float = Field(0.5, gt=0, description="simclr: temperature τ of the NT-Xent loss")
    projection_dim: int = Field(128, ge=1, description="simclr/byol: output width of the projection head")
    projection_hidden: int = Field(512, ge=1, description="simclr/byol: hidden width of the projection (and byol predictor) head")
    crop_scale: float = Field(0.2, gt=0, le=1, description="images: smallest area fraction of the random resized crop of a view")
    flip: bool = Field(True, description="images: random horizontal flip of a view")
    color_jitter: float = Field(0.4, ge=0, le=1, description="images: strength of the random brightness, contrast and saturation change of a view (0: off)")
    grayscale: float = Field(0.2, ge=0, le=1, description="images: probability that a view is turned to grey")
    corruption: float = Field(0.6, ge=0, lt=1, description="tables: fraction of a view's features replaced by the same feature of another random row (SCARF, Bahri et al. 2022)")
    mask_ratio: float = Field(0.3, ge=0, lt=1, description="denoising: fraction of input values set to zero (the train mean) before reconstruction")
    noise_std: float = Field(0.1, ge=0, description="denoising: std of the Gaussian noise added to the (normalized) input")
    decoder_hidden: int = Field(512, ge=1, description="denoising: hidden width of the MLP decoder from features back to the input")
    byol_tau: float = Field(0.99, ge=0, le=1, description="byol: base EMA rate of the target network, raised to 1 along a cosine over training")
    knn_k: int = Field(20, ge=1, description="neighbours of the kNN monitor and of `hydranet probe --mode knn`")
    knn_bank: int = Field(10000, ge=1, description="kNN monitor: labeled train examples in the memory bank (a seeded random sample)")
    knn_queries: int = Field(2000, ge=1, description="kNN monitor: val (else test) examples classified each epoch (a seeded random sample)")


class SearchParam(Section):
    """One searched field of `hydranet tune`: a float or int range, or a list of choices."""

    type: Literal["float", "int", "categorical"] = Field("float", description="float | int (a range from low to high) | categorical (one of choices)")
    low: int | float | None = Field(None, description="float/int: smallest value")
    high: int | float | None = Field(None, description="float/int: largest value")
    log: bool = Field(False, description="float/int: sample on a log scale (low must be > 0)")
    step: int | float | None = Field(None, gt=0, description="float/int: only values low + k·step (null: any float; 1 for int)")
    choices: list[Any] = Field([], description="categorical: the values to choose from (any YAML value: numbers, names, lists)")

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("categorical takes only `choices` (low, high, log and step are for float and int)")
            return self
        if self.choices:
            raise ValueError(f"{self.type} takes low and high, not choices (use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both low and high")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("int needs whole numbers for low, high and step")
        return self


class Config(Section):
    name: str = Field("experiment", description="experiment name, used for the run directory")
    plugins: list[str] = Field([], description="Python modules imported before names are looked up (they register custom sources, trunks, balancers)")
    seed: int = Field(0, description="seed of every random choice (split, init, shuffling, augmentation, dropout)")
    data: DataConfig = Field(default_factory=DataConfig, description="where the examples come from and how they are split")
    tasks: dict[str, TaskConfig] = Field(default_factory=lambda: {"label": TaskConfig()}, description="one entry per task: name → kind, column, weight")
    model: ModelConfig = Field(default_factory=ModelConfig, description="trunk, sharing and heads")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimization")
    mtl: MTLConfig = Field(default_factory=MTLConfig, description="multi-task balancing")
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig, description="adversarial training against L∞ or L2 perturbations of the raw pixels")
    ssl: SSLConfig = Field(default_factory=SSLConfig, description="self-supervised pretraining of the trunk (`hydranet pretrain`)")
    search: dict[str, SearchParam] = Field({}, description="`hydranet tune` only: dotted config key → range or choices to search (training ignores it)")

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        if not self.tasks:
            raise ValueError("tasks: at least one task is required")
        stratify = self.data.split.stratify
        if stratify is not None and stratify not in self.tasks:
            raise ValueError(f"data.split.stratify: {stratify!r} is not a task (tasks: {', '.join(self.tasks)})")
        if stratify is not None and self.tasks[stratify].kind not in ("classification", "binary"):
            raise ValueError(f"data.split.stratify: {stratify!r} is a {self.tasks[stratify].kind} task; stratify needs a classification or binary task")
        unknown = [t for t in self.adversarial.tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"adversarial.tasks: {unknown[0]!r} is not a task (tasks: {', '.join(self.tasks)})")
        self._check_freeze()
        monitor = self.train.early_stopping.monitor
        problem = None if monitor is None else metric_problem(self.tasks, monitor)
        if problem:
            raise ValueError(f"train.early_stopping.monitor: {problem}")
        return self

    def _check_freeze(self) -> None:
        freeze = self.train.freeze
        if isinstance(freeze, str) and freeze not in ("none", "trunk"):
            raise ValueError(f"train.freeze: {freeze!r} must be none, trunk or a list of stages such as [stage1, stage2]")
        if isinstance(freeze, list) and not all(s.startswith("stage") and s[5:].isdigit() for s in freeze):
            raise ValueError(f"train.freeze: {freeze!r} must list trunk stages named stage1, stage2, …")
        if self.train.unfreeze_at is not None and freeze == "none":
            raise ValueError("train.unfreeze_at: nothing is frozen (set train.freeze to trunk or a list of stages)")

    def column(self, task: str) -> str:
        """The source column of a task (its own name unless `column` says otherwise)."""
        return self.tasks[task].column or task


# --- loading ---------------------------------------------------------------------------------


def experiment_names() -> list[str]:
    """Built-in experiments shipped with hydranet."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def experiment_description(name: str) -> str:
    """The first comment line of a built-in experiment file."""
    for line in (EXPERIMENTS_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (expected an experiment YAML file or a built-in name: {', '.join(experiment_names())})") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def experiment_dict(experiment: str | Path | None) -> dict[str, Any]:
    """The raw dict of a built-in name, a YAML path or None (the default, `quickstart`)."""
    if experiment is None:
        experiment = "quickstart"
    text = str(experiment)
    if text in experiment_names():
        return _read_yaml(EXPERIMENTS_DIR / f"{text}.yaml")
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        raise UserError(f"experiment {text!r}: not a built-in experiment ({', '.join(experiment_names())}) nor a YAML file")
    return _read_yaml(path)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` → (['a', 'b'], value); the value is read as YAML so `3`, `0.1`, `[32,64]`, `null` work."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: expected KEY=VALUE, for example train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set a nested key, creating intermediate mappings (validation happens afterwards). Under `search` the
    rest of the path is one key, itself a dotted config key: `search.train.optimizer.lr={type: float, …}`."""
    if path[0] == "search" and len(path) > 2:
        path = ["search", ".".join(path[1:])]
    node = data
    for i, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise UserError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is a value, not a section")
        node = child
    node[path[-1]] = value


def load_config(experiment: str | Path | dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve an experiment (built-in name, YAML path, dict or None) plus overrides into a Config."""
    data = dict(experiment) if isinstance(experiment, dict) else experiment_dict(experiment)
    for text in overrides:
        apply_override(data, *parse_override(text))
    return validate(data)


def validate(data: dict[str, Any]) -> Config:
    """Validate a raw dict; the first problem becomes a one-line UserError with the dotted path."""
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise UserError(_describe(err)) from None
    _import_plugins(config.plugins)
    _check_registered(config)
    if config.search:
        # lazy: tune.space imports this module
        from hydranet.tune.space import check_search

        check_search(config)
    return config


def _import_plugins(modules: list[str]) -> None:
    """Import the modules that register a run's custom parts, so predict/evaluate/resume find them too."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UserError(f"plugins: cannot import {module!r} ({err})") from None


def _check_registered(config: Config) -> None:
    """Names looked up in the registry (source, trunk, sharing, balancer) must exist."""
    from hydranet import registry

    registry.get("source", config.data.source, "data.source")
    registry.get("trunk", config.model.trunk.name, "model.trunk.name")
    registry.get("sharing", config.model.sharing, "model.sharing")
    registry.get("balancer", config.mtl.balancer, "mtl.balancer")
    registry.get("ssl", config.ssl.objective, "ssl.objective")
    method = config.adversarial.method
    found = registry.find(method, ADVERSARIAL_KINDS)
    if method != "none" and found is None:
        known = ["none", *sorted(n for kind in ADVERSARIAL_KINDS for n in registry.names(kind))]
        raise UserError(f"adversarial.method: unknown method {method!r} (known: {', '.join(known)})")
    if found is not None:
        check = getattr(found[1], "check_config", None)  # a method may refuse what it cannot train (trades: a regression)
        if check is not None:
            check(config)


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    path = ".".join(loc) or "config"
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"config: unknown key {path!r}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    message = first["msg"]
    if kind == "value_error":  # a section's own check; Config's cross-checks (no location) name their fields
        return "config: " + (f"{path}: " if loc else "") + message.removeprefix("Value error, ")
    given = first.get("input")
    shown = "" if isinstance(given, dict) else f", got {given!r}"
    return f"config: {path}: {message}{shown}"


def _allowed_keys(loc: list[str]) -> list[str]:
    """Field names of the section at a location, so an unknown-key error can list what is allowed."""
    node: Any = Config
    keys = iter(loc)
    for key in keys:
        field = node.model_fields.get(key)
        if field is None:
            return []
        node = field.annotation
        if get_origin(node) is dict:  # tasks: the next key is a task name
            node = get_args(node)[1]
            if next(keys, None) is None:
                return []
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return []
    return sorted(node.model_fields)


def to_yaml(config: Config) -> str:
    """The resolved config as YAML (what `hydranet config` prints and runs save)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
