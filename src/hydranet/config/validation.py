"""Turning a raw experiment dict into a validated Config: the schema, then each method's own options, then
the checks a method makes against the whole config (TRADES refuses a regression task).

Every problem becomes one `UserError` line naming the dotted path, the same wording for schema and options.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hydranet import registry
from hydranet.config.fields import allowed_keys
from hydranet.config.messages import describe
from hydranet.config.methods import method_fields
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
