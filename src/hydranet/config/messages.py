"""One-line messages for config problems: pydantic's first error as `config: <dotted.path>: what is wrong`.

Kept apart from the schema so that a method's own options (validated outside the Config model) get the same
wording, with their dotted path in the experiment.
"""

from __future__ import annotations

from typing import Callable

from pydantic import ValidationError


def describe(err: ValidationError, prefix: list[str] = (), allowed: Callable[[list[str]], list[str]] = lambda loc: []) -> str:
    """The first error of `err` as one line; `prefix` is where the validated mapping sits in the experiment,
    `allowed(loc)` lists the keys a mapping at `loc` (relative to it) may hold, for unknown-key errors."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    path = ".".join([*prefix, *loc]) or "config"
    kind = first["type"]
    if kind == "extra_forbidden":
        keys = allowed(loc[:-1])
        return f"config: unknown key {path!r}" + (f" (allowed: {', '.join(keys)})" if keys else "")
    message = first["msg"]
    if kind == "value_error":  # a section's own check; Config's cross-checks (no location) name their fields
        return "config: " + (f"{path}: " if loc or prefix else "") + message.removeprefix("Value error, ")
    given = first.get("input")
    shown = "" if isinstance(given, dict) else f", got {given!r}"
    return f"config: {path}: {message}{shown}"
