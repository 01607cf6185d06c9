"""The default trunk follows the data: a config naming only a table source and a task trains an mlp."""

import yaml

from hydranet.config import load_config, validate
from hydranet.config.loading import to_yaml


def test_one_line_table_config_trains(cli, tiny_csv, tmp_path, one_thread):
    """`source: csv` and a task, nothing else about the model: today's image default (cnn) refused tables."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"data": {"source": "csv", "path": str(tiny_csv)}, "tasks": {"kind": {"kind": "binary"}},
                                   "train": {"epochs": 1, "progress": False}}))
    code, out, err = cli("train", exp, "--run-dir", tmp_path / "run")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["trunk"]["name"] == "mlp"


def test_default_trunk_by_source_and_named_trunk_kept():
    """Tables get mlp, texts transformer, numeric sequences gru, images keep cnn, and a trunk the config names is
    never replaced."""
    assert validate({"data": {"source": "breast_cancer"}, "tasks": {"diagnosis": {}}}).model.trunk.name == "mlp"
    assert validate({"data": {"source": "digits"}, "tasks": {"digit": {}}}).model.trunk.name == "cnn"
    assert validate({"data": {"source": "text"}, "tasks": {"y": {}}}).model.trunk.name == "transformer"
    assert validate({"data": {"source": "sequence"}, "tasks": {"y": {}}}).model.trunk.name == "gru"
    named = {"data": {"source": "csv"}, "tasks": {"y": {}}, "model": {"trunk": {"name": "resnet"}}}
    assert validate(named).model.trunk.name == "resnet"


def test_resolved_default_survives_a_round_trip():
    """The saved config names the chosen trunk, so a reloaded run builds the same model whatever the defaults."""
    config = validate({"data": {"source": "parquet"}, "tasks": {"y": {}}})
    again = validate(yaml.safe_load(to_yaml(config)))
    assert again.model.trunk == config.model.trunk and "trunk" in again.model.model_fields_set


def test_an_option_override_keeps_the_data_default():
    """`--set model.trunk.embedding=plr` on a config naming no trunk options the table's mlp, not the image cnn."""
    config = load_config({"data": {"source": "csv"}, "tasks": {"y": {}}}, ["model.trunk.embedding=plr"])
    assert config.model.trunk.name == "mlp" and config.model.trunk.options.embedding == "plr"


def test_the_table_default_and_plr_stop_early_unless_a_monitor_is_named():
    """A table config naming no trunk (the tabular default) and an mlp with PLR embeddings (named or set by an
    override) watch val/loss and keep their best epoch; a named monitor (even null) is kept, and a named plain mlp
    and images keep early stopping off."""
    table = {"data": {"source": "csv"}, "tasks": {"y": {}}}
    for config in (validate(table), validate(table | {"model": {"trunk": {"name": "mlp", "embedding": "plr"}}}),
                   load_config(table, ["model.trunk.embedding=plr"])):
        assert config.train.early_stopping.monitor == "val/loss" and config.train.early_stopping.restore_best
    assert validate(table).model.trunk.options.embedding == "none"
    named = load_config(table, ["model.trunk.embedding=plr", "train.early_stopping.monitor=null"])
    assert named.train.early_stopping.monitor is None
    assert validate(table | {"model": {"trunk": "mlp"}}).train.early_stopping.monitor is None
    assert validate({"data": {"source": "digits"}, "tasks": {"digit": {}}}).train.early_stopping.monitor is None
