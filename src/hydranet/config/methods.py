"""A config field that names a registered method together with that method's own options.

`mtl: {balancer: {name: dwa, temperature: 2.0}}` or just `balancer: dwa`: the method declares its options in
its own file (`@register("balancer", "dwa", options=DWAOptions)`), as scikit-learn's constructor arguments do,
so a plugin brings its own validated fields and the central schema never lists per-method settings.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_serializer, model_validator

from hydranet import registry
from hydranet.config.messages import describe
from hydranet.errors import UserError


class Options(BaseModel):
    """Base of a method's options: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NoOptions(Options):
    """What a method without declared options takes: nothing."""


class Method(BaseModel):
    """A method of one registry kind: `name` plus the method's options, validated against its declaration.

    Subclasses (made by `method_of`) set `kinds` (the registry kinds the name is looked up in), `none` (whether
    the word `none` means "no method") and `word` (what messages call the method). The options are resolved once the registry (and any plugin) is known: by `resolve`
    during config validation, or lazily on first access.
    """

    model_config = ConfigDict(extra="allow")
    kinds: ClassVar[tuple[str, ...]] = ()
    none: ClassVar[bool] = False
    word: ClassVar[str] = ""  # what the method is called in messages
    name: str = Field(description="the registered method")
    _options: BaseModel | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        """A bare string is the method's name with default options."""
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, dict) and "name" not in data:
            raise ValueError(f"expected a {cls.word} name or a mapping with `name` and the method's options, "
                             f"got keys {', '.join(map(str, data)) or 'none'}")
        return data

    @property
    def raw_options(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    @property
    def options(self) -> BaseModel:
        """The method's validated options (its declared model; `NoOptions` for none)."""
        if self._options is None:
            self.resolve(self.kinds[0])
        return self._options  # type: ignore[return-value]

    def declared(self) -> type[BaseModel]:
        """The options model the method registered (NoOptions when it declared none or is `none`)."""
        if self.none and self.name == "none":
            return NoOptions
        found = registry.find(self.name, self.kinds)
        if found is None:
            known = (["none"] if self.none else []) + sorted(n for k in self.kinds for n in registry.names(k))
            raise ValueError(f"unknown {self.word} {self.name!r} (known: {', '.join(known)})")
        return registry.options(found[0], self.name) or NoOptions

    def resolve(self, where: str) -> None:
        """Validate the options against the method's declaration; errors name `where`.<option>."""
        try:
            declared = self.declared()
        except ValueError as err:
            shown = f"{where}.name" if self.raw_options else where  # written as a mapping: name the key
            raise UserError(f"config: {shown}: {err}") from None
        unknown = [key for key in self.raw_options if key not in declared.model_fields]
        if unknown:
            takes = ", ".join(declared.model_fields) or "none"
            raise UserError(f"config: unknown key '{where}.{unknown[0]}': the {self.word} {self.name} has no option "
                            f"{unknown[0]!r} (its options: {takes})")
        try:
            self._options = declared.model_validate(self.raw_options)
        except ValidationError as err:  # unknown keys were refused above, with the method's options named
            raise UserError(describe(err, prefix=where.split("."))) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Method) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        """`{name, every option}`: what `hydranet config` prints and a run saves."""
        return {"name": self.name, **self.options.model_dump(mode="json")}


_SUBCLASSES: dict[tuple[tuple[str, ...], bool], type[Method]] = {}  # one type per field kind, so pydantic caches it


def method_of(*kinds: str, none: bool = False, word: str | None = None) -> type[Method]:
    """The Method type of a config field whose name is looked up in these registry kinds (`none`: the name
    `none` means no method; `word`: what messages call it, by default the first kind)."""
    key = (kinds, none)
    if key not in _SUBCLASSES:
        attrs = {"kinds": kinds, "none": none, "word": word or kinds[0], "__module__": __name__}
        _SUBCLASSES[key] = type(f"{kinds[0].title()}Method", (Method,), attrs)
    return _SUBCLASSES[key]


def method_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, Method]]:
    """(dotted path, Method) of every method field in a validated config, depth first."""
    out: list[tuple[str, Method]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, Method):
            out.append((path, value))
        elif isinstance(value, BaseModel):
            out += method_fields(value, f"{path}.")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    out += method_fields(item, f"{path}.{key}.")
    return out


def resolve_all(config: BaseModel) -> None:
    """Resolve every method field's options, so a bad option is refused when the config is loaded."""
    for path, method in method_fields(config):
        method.resolve(path)
