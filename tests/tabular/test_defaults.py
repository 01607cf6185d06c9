"""The default trunk follows the data: a config naming only a table source and a task trains an mlp."""

import pytest
import yaml

from hydranet.config import for_rows, load_config, sections, validate
from hydranet.config.loading import to_yaml


@pytest.mark.parametrize("threshold, embedding, numeric", [(None, "none", "standard"), (10, "plr", "quantile")])
def test_one_line_table_config_trains(cli, tiny_csv, tmp_path, one_thread, monkeypatch, threshold, embedding, numeric):
    """`source: csv` and a task, nothing else about the model: today's image default (cnn) refused tables. The
    table's size is known once the data is read, and the run's config.yaml names what it chose (the large-table
    threshold lowered to the 240-row table's size, so the grown default trains a second, not 10,000 rows), which
    `predict` rebuilds."""
    if threshold is not None:
        monkeypatch.setattr(sections, "LARGE_TABLE_ROWS", threshold)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"data": {"source": "csv", "path": str(tiny_csv)}, "tasks": {"kind": {"kind": "binary"}},
                                   "train": {"epochs": 1, "progress": False}}))
    code, out, err = cli("train", exp, "--run-dir", tmp_path / "run")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["model"]["trunk"]["name"], saved["model"]["trunk"]["embedding"]) == ("mlp", embedding)
    assert saved["data"]["encoder"]["numeric"] == numeric
    code, out, err = cli("predict", tmp_path / "run", tiny_csv, "--output", tmp_path / "p.csv")
    assert code == 0, err


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


def test_a_large_table_grows_the_default_encoder_and_trunk(monkeypatch):
    """`for_rows`: a config naming neither trunk nor encoder gets PLR embeddings, learned category vectors and
    quantile scaling from LARGE_TABLE_ROWS rows on, keeps the plain mlp below; a named trunk or encoder, an option
    override and a saved config read back are never grown."""
    table = {"data": {"source": "csv"}, "tasks": {"y": {}}}
    rows = sections.LARGE_TABLE_ROWS
    assert for_rows(validate(table), rows - 1) == validate(table)
    grown = for_rows(validate(table), rows)
    assert grown.model.trunk.options.embedding == "plr" and grown.model.trunk.options.plr.sigma == 3.0
    encoder = grown.data.encoder.options
    assert (encoder.numeric, encoder.categorical) == ("quantile", "embedding")
    assert grown.train.early_stopping.monitor == "val/loss"
    assert validate(yaml.safe_load(to_yaml(grown))) == grown  # the saved run names what it chose
    assigned = validate(table)
    assigned.seed = 3  # assigning a field reruns the validators: the config still grows
    assert assigned.grows_with_rows
    assigned.model.trunk = sections.TrunkMethod(name="ft_transformer")  # a trunk assigned since is kept
    assert not assigned.grows_with_rows and for_rows(assigned, 10 * rows).model.trunk.name == "ft_transformer"
    for kept in (validate(table | {"model": {"trunk": "mlp"}}),
                 validate({"data": {"source": "csv", "encoder": {"name": "table"}}, "tasks": {"y": {}}}),
                 load_config(table, ["model.trunk.hidden=[64]"]),
                 validate(yaml.safe_load(to_yaml(validate(table)))),
                 validate({"data": {"source": "digits"}, "tasks": {"digit": {}}})):
        assert for_rows(kept, 10 * rows) == kept


def test_config_leaves_a_table_defaults_trunk_to_the_data(cli, tmp_path):
    """`hydranet config` cannot know the row count: it leaves the trunk and encoder out and says in a YAML comment
    how the data chooses them, so the printed file still grows as the experiment does; a named trunk is printed."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"data": {"source": "csv"}, "tasks": {"y": {"kind": "binary"}}}))
    code, out, err = cli("config", exp)
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert "trunk" not in printed["model"] and "encoder" not in printed["data"]
    assert "# model.trunk and data.encoder are left to the data" in out and "{name: mlp, embedding: plr" in out
    original = validate(yaml.safe_load(exp.read_text()))
    assert validate(printed).grows_with_rows and for_rows(validate(printed), 10_000) == for_rows(original, 10_000)
    code, out, err = cli("config", exp, "--set", "model.trunk=mlp")
    assert code == 0 and "left to the data" not in out and yaml.safe_load(out)["model"]["trunk"]["name"] == "mlp"


def test_a_pretrained_runs_trunk_and_encoder_are_taken_whatever_the_size(tiny_csv, tmp_path):
    """Fine-tuning a table default from a run (`model.init_from`) takes that run's trunk and encoder, so its weights
    fit at any data.limit; without one, the size decides."""
    from hydranet.rundir import sized

    table = {"data": {"source": "csv", "path": str(tiny_csv)}, "tasks": {"kind": {"kind": "binary"}}}
    grown = for_rows(validate(table), sections.LARGE_TABLE_ROWS)
    run = tmp_path / "pretrained"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(grown))
    small = validate(table | {"model": {"init_from": str(run)}})
    fine_tuned = sized(small, 100, run)
    assert fine_tuned.model.trunk == grown.model.trunk and fine_tuned.data.encoder == grown.data.encoder
    assert sized(validate(table), 100, None) == validate(table)


def test_a_study_on_a_large_table_keeps_the_grown_default_in_best_yaml(tiny_csv, tmp_path, one_thread, monkeypatch):
    """A trial records the config it trained (grown), so best.yaml retrains the same model, not the plain mlp that
    its trunk would name once written out."""
    import hydranet as hn
    monkeypatch.setattr(sections, "LARGE_TABLE_ROWS", 10)
    experiment = {"data": {"source": "csv", "path": str(tiny_csv)}, "tasks": {"kind": {"kind": "binary"}},
                  "train": {"epochs": 1, "progress": False},
                  "search": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}
    hn.Experiment(experiment).tune(1, dir=tmp_path / "study", sampler="random", echo=lambda line: None)
    best = load_config(tmp_path / "study" / "best.yaml")
    assert best.model.trunk.options.embedding == "plr" and best.data.encoder.options.numeric == "quantile"
    assert best == load_config(tmp_path / "study" / "trials" / "0000" / "config.yaml")


def test_variants_of_a_table_default_still_grow():
    """`hydranet.Experiment(Config)` and `bench mtl`'s runs start from `as_experiment`: the trunk and encoder stay
    the data's to choose, as in `train`; a config read back from a run never grows."""
    import hydranet as hn
    from hydranet.mtl.bench import _variant

    table = validate({"data": {"source": "csv"}, "tasks": {"y": {"kind": "binary"}, "z": {"kind": "regression"}}})
    assert hn.Experiment(table).config.grows_with_rows
    assert _variant(table, 1, ["y"], "equal", "hard").grows_with_rows
    saved = validate(yaml.safe_load(to_yaml(table)), stored=True)
    assert not saved.grows_with_rows and not hn.Experiment(saved).config.grows_with_rows
