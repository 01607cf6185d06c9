"""Registered options: every method of every kind declares options a user can read, trust and mistype safely.

For each registered name: its options model is None or a pydantic model whose every field has a default and
a one-line description; the defaults validate and survive the config's YAML round trip; an unknown key or a
value of the wrong type is refused through the config field that names the kind, in one `UserError` line
naming the dotted path.
"""

from functools import reduce

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from hydranet import registry
from hydranet.config import ADVERSARIAL_KINDS, Config, load_config, to_yaml, validate
from hydranet.config.methods import method_fields
from hydranet.errors import UserError

# The config field that names a method of each kind (mtl.balancer, model.trunk, …), read from the schema.
FIELD = {kind: path for path, method in method_fields(Config()) for kind in method.kinds}
# The kinds no config field names, and why: a source is `data.source`, a plain name, and takes its settings from
# `data:` (path, features …); a `run_parts` builder is not chosen at all: every registered one adds its parts to
# every run (train/run.py), reading its settings from its own config section (`adversarial:`); report sections
# are not chosen either: `hydranet report` shows every registered one (report/run.py).
UNNAMED = {"source", "run_parts", "report_section", "study_section"}
BASE = {"tasks": {"digit": {"kind": "classification"}}}  # what every built-in method accepts (trades needs a class)
METHODS = [(kind, name) for kind in registry.KINDS if kind in FIELD for name in registry.names(kind)]
WRONG = {"wrong": [1]}  # a mapping: a wrong type for any option that is a number, flag, word or list


def at(cfg: Config, path: str):
    """The value at a dotted path of a config (`mtl.balancer` → cfg.mtl.balancer)."""
    return reduce(getattr, path.split("."), cfg)


def one_line_error(data: dict, overrides=()) -> str:
    with pytest.raises(UserError) as err:
        load_config(data, list(overrides))
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_every_kind_but_sources_and_run_parts_is_named_by_a_config_field():
    """Sources and run parts are the kinds without a `{name, options…}` field (UNNAMED says why)."""
    assert UNNAMED <= set(registry.KINDS)
    assert set(FIELD) == set(registry.KINDS) - UNNAMED


@pytest.mark.parametrize("kind, name", [(kind, name) for kind in sorted(UNNAMED) for name in registry.names(kind)])
def test_sources_and_run_parts_declare_no_options(kind, name):
    """No config field holds a source's or a run-parts builder's own options, so declared ones would be unreachable."""
    assert registry.options(kind, name) is None


def test_adversarial_names_are_unique_across_their_kinds():
    """`adversarial.method` looks a name up in perturbations then losses: one name, one method; `none` is reserved."""
    perturbations, losses = (set(registry.names(kind)) for kind in ADVERSARIAL_KINDS)
    assert not perturbations & losses and "none" not in perturbations | losses


@pytest.mark.parametrize("kind, name", METHODS)
def test_every_option_has_a_default_and_a_one_line_description(kind, name):
    declared = registry.options(kind, name)
    if declared is None:
        return
    assert isinstance(declared, type) and issubclass(declared, BaseModel)
    for option, field in declared.model_fields.items():
        assert not field.is_required(), f"{kind} {name}: option {option!r} has no default"
        assert field.description and field.description.strip(), f"{kind} {name}: option {option!r} has no description"
        assert "\n" not in field.description, f"{kind} {name}: option {option!r} has a description of several lines"


@pytest.mark.parametrize("kind, name", METHODS)
def test_defaults_validate_and_survive_the_yaml_round_trip(kind, name):
    field = FIELD[kind]
    cfg = load_config(BASE, [f"{field}.name={name}"])
    method = at(cfg, field)
    declared = registry.options(kind, name)
    assert method.name == name
    if declared is not None:
        assert method.options == declared()
        assert declared.model_validate(declared().model_dump(mode="json")) == declared()
    again = validate(yaml.safe_load(to_yaml(cfg)))
    assert at(again, field) == method


@pytest.mark.parametrize("kind, name", METHODS)
def test_an_unknown_option_is_one_line_naming_its_dotted_path(kind, name):
    field = FIELD[kind]
    message = one_line_error(BASE, [f"{field}.name={name}", f"{field}.nope=1"])
    assert f"'{field}.nope'" in message and name in message


@pytest.mark.parametrize("kind, name", METHODS)
def test_a_value_of_the_wrong_type_is_one_line_naming_the_option(kind, name):
    declared = registry.options(kind, name)
    for option in declared.model_fields if declared is not None else []:
        try:
            declared.model_validate({option: WRONG})
        except ValidationError:
            pass
        else:
            continue  # the option takes mappings: nothing is wrong with this value
        section, key = FIELD[kind].split(".")
        message = one_line_error({**BASE, section: {key: {"name": name, option: WRONG}}})
        assert f"{FIELD[kind]}.{option}" in message
