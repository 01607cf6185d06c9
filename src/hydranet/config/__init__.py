"""The experiment configuration: the schema (sections.py), each method's options (methods.py), YAML loading
and `--set` overrides (loading.py, overrides.py), old keys (migrate.py) and the `search:` check (search.py).

Config is the single source of truth: every field has a default and a one-line description, unknown keys are
refused, and errors name the dotted path and what is allowed.
"""

from hydranet.config.loading import EXPERIMENTS_DIR, experiment_description, experiment_dict, experiment_names, load_config, to_yaml, validate
from hydranet.config.methods import Method, NoOptions, Options
from hydranet.config.overrides import apply_override, parse_override
from hydranet.config.search import check_search, plain_experiment
from hydranet.config.validation import for_rows
from hydranet.config.sections import (
    ADVERSARIAL_KINDS, AdversarialConfig, AugmentConfig, Config, DataConfig, EarlyStopConfig, EMAConfig, FairnessConfig,
    ModelConfig, MTLConfig, OptimizerConfig, ScheduleConfig, SearchParam, Section, SplitConfig, SSLConfig, TaskConfig,
    TaskKind, TextConfig, TrainConfig, metric_problem,
)

__all__ = [
    "ADVERSARIAL_KINDS", "EXPERIMENTS_DIR", "AdversarialConfig", "AugmentConfig", "Config", "DataConfig",
    "EarlyStopConfig", "EMAConfig", "FairnessConfig", "Method", "ModelConfig", "MTLConfig", "NoOptions", "OptimizerConfig", "Options",
    "ScheduleConfig", "SearchParam", "Section", "SplitConfig", "SSLConfig", "TaskConfig", "TaskKind", "TextConfig", "TrainConfig",
    "apply_override", "check_search", "experiment_description", "experiment_dict", "experiment_names", "for_rows",
    "load_config", "metric_problem", "parse_override", "plain_experiment", "to_yaml", "validate",
]
