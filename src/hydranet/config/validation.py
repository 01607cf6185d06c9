"""Turning a raw experiment dict into a validated Config: the schema, then each method's own options, then
the checks a method makes against the whole config (TRADES refuses a regression task).

Every problem becomes one `UserError` line naming the dotted path, the same wording for schema and options.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from hydranet import registry
from hydranet.config.fields import allowed_keys
from hydranet.config.messages import describe
from hydranet.config.methods import method_fields
from hydranet.config import sections
from hydranet.config.sections import Config
from hydranet.errors import UserError


def check(data: dict[str, Any]) -> Config:
    """Validate a raw dict (plugins already imported); the first problem is a one-line UserError."""
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise UserError(describe(err, allowed=allowed_keys)) from None
    registry.get("source", config.data.source, "data.source")
    for path, method in method_fields(config):
        method.resolve(path)
    for path, method in method_fields(config):  # after every method resolved: a check may read the others
        found = None if method.name == "none" else registry.find(method.name, method.kinds)
        check_config = getattr(found[1], "check_config", None) if found else None
        if check_config is not None:  # a method may refuse what it cannot train
            check_config(config)
    return config


def for_rows(config: Config, rows: int, pretrained: Config | None = None) -> Config:
    """The config a new run on a table of `rows` examples trains with: `config` itself, unless it `grows_with_rows`.

    Then the trunk and encoder of `pretrained` (the run `model.init_from` names: its weights must fit, as a text run
    takes that run's tokenizer), else from LARGE_TABLE_ROWS rows on LARGE_TABLE's. Chosen once the data is read (the
    row count is not known before) and named in the run's config.yaml like every resolved field."""
    if not config.grows_with_rows:
        return config
    data = config.model_dump(mode="json")
    if pretrained is not None:
        chosen = {"encoder": pretrained.data.encoder.model_dump(mode="json"),
                  "trunk": pretrained.model.trunk.model_dump(mode="json")}
        data["plugins"] = list(dict.fromkeys([*config.plugins, *pretrained.plugins]))  # a plugin's trunk comes along
    elif rows >= sections.LARGE_TABLE_ROWS:
        chosen = copy.deepcopy(sections.LARGE_TABLE)
    else:
        return config
    data["data"]["encoder"], data["model"]["trunk"] = chosen["encoder"], chosen["trunk"]
    return check(data)
