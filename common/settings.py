"""What every entry point does with its settings class: ``--help`` generated from the class (each
variable, its type, bounds, default and meaning, so it cannot drift from what is read), a bad
value reported as one line per variable naming it and the problem (exit status 2, as argparse
does for a bad option), and the AWS region read from the SDKs' own variables as a fallback.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

S = TypeVar("S", bound=BaseSettings)
C = TypeVar("C", bound="DataclassInstance")
EXIT_CONFIG = 2  # a usage error, as argparse exits for a bad option


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# a log level, read case-insensitively (``info`` is ``INFO``)
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]


def region_field(prefix: str, **constraints: Any) -> Any:
    """The region: ``<PREFIX>REGION``, else the AWS SDKs' ``AWS_REGION`` (ECS sets it in every
    task), else ``AWS_DEFAULT_REGION``, else us-east-1."""
    return Field(
        "us-east-1",
        validation_alias=AliasChoices(f"{prefix}REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="AWS region",
        **constraints,
    )


def log_level_field() -> Any:
    return Field("INFO", description="the least level logged (JSON lines on stderr)")


# ---- settings that feed a core dataclass ---------------------------------------------------
class CoreFields(Generic[C]):
    """The settings that configure a service's core dataclass (which imports no settings code):
    each setting's default is the core field's default, in the setting's unit, so it is written
    once, in the core; ``build`` makes the core's config from the settings.

    ``fields``: setting name -> (core field name, setting units per core unit), e.g.
    ``{"record_ttl_ms": ("record_ttl", 1000)}`` for seconds set in milliseconds, or
    ``{"scale_up_pct": ("scale_up_pct", 100)}`` for a fraction set as a percentage.
    """

    def __init__(self, core: type[C], fields_: Mapping[str, tuple[str, float]]) -> None:
        self.core = core
        self.fields = dict(fields_)
        defaults = {f.name: f.default for f in fields(core)}
        self._defaults = {
            setting: _scaled(defaults[name], per)
            for setting, (name, per) in self.fields.items()
            if defaults[name] is not MISSING  # a required field: the setting is required too
        }

    def default(self, setting: str) -> Any:
        """The default of ``setting``: the core field's, in the setting's unit."""
        return self._defaults[setting]

    def build(self, settings: BaseSettings, **others: Any) -> C:
        """The core's config from ``settings``; ``others``: its fields no setting maps to."""
        values = {name: _scaled(getattr(settings, setting), 1 / per)
                  for setting, (name, per) in self.fields.items()}  # fmt: skip
        return self.core(**values, **others)


def _scaled(value: Any, factor: float) -> Any:
    """``value`` times ``factor``, without float noise (0.9 x 100 is 90, not 90.00000000000001);
    a whole number stays an int when it was one or when it is a count of finer units."""
    if factor == 1:
        return value
    scaled = round(value * factor, 9)
    return int(scaled) if factor > 1 and scaled == int(scaled) else scaled


# ---- names --------------------------------------------------------------------------------
def env_names(cls: type[BaseSettings], name: str) -> list[str]:
    """The variables a field reads, in order of precedence."""
    info = cls.model_fields[name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [str(cls.model_config.get("env_prefix", "")).upper() + name.upper()]


def _field_of(cls: type[BaseSettings], location: Sequence[int | str]) -> str | None:
    """The field an error's location names (by field name or by one of its aliases)."""
    if not location:
        return None
    head = str(location[0])
    if head in cls.model_fields:
        return head
    for name in cls.model_fields:
        if head.upper() in (n.upper() for n in env_names(cls, name)):
            return name
    return None


# ---- errors -------------------------------------------------------------------------------
def problems(cls: type[BaseSettings], error: ValidationError) -> list[str]:
    """One line per problem: ``PRODUCER_PORT='70000': must be <= 65535``."""
    lines = []
    for item in error.errors(include_url=False):
        name = _field_of(cls, item["loc"])
        message = _message(item)
        if name is None:  # a check across fields: its message names them, as variables here
            lines.append(_variables_named(cls, message))
            continue
        variable = env_names(cls, name)[0]
        if item["type"] == "missing":
            lines.append(f"{variable} is required: {_describe(cls.model_fields[name])}")
        else:
            lines.append(f"{variable}={item.get('input')!r}: {message}")
    return lines


def _variables_named(cls: type[BaseSettings], message: str) -> str:
    for name in sorted(cls.model_fields, key=len, reverse=True):
        message = re.sub(rf"\b{name}\b", env_names(cls, name)[0], message)
    return message


def _message(item: Any) -> str:
    message = str(item["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


# ---- help ---------------------------------------------------------------------------------
def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    if args and get_origin(annotation) is not None and len(args) == 1:
        annotation = args[0]
    if get_origin(annotation) is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    names: dict[Any, str] = {int: "integer", float: "number", bool: "true | false", str: "text"}
    text = names.get(annotation, getattr(annotation, "__name__", str(annotation)).lower())
    return "text (secret)" if text == "secretstr" else text


def _bounds(info: FieldInfo) -> str:
    parts, least, most = [], 0, None
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen):
            least = item.min_length
        if isinstance(item, annotated_types.MaxLen):
            most = item.max_length
    if most is not None:
        parts.append(f"{least}-{most} characters")
    elif least:
        parts.append(f"at least {least} characters")
    return ", ".join(parts)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, bool):
        return f"default {str(value).lower()}"
    return f"default {value!r}" if isinstance(value, str) else f"default {value}"


def _describe(info: FieldInfo) -> str:
    return info.description or ""


def variables_help(cls: type[BaseSettings], width: int = 100) -> str:
    """Every variable of ``cls``: name, type and bounds, default, and what it means."""
    lines = []
    for name, info in cls.model_fields.items():
        names = env_names(cls, name)
        kind = ", ".join(filter(None, [_type_text(info), _bounds(info)]))
        lines.append(f"  {names[0]}  ({kind}; {_default(info)})")
        text = _describe(info)
        if len(names) > 1:
            text = f"{text} (unset: {', then '.join(names[1:])}, then the default)".strip()
        if text:
            lines += textwrap.wrap(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def parser(cls: type[BaseSettings], prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help ends with the settings' variables."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (environment variables; a bad value stops it with exit status 2):\n"
        + variables_help(cls),
    )


def load(
    cls: type[S],
    prog: str,
    description: str | None,
    argv: Sequence[str] | None = None,
    factory: Callable[[], S] | None = None,
) -> S:
    """For an entry point without options of its own: ``-h`` prints the help (exit 0), anything
    else on the command line or a bad setting prints one line per problem (exit 2).
    ``factory`` (default ``cls``) builds the settings from the environment."""
    parser(cls, prog, description).parse_args(argv)
    return settings_or_exit(cls, prog, factory)


def settings_or_exit(cls: type[S], prog: str, factory: Callable[[], S] | None = None) -> S:
    """The settings read from the environment; a bad value: one line each, exit status 2."""
    try:
        return factory() if factory is not None else cls()
    except ValidationError as error:
        for line in problems(cls, error):
            sys.stderr.write(f"{prog}: {line}\n")
        sys.stderr.write(f"{prog}: see {prog} --help\n")
        raise SystemExit(EXIT_CONFIG) from None
