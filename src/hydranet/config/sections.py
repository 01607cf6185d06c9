"""The experiment schema: one pydantic section per concern, every field with a default and a description.

Methods (trunk, sharing, balancer, adversarial method, self-supervised method) are named by `Method` fields
whose options live in the method's own file (config/methods.py); this file lists only what every run shares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from hydranet import registry
from hydranet.config.methods import Options, method_of
from hydranet.kinds import KINDS, get_kind

TaskKind = Literal[tuple(KINDS)]  # the task kinds of hydranet.kinds, each one record of all the kind means


def metric_problem(tasks: dict[str, TaskConfig], metric: str) -> str | None:
    """Why `metric` is not `val/loss` or a `val/<task>/<metric>` that some task reports (None: it is fine)."""
    parts = metric.split("/")
    if not (metric == "val/loss" or (len(parts) == 3 and parts[0] == "val" and parts[1] in tasks)):
        return f"{metric!r} must be val/loss or val/<task>/<metric> with a task of {', '.join(tasks)}"
    known = get_kind(tasks[parts[1]].kind).metric_names if len(parts) == 3 else ("loss",)
    if parts[-1] not in known:
        return f"a {tasks[parts[1]].kind} task has no metric {parts[-1]!r} (metrics: {', '.join(known)})"
    return None


ADVERSARIAL_KINDS = ("perturbation", "loss")  # an adversarial method replaces the inputs or adds a loss term
TrunkMethod = method_of("trunk")
EncoderMethod = method_of("encoder", word="table encoder")
SharingMethod = method_of("sharing")
BalancerMethod = method_of("balancer")
AdversarialMethod = method_of(*ADVERSARIAL_KINDS, none=True, word="adversarial method")
SSLMethod = method_of("ssl", word="self-supervised method")
MitigationMethod = method_of("mitigation", none=True, word="fairness mitigation")
MetaMethod = method_of("meta", word="meta-learning method")
CompressMethod = method_of("compress", word="compression method")
# The trunk a config gets when it names none, by the kind of input its source reads: a source that reads tables
# says so with `inputs = "table"` (or "text", "sequence") on its registered loader; any other source keeps the image
# default.
DEFAULT_TRUNKS = {"table": "mlp", "image": "cnn", "text": "transformer", "sequence": "gru"}
# A table config that names neither trunk nor encoder gets, on a table of at least LARGE_TABLE_ROWS rows (after
# data.limit), PLR embeddings of the numbers, learned category vectors and quantile scaling: measured in
# docs/tabular.md ("How the default was chosen"), they close most of Adult's gap to boosted trees and overfit a table
# of a few thousand rows, where the plain mlp stays the default.
LARGE_TABLE_ROWS = 10_000
LARGE_TABLE = {"encoder": {"name": "table", "numeric": "quantile", "categorical": "embedding"},
               "trunk": {"name": "mlp", "embedding": "plr", "plr": {"sigma": 3.0}}}


def default_trunk(source: str) -> str:
    """The trunk of a config that names none: the one for the input kind its registered source declares, else "cnn"."""
    found = registry.find(source, ("source",))
    return DEFAULT_TRUNKS[getattr(found[1], "inputs", "image") if found else "image"]


class Section(Options):
    """Base of every config section: unknown keys are errors, assignments are validated."""


class SplitConfig(Section):
    val: float = Field(0.1, ge=0, lt=1, description="fraction of the examples held out for validation")
    test: float = Field(0.2, ge=0, lt=1, description="fraction held out for test (when the source has no test split)")
    stratify: str | None = Field(None, description="task whose labels stratify the split (null: plain random split)")


class AugmentConfig(Section):
    crop_padding: int = Field(0, ge=0, description="random crop after zero-padding by this many pixels (0: off)")
    flip: bool = Field(False, description="random horizontal flip with probability 1/2")
    cutout: int = Field(0, ge=0, description="side of a random square set to zero (0: off)")


class TextConfig(Section):
    columns: list[str] = Field(["text"], min_length=1, description="text source: the text columns, joined with `separator` into one text per row")
    separator: str = Field(" ", description="text source: what joins the text columns of a row")
    header: list[str] | None = Field(None, description="text source: column names of a CSV without a header row (null: the file's first row names them)")
    tokenizer: Literal["bpe", "wordpiece", "byte"] = Field("bpe", description="bpe | wordpiece (trained on the train split's texts) | byte (UTF-8 bytes, nothing trained)")
    vocab_size: int = Field(8192, ge=300, description="bpe/wordpiece: most tokens the trained vocabulary holds, special tokens included")
    lowercase: bool = Field(True, description="bpe/wordpiece: lowercase texts before tokenizing")
    max_length: int = Field(128, ge=2, description="tokens per text, [CLS] included: longer texts are cut, shorter ones padded")
    tokenizer_from: str | None = Field(None, description="a text run directory whose tokenizer to reuse instead of training one (null: model.init_from's when that is a text run, else trained)")


class SequenceConfig(Section):
    id: str | None = Field(None, description="sequence source, long table (.csv, .csv.gz, .parquet): the column naming the sequence each row belongs to (one example per id; null: the file is an .npz)")
    time: str | None = Field(None, description="sequence source, long table: the column that orders the rows of one id (numbers or dates)")


class DataConfig(Section):
    source: str = Field("digits", description="where examples come from: digits, breast_cancer, csv, parquet, image_folder, cifar10, npz, multidigits, scenes, text, sequence, waves")
    path: str | None = Field(None, description="file or folder for sources that read one (csv, parquet, image_folder, cifar10, npz, text, sequence: an .npz or a long table)")
    features: list[str] | None = Field(None, description="feature columns of a table (null: every column that is not a task column, `split`, the weight column or a sensitive column)")
    weight_column: str | None = Field(None, description="tables: a column of per-example loss weights (numbers ≥ 0; each task's loss is the weighted mean over its labelled examples; never a feature; null: all weights 1)")
    split: SplitConfig = Field(default_factory=SplitConfig, description="how examples are split into train/val/test")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="batched image augmentation applied to training batches")
    normalize: bool = Field(True, description="images: standardize each channel with train-split statistics (false: scale to [0, 1]); tables are scaled as data.encoder says")
    image_size: int | None = Field(None, ge=1, description="resize images to this square side (null: keep; all images must then share one size)")
    limit: int | None = Field(None, ge=1, description="use only this many examples, drawn at random with the seed (quick runs)")
    labels_fraction: float = Field(1.0, gt=0, le=1, description="train on a seeded fraction of the train split, stratified by the first classification task (label-efficiency studies; val and test stay whole)")
    label_scale: dict[str, float] = Field({}, description="dense image_folder: what a one-channel label PNG's values are divided by, per label folder (16-bit depth in millimetres: {depth: 1000}); .npy maps are read as stored")
    cache_dir: str | None = Field(None, description="where decoded image sets are cached (null: $HYDRANET_CACHE or ~/.cache/hydranet)")
    text: TextConfig = Field(default_factory=TextConfig, description="text source: columns, tokenizer and length")
    sequence: SequenceConfig = Field(default_factory=SequenceConfig, description="sequence source: the id and time columns of a long table")
    encoder: EncoderMethod = Field(default_factory=lambda: EncoderMethod(name="table"), description="tables: how columns become model inputs, fitted on train (data/tabular.py), and its options, e.g. {name: table, numeric: quantile, categorical: embedding, missing_indicators: true}; unnamed with an unnamed trunk, a table of 10,000 rows or more gets quantile scaling and category embeddings (docs/tabular.md)")

    @field_validator("label_scale")
    @classmethod
    def _positive_scales(cls, scales: dict[str, float]) -> dict[str, float]:
        bad = next((name for name, scale in scales.items() if not scale > 0), None)
        if bad is not None:
            raise ValueError(f"the scale of {bad!r} must be a number > 0, got {scales[bad]}")
        return scales


class TaskConfig(Section):
    kind: TaskKind = Field("classification", description=" | ".join(KINDS))
    column: str | None = Field(None, description="source column or built-in target (null: the task's name)")
    weight: float = Field(1.0, ge=0, description="loss weight, used by the `static` balancer")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing for classification")
    loss: Literal["mse", "huber"] = Field("mse", description="regression loss")
    positive: str | None = Field(None, description="binary: the value that counts as positive (null: the larger of the two values)")
    separator: str = Field("|", min_length=1, description="multilabel: separator between labels in one cell")


class ModelConfig(Section):
    trunk: TrunkMethod = Field(default_factory=lambda: TrunkMethod(name="cnn"), description="the shared feature extractor and its options: mlp, ft_transformer (tables), cnn, resnet, unet (a feature map for dense tasks), vit (patches of an image as tokens), transformer, gru, lstm (e.g. {name: cnn, channels: [32, 64]}); unnamed, it follows the data: mlp for a table source (csv, parquet, breast_cancer; with PLR embeddings from 10,000 rows on when the encoder is unnamed too), transformer for text, gru for sequences, cnn otherwise")
    sharing: SharingMethod = Field(default_factory=lambda: SharingMethod(name="hard"), description="how tasks share the trunk, and its options: hard (one trunk for all), mmoe, cgc, cross_stitch")
    head_hidden: list[int] = Field([], description="hidden widths of each task head (empty: a linear head)")
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before each head")
    ensemble: int = Field(1, ge=1, description="members of an efficient ensemble (TabM: linear weights shared with per-member adapters, each member its own output layer and trained on its own loss; their predictions are averaged); 1: a plain model")
    ensemble_style: Literal["tabm", "mini"] | None = Field(None, description="model.ensemble > 1: tabm (rank-1 adapters and biases in every shared linear layer; null means tabm) | mini (TabM-mini: one adapter at the trunk's first linear layer, the rest shared; refused where the sharing builds several trunks: mmoe, cgc, cross_stitch); mini is refused with model.ensemble 1")
    weight_init: Literal["default", "glorot"] = Field("default", description="default: each layer's own init (PyTorch's; Kaiming for the resnet trunk) | glorot: Glorot-uniform weights and zero biases in every conv and linear layer, as Keras starts them (for models ported from Keras)")
    init_from: str | None = Field(None, description="start from these weights: a run directory (its trunk.safetensors or model.safetensors) or a .safetensors/.pt state-dict file (null: random init)")
    init_map: dict[str, str] = Field({}, description="init_from: rename source key prefixes before matching, e.g. {'backbone.': 'trunk.'} for a plain PyTorch state dict")
    init_heads: bool = Field(False, description="init_from: also load task heads whose names and shapes match (default: trunk only, fresh heads)")
    pruned: dict[str, list[int]] = Field({}, description="layer widths structured pruning left (`hydranet compress`): the shape of each state-dict tensor that differs from what the options above build; written by compress, not by hand")


class OptimizerConfig(Section):
    name: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw | adam | sgd (with Nesterov momentum)")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="weight decay (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    nesterov: bool = Field(True, description="sgd: Nesterov momentum")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam/adamw: betas, each in [0, 1)")

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"each beta must be in [0, 1), got {list(betas)}")
        return betas


class ScheduleConfig(Section):
    name: Literal["constant", "cosine", "onecycle"] = Field("constant", description="constant | cosine | onecycle")
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of all steps spent warming up linearly from 0")
    min_lr: float = Field(0.0, ge=0, description="cosine/onecycle: final learning rate as a fraction of the peak")


class EarlyStopConfig(Section):
    monitor: str | None = Field(None, description="metric to watch, `val/<task>/<metric>` or `val/loss` (null: off; unset, a table run naming no trunk and an mlp with PLR embeddings watch val/loss)")
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
    precision: Literal["fp32", "bf16", "auto"] = Field("auto", description="auto (bf16 where the device has it natively: CPUs with AVX-512 BF16 or AMX, CUDA GPUs with bf16; else fp32) | fp32 | bf16 (autocast of the forward pass; fp32 weights, losses and optimizer)")
    channels_last: bool = Field(True, description="channels_last memory format for image models and batches (faster convolutions and pooling on CPUs; no effect on tables)")
    ema: EMAConfig = Field(default_factory=EMAConfig, description="exponential moving average of the weights")
    eval_tta: Literal["none", "flip"] = Field("none", description="test-time augmentation when evaluating and predicting: flip averages the raw outputs of each image and its mirror image (image runs only)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    sync_batch_norm: bool = Field(True, description="with several processes (torchrun), every BatchNorm layer normalizes by the statistics of all ranks' examples, so N ranks sharing a batch train like one process on it (false: each rank's own share, two all-reduces fewer per layer and step); no effect in one process")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (null: torch's default)")
    cpu_memory: Literal["keep", "release"] = Field("keep", description="keep: freed CPU memory stays in the process for reuse (glibc mallopt; no page faults per training step, much faster on CPUs) | release: the C library's defaults (freed blocks go back to the OS at once)")
    freeze: str | list[str] = Field("none", description="parameters kept fixed: none, trunk, or a list of trunk stages such as [stage1, stage2] (frozen BatchNorm layers also keep their statistics)")
    unfreeze_at: int | None = Field(None, ge=1, description="epoch (1-based) from which frozen parts train again (null: never)")
    unfreeze_gradual: bool = Field(False, description="unfreeze one trunk stage per epoch from the top, starting at unfreeze_at (ULMFiT's gradual unfreezing)")
    trunk_lr_mult: float = Field(1.0, ge=0, description="learning rate of the trunk as a multiple of the heads' (discriminative learning rates, e.g. 0.1 when fine-tuning)")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to <run>/tensorboard")
    progress: bool = Field(True, description="show a progress bar")
    distributed_timeout: float = Field(300.0, gt=0, description="under torchrun: seconds a process waits for the others in one collective operation before it stops with an error (a rank died or hangs)")

    @model_validator(mode="before")
    @classmethod
    def _legacy_bf16(cls, data: Any) -> Any:
        """Run directories written before `precision` existed say `bf16: true|false`: read that as the precision."""
        if isinstance(data, dict) and isinstance(data.get("bf16"), bool) and "precision" not in data:
            data = {**data, "precision": "bf16" if data["bf16"] else "fp32"}
            del data["bf16"]
        return data


class MTLConfig(Section):
    balancer: BalancerMethod = Field(default_factory=lambda: BalancerMethod(name="equal"), description="how task losses are combined, and its options: equal, static, uncertainty, dwa, gradnorm, rlw, pcgrad, mgda, cagrad, nash_mtl, famo, upgrad, aligned_mtl, imtl, db_mtl, gradvac, graddrop, fairgrad (e.g. {name: dwa, temperature: 2.0})")
    diagnostics_every: int = Field(25, ge=0, description="every this many steps, log the cosine and conflict rate of task gradients on the shared parameters (0: off)")


class AdversarialConfig(Section):
    method: AdversarialMethod = Field(default_factory=lambda: AdversarialMethod(name="none"), description="adversarial training, and its options: none | fgsm_rs (FGSM with random start, Wong et al. 2020) | pgd (Madry et al. 2018) | trades (Zhang et al. 2019); image runs only")
    norm: Literal["linf", "l2"] = Field("linf", description="the threat model: linf bounds every pixel's change by eps, l2 the Euclidean length of the whole change")
    eps: float = Field(8 / 255, ge=0, description="budget in raw pixels [0, 1]: per pixel for linf (8/255 ≈ 0.0314), over the whole image for l2 (e.g. 0.5 on CIFAR-10)")
    warmup_epochs: int = Field(0, ge=0, description="grow eps linearly over this many epochs, reaching the full eps in the last of them (0: off)")
    tasks: list[str] = Field([], description="tasks whose losses the attack maximizes (empty: all tasks; trades: their classification, binary and multilabel tasks, and it refuses a regression task)")
    guard_every: int = Field(1, ge=0, description="every this many epochs, PGD on held-out val examples: record robust accuracy, keep the best-robust weights, warn on a collapse (0: off)")
    guard_examples: int = Field(256, ge=1, description="guard: val examples attacked (drawn at random from the val split, seeded by the run's seed)")
    guard_steps: int = Field(10, ge=1, description="guard: PGD steps of the check")


class SSLConfig(Section):
    method: SSLMethod = Field(default_factory=lambda: SSLMethod(name="simclr"), description="self-supervised method of `hydranet pretrain`, and its options: simclr (Chen et al. 2020), byol (Grill et al. 2020), denoising (Vincent et al. 2008), mlm (texts: masked tokens, Devlin et al. 2019)")
    crop_scale: float = Field(0.2, gt=0, le=1, description="images: smallest area fraction of the random resized crop of a view")
    flip: bool = Field(True, description="images: random horizontal flip of a view")
    color_jitter: float = Field(0.4, ge=0, le=1, description="images: strength of the random brightness, contrast and saturation change of a view (0: off)")
    grayscale: float = Field(0.2, ge=0, le=1, description="images: probability that a view is turned to grey")
    corruption: float = Field(0.6, ge=0, lt=1, description="tables: fraction of a view's features replaced by the same feature of another random row (SCARF, Bahri et al. 2022)")
    knn_k: int = Field(20, ge=1, description="neighbours of the kNN monitor and of `hydranet probe --mode knn`")
    knn_bank: int = Field(10000, ge=1, description="kNN monitor: labeled train examples in the memory bank (a seeded random sample)")
    knn_queries: int = Field(2000, ge=1, description="kNN monitor: val (else test) examples classified each epoch (a seeded random sample)")


class FairnessConfig(Section):
    sensitive: list[str] = Field([], description="table columns whose groups `hydranet audit` compares and mitigations protect (e.g. [sex, race])")
    use_as_features: bool = Field(False, description="keep the sensitive columns among the model's inputs (default: left out of the features)")
    bins: dict[str, list[float]] = Field({}, description="numeric sensitive column → ascending bin edges (e.g. {age: [25, 45, 65]}: <25, 25–45, 45–65, ≥65)")
    intersections: bool = Field(True, description="audit: with several sensitive columns, also the groups of their combinations (sex × race)")
    tasks: list[str] = Field([], description="tasks the mitigation applies to (empty: all tasks); the audit reports every task")
    mitigation: MitigationMethod = Field(default_factory=lambda: MitigationMethod(name="none"), description="bias mitigation, and its options: none | reweigh (Kamiran & Calders 2012: example weights P(g)·P(y) / P(g, y) from the train split) | adversarial (Zhang, Lemoine & Mitchell 2018: an adversary per task predicts the group from the prediction; its gradient is projected out and reversed) | threshold (Hardt et al. 2016: thresholds per group fitted on val when training ends, applied to the decisions)")
    min_group_size: int = Field(30, ge=1, description="audit: a group with fewer examples in the split is named in a warning (its numbers are unreliable)")
    bootstrap: int = Field(1000, ge=0, description="audit: bootstrap resamples of the 95% intervals of the summary metrics (0: none)")

    @field_validator("bins")
    @classmethod
    def _ascending_edges(cls, bins: dict[str, list[float]]) -> dict[str, list[float]]:
        for column, edges in bins.items():
            if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"{column}: expected at least one edge, strictly ascending, got {edges}")
        return bins


class DistillConfig(Section):
    """Knowledge distillation from trained runs (Hinton et al. 2015); train/distill.py does it."""

    teacher: str | list[str] | dict[str, str] | None = Field(None, description="teacher run directory: one run for every task, a list of runs (each teaches the student's tasks it has; every task exactly one), or a mapping task → run (only those tasks are distilled); null: off")
    temperature: float = Field(4.0, gt=0, description="T: classification, binary and multilabel heads match the teacher's softmax/sigmoid of logits / T, with the KL scaled by T²")
    alpha: float = Field(0.5, ge=0, le=1, description="α: each distilled task's loss is (1 − α)·its label loss (term `<task>`) + α·the teacher term (`<task>@distill`)")


class CompressConfig(Section):
    """What `hydranet compress RUN` does when no --method is given; the methods and their options: compress/methods.py."""

    method: CompressMethod = Field(default_factory=lambda: CompressMethod(name="prune"), description="the compression method and its options: prune, int8-dynamic, int8-static, qat, distill (e.g. {name: prune, structure: channels, amount: 0.5, epochs: 3})")


class MonitorConfig(Section):
    reference_rows: int = Field(1000, ge=1, description="train rows sampled at random (seeded) and stored as the reference of `hydranet monitor`'s statistical tests (≤ 1000: Kolmogorov–Smirnov and chi-squared; more: distances)")
    keep_rows: bool = Field(True, description="store that sample in the run (reference_rows.parquet: raw train rows of a table, per-image channel means and stds of an image run); false: no rows are kept, only statistics, and drift is measured against them")


class MetaConfig(Section):
    """`hydranet meta train`: few-shot episodes and the meta-learner's outer loop (the inner loop is the method's)."""

    method: MetaMethod = Field(default_factory=lambda: MetaMethod(name="protonet"), description="the meta-learning method and its options: protonet (Snell et al. 2017), maml (Finn et al. 2017), fomaml, anil (Raghu et al. 2020), reptile (Nichol et al. 2018), finetune (a linear head fitted per episode on a trunk trained on all classes)")
    source: Literal["omniglot", "sinusoid", "data"] = Field("sinusoid", description="omniglot: characters of the two small background sets, evaluated on Lake's 20 one-shot runs | sinusoid: Finn et al.'s regression tasks (amplitude 0.1–5, phase 0–π, x in [−5, 5]) | data: the classes of the `data:` source's one classification task (image folder, cifar10, digits, a table), split by meta.test_classes and meta.val_classes")
    path: str | None = Field(None, description="omniglot: the folder holding images_background_small1.zip, images_background_small2.zip and all_runs.zip")
    val_alphabets: list[str] = Field(["Latin"], description="omniglot: background alphabets held out for meta-validation (never meta-trained on)")
    rotations: bool = Field(True, description="omniglot: each character rotated by 90°, 180° and 270° is a class of its own (×4 meta-train classes)")
    image_size: int = Field(28, ge=8, description="omniglot: images are resized to this square side")
    test_classes: list[str] = Field([], description="data: classes held out for `meta eval` (never meta-trained on); every class not held out is meta-trained on")
    val_classes: list[str] = Field([], description="data: classes held out for meta-validation (empty: meta-validate on the test classes; it only reports, it selects nothing)")
    per_class: int = Field(600, ge=2, description="data: examples kept per class, the first in the source's order, the same number for every class (miniImageNet keeps 600)")
    ways: int = Field(5, ge=2, description="classes per episode (classification sources)")
    train_ways: int | None = Field(None, ge=2, description="classes per meta-training episode (null: ways; ProtoNets train with more ways than they test)")
    shots: int = Field(1, ge=1, description="labelled support examples per class (sinusoid: support points per task)")
    queries: int = Field(5, ge=1, description="query examples per class scored after adaptation (sinusoid: query points per task)")
    meta_batch: int = Field(16, ge=1, description="tasks per meta-iteration, batched together (vmap)")
    iterations: int = Field(1000, ge=1, description="meta-iterations (outer optimizer steps)")
    time_budget: float | None = Field(None, gt=0, description="stop meta-training after this many seconds of training (null: run all iterations)")
    budget_clock: Literal["wall", "cpu"] = Field("wall", description="what time_budget counts: wall-clock seconds, or this process's CPU seconds (with one thread, train.threads=1, other jobs on a shared machine barely change them, so methods given one budget get the same compute; with more threads they also count the threads' spin-waiting, which grows under contention)")
    outer_optimizer: Literal["adam", "sgd"] = Field("adam", description="optimizer of the meta-parameters (reptile with sgd: θ ← θ + lr·(θ' − θ))")
    outer_lr: float = Field(1e-3, gt=0, description="learning rate of the outer optimizer (reptile's ε with sgd)")
    eval_every: int = Field(100, ge=1, description="meta-iterations between meta-validation, checkpoint and metrics line")
    eval_episodes: int = Field(100, ge=1, description="episodes of each meta-validation (the same ones every time)")


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
    seed: int = Field(0, ge=0, description="seed of every random choice (split, init, shuffling, augmentation, dropout)")
    data: DataConfig = Field(default_factory=DataConfig, description="where the examples come from and how they are split")
    tasks: dict[str, TaskConfig] = Field(default_factory=lambda: {"label": TaskConfig()}, description="one entry per task: name → kind, column, weight")
    model: ModelConfig = Field(default_factory=ModelConfig, description="trunk, sharing and heads")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimization")
    mtl: MTLConfig = Field(default_factory=MTLConfig, description="multi-task balancing")
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig, description="adversarial training against L∞ or L2 perturbations of the raw pixels")
    ssl: SSLConfig = Field(default_factory=SSLConfig, description="self-supervised pretraining of the trunk (`hydranet pretrain`)")
    fairness: FairnessConfig = Field(default_factory=FairnessConfig, description="sensitive columns, the fairness audit and bias mitigation")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="knowledge distillation: teacher runs whose outputs the student's heads learn from, beside the labels")
    compress: CompressConfig = Field(default_factory=CompressConfig, description="`hydranet compress RUN`: the method and its options, read from the run's config (and `--set compress.…`)")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="the reference a run stores at the end of training for `hydranet monitor` (drift)")
    meta: MetaConfig = Field(default_factory=MetaConfig, description="few-shot meta-learning (`hydranet meta train`)")
    search: dict[str, SearchParam] = Field({}, description="`hydranet tune` only: dotted config key → range or choices to search (training ignores it)")
    _table_default: bool = PrivateAttr(False)  # `grows_with_rows`: set by the validator from what the input named

    @field_validator("name")
    @classmethod
    def _name_stays_in_runs(cls, name: str) -> str:
        """The name becomes runs/<name>-<time>: it must name one folder, not a path."""
        if not name.strip() or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"must be a plain folder name (no /, \\ or leading dot), got {name!r}")
        return name

    @field_validator("tasks")
    @classmethod
    def _plain_task_names(cls, tasks: dict) -> dict:
        """Task names key batches ("x" is the input), loss terms ("<task>@adv") and metric paths ("val/<task>/…")."""
        for task in tasks:
            if not task or task == "x" or any(c in task for c in "./@ "):
                raise ValueError(f"{task!r} is not a usable task name (not empty, not x, no '.', '/', '@' or space)")
        return tasks

    @model_validator(mode="after")
    def _trunk_follows_data(self) -> "Config":
        """A config that names no trunk gets the default of its source's inputs (a csv is not fed to a cnn).

        Unless the config names a monitor, two kinds of run stop early on the val loss and keep their best epoch
        (measured in docs/tabular.md): a table run that names no trunk (the tabular default: +0.004 ROC-AUC on Adult
        over ten full epochs, no change on breast cancer and diabetes), and an mlp with PLR embeddings, which fits a
        table within a few epochs and then overfits. Assigning marks a field as set, so the saved config names it
        and a reloaded run builds and trains the same. A table config that names neither trunk nor encoder is
        noted, for `for_rows` (config/validation.py) to grow once the data's size is known.
        """
        named = "trunk" in self.model.model_fields_set
        if not named:
            self.model.trunk = TrunkMethod(name=default_trunk(self.data.source))
        table_default = not named and self.model.trunk.name == DEFAULT_TRUNKS["table"]
        # kept through the reruns that assigning a field causes (the trunk counts as named after the first run)
        self._table_default = self._table_default or (table_default and "encoder" not in self.data.model_fields_set)
        # the raw options: resolving them here would name a bad option without its section (resolve_all does later)
        plr = self.model.trunk.name == "mlp" and self.model.trunk.raw_options.get("embedding") == "plr"
        stop = self.train.early_stopping
        if (table_default or plr) and "monitor" not in stop.model_fields_set and self.data.split.val > 0:
            stop.monitor = "val/loss"
        return self

    @property
    def grows_with_rows(self) -> bool:
        """A table config that names neither trunk nor encoder: they wait for the data (validation.py `for_rows`).

        A private note, so a config read back from YAML (which names them) never grows, and is not `==` to one that
        still may; a trunk or encoder assigned since (the Python API) is kept too."""
        trunk, encoder = self.model.trunk, self.data.encoder
        untouched = (trunk.name == DEFAULT_TRUNKS["table"] and not trunk.raw_options and encoder.name == "table"
                     and not encoder.raw_options)
        return self._table_default and untouched

    def as_experiment(self) -> dict[str, Any]:
        """The config as an experiment dict to build variants from (a study's trials, `bench mtl`, the Python API,
        `hydranet config`): every field named, except the trunk and encoder of a config that `grows_with_rows`,
        so that each variant still chooses them from its data as this config would."""
        data = self.model_dump(mode="json")
        if self.grows_with_rows:
            del data["model"]["trunk"], data["data"]["encoder"]
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        if not self.tasks:
            raise ValueError("tasks: at least one task is required")
        stratify = self.data.split.stratify
        if stratify is not None and stratify not in self.tasks:
            raise ValueError(f"data.split.stratify: {stratify!r} is not a task (tasks: {', '.join(self.tasks)})")
        if stratify is not None and not get_kind(self.tasks[stratify].kind).single_label:
            single = " or ".join(name for name, kind in KINDS.items() if kind.single_label)
            raise ValueError(f"data.split.stratify: {stratify!r} is a {self.tasks[stratify].kind} task; stratify needs a {single} task")
        unknown = [t for t in self.adversarial.tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"adversarial.tasks: {unknown[0]!r} is not a task (tasks: {', '.join(self.tasks)})")
        self._check_freeze()
        self._check_fairness()
        teacher = self.distill.teacher
        unknown = [t for t in teacher if t not in self.tasks] if isinstance(teacher, dict) else []
        if unknown:
            raise ValueError(f"distill.teacher: {unknown[0]!r} is not a task (tasks: {', '.join(self.tasks)})")
        self._check_ensemble()
        monitor = self.train.early_stopping.monitor
        problem = None if monitor is None else metric_problem(self.tasks, monitor)
        if problem:
            raise ValueError(f"train.early_stopping.monitor: {problem}")
        return self

    def _check_fairness(self) -> None:
        fairness = self.fairness
        unknown = [t for t in fairness.tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"fairness.tasks: {unknown[0]!r} is not a task (tasks: {', '.join(self.tasks)})")
        unbinned = [c for c in fairness.bins if c not in fairness.sensitive]
        if unbinned:
            raise ValueError(f"fairness.bins: {unbinned[0]!r} is not a sensitive column (fairness.sensitive: "
                             f"{', '.join(fairness.sensitive) or 'none'})")
        side = [c for c in [self.data.weight_column, *fairness.sensitive] if c is not None]
        tasks = [c for c in side if c in {self.column(t) for t in self.tasks}]
        if tasks:
            raise ValueError(f"{'data.weight_column' if tasks[0] == self.data.weight_column else 'fairness.sensitive'}: "
                             f"{tasks[0]!r} is a task column (expected another column)")

    def _check_ensemble(self) -> None:
        """`mini` names how members differ; with one member there are none, and it would do nothing silently.
        `tabm` with one member is accepted: it was the default before null, so every config dumped then (a run's
        config.yaml, a study's best.yaml and trials) names it, and it means the plain model there."""
        style = self.model.ensemble_style
        if style == "mini" and self.model.ensemble == 1:
            raise ValueError(f"model.ensemble_style: {style} styles the members of an ensemble, and model.ensemble is "
                             f"1 (a plain model); set model.ensemble to 2 or more, or leave model.ensemble_style out")

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


