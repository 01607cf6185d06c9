"""Config: defaults, YAML, --set overrides with type checks, and one-line errors naming the dotted path."""

import pytest
from tests.benchmark_scripts import load_benchmark

from hydranet.config import Config, experiment_names, load_config, to_yaml, validate
from hydranet.errors import UserError

def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Config)


def test_builtins_resolve():
    assert {"quickstart", "seed-cnn"} <= set(experiment_names())
    for name in experiment_names():
        assert load_config(name).name == name


def test_default_is_quickstart():
    assert load_config(None).name == "quickstart"


def test_overrides_are_typed():
    cfg = load_config("quickstart", ["train.epochs=3", "train.optimizer.lr=0.01", "model.trunk.channels=[8,16]",
                                     "tasks.digit.weight=2", "train.grad_clip=null"])
    assert cfg.train.epochs == 3 and cfg.train.optimizer.lr == 0.01
    assert cfg.model.trunk.channels == [8, 16] and cfg.tasks["digit"].weight == 2.0
    assert cfg.train.grad_clip is None


@pytest.mark.parametrize("override, expected", [
    ("train.epochz=3", "unknown key 'train.epochz' (allowed: "),
    ("tasks.digit.kindd=binary", "unknown key 'tasks.digit.kindd' (allowed: column, kind"),
    ("train.epochs=many", "train.epochs: Input should be a valid integer"),
    ("train.epochs=0", "train.epochs: Input should be greater than or equal to 1"),
    ("tasks.digit.kind=ranking", "tasks.digit.kind: Input should be 'classification', 'binary', 'multilabel', 'regression', 'segmentation', 'depth', 'edges' or 'normals'"),
    ("data.source=mnist", "data.source: unknown source 'mnist' (known: "),
    ("model.trunk.name=vgg", "model.trunk.name: unknown trunk 'vgg' (known: "),
    ("mtl.balancer=magic", "mtl.balancer: unknown balancer 'magic'"),
    ("data.split.stratify=color", "data.split.stratify: 'color' is not a task"),
    ("train.early_stopping.monitor=val/nope/accuracy", "train.early_stopping.monitor"),
    ("train.epochs.x=1", "train.epochs is a value, not a section"),
])
def test_bad_overrides_name_the_path(override, expected):
    with pytest.raises(UserError) as err:
        load_config("quickstart", [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_yaml_roundtrip(tmp_path):
    cfg = load_config("quickstart", ["seed=7"])
    path = tmp_path / "exp.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(str(path)) == cfg


def test_empty_tasks_refused():
    with pytest.raises(UserError, match="at least one task"):
        validate({"tasks": {}})


def test_configuration_reference_is_in_sync():
    """docs/configuration.md is generated from the models; regenerate it when a field changes."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "scripts" / "config_reference.py")], capture_output=True, text=True, check=True)
    assert out.stdout == (root / "docs" / "configuration.md").read_text(), "run: python scripts/config_reference.py > docs/configuration.md"


def test_monitor_metric_must_exist_for_the_kind():
    with pytest.raises(UserError, match="a classification task has no metric 'acc' \\(metrics: loss, accuracy, f1_macro, ece\\)"):
        load_config("quickstart", ["train.early_stopping.monitor=val/digit/acc"])


def test_stratify_needs_classes():
    with pytest.raises(UserError, match="'ink' is a regression task; stratify needs a classification or binary task"):
        load_config("quickstart", ["data.split.stratify=ink"])


def test_plugins_register_custom_parts(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(
        "from hydranet import register\n"
        "from hydranet.models.trunks import MLP, MLPOptions\n"
        "register('trunk', 'my_mlp', options=MLPOptions)(lambda options, shape: MLP(options, shape))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="unknown trunk 'my_mlp'"):
        load_config("quickstart", ["model.trunk.name=my_mlp"])
    cfg = load_config("quickstart", ["plugins=[my_plugin_mod]", "model.trunk.name=my_mlp", "model.trunk.hidden=[8]"])
    assert cfg.plugins == ["my_plugin_mod"]
    with pytest.raises(UserError, match="plugins: cannot import 'no_such_module_x'"):
        load_config("quickstart", ["plugins=[no_such_module_x]"])


def test_cifar10_fast_cuda_recipe_builds():
    """The GPU recipe of benchmarks/cifar10_fast.py is a valid config whose ResNet has the planned depth."""
    from hydranet.models import build_model
    from hydranet.tasks import Task, TaskInfo

    module = load_benchmark("cifar10_fast")
    recipe = {k: v for k, v in module.CUDA_RECIPE.items() if k != "train.device"}  # no GPU needed to build it
    cfg = load_config("cifar10-fast", [f"{k}={v}" for k, v in recipe.items()])
    tasks = {"label": Task("label", cfg.tasks["label"], TaskInfo(kind="classification", outputs=10))}
    model = build_model(cfg.model, (3, 32, 32), tasks)
    assert len(model.trunk.blocks) == 8 and model.trunk.out_dim == 512
    assert cfg.train.ema.decay and cfg.train.eval_tta == "flip" and cfg.tasks["label"].label_smoothing == 0.2


@pytest.mark.parametrize("override, expected", [
    ("train.optimizer.betas=[0.9, 1.0]", "train.optimizer.betas: each beta must be in [0, 1), got [0.9, 1.0]"),
    ("seed=-1", "seed: Input should be greater than or equal to 0"),
    ("name=../escape", "name: must be a plain folder name"),
    ("name=''", "name: must be a plain folder name"),
    ("tasks={a.b: {kind: binary}}", "tasks: 'a.b' is not a usable task name"),
    ("tasks={x: {kind: binary}}", "tasks: 'x' is not a usable task name"),
    ("tasks={'': {kind: binary}}", "tasks: '' is not a usable task name"),
])
def test_values_that_would_break_later_are_refused_up_front(override, expected):
    with pytest.raises(UserError) as err:
        load_config("quickstart", [override, "data.split.stratify=null", "train.early_stopping.monitor=null"])
    assert expected in str(err.value)


def test_a_task_weight_the_balancer_ignores_warns():
    with pytest.warns(UserWarning, match=r"tasks.parity.weight=2: task weights are used by mtl.balancer static only; equal ignores"):
        load_config("quickstart", ["tasks.parity.weight=2"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config("quickstart", ["tasks.parity.weight=2", "mtl.balancer=static"])


@pytest.mark.parametrize("content, expected", [
    (b"name: caf\xe9\n", "line 1: byte 0xe9 is not UTF-8"),
    (b"name: x\ntrain: {epochs: 3\n", "line 3, column 1: not valid YAML (expected ',' or '}'"),
    (b"a: b: c\n", "line 1, column 5: not valid YAML (mapping values are not allowed here)"),
    (b"- a\n- b\n", "expected a mapping of config keys at the top level, got list"),
    (b"quickstart\n", "expected a mapping of config keys at the top level, got str"),
])
def test_unreadable_experiment_file_is_one_line_naming_it(tmp_path, content, expected):
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_config(str(path))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value) and "\n" not in str(err.value)


def test_a_folder_given_as_the_experiment(tmp_path):
    for folder in (tmp_path / "exp.yaml", tmp_path / "experiments"):
        folder.mkdir()
        with pytest.raises(UserError, match=f"^{folder}: is a folder \\(expected an experiment YAML file\\)$"):
            load_config(str(folder))
