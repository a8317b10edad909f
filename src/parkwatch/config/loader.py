"""Load and validate a park config, reporting every problem as `file:line: key.path: message`."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from parkwatch.config.compact import compact_context
from parkwatch.config.partial import cross_check_rest
from parkwatch.config.yamlsource import ConfigSyntaxError, Loc, SourceMap, load_yaml_with_lines


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


#: the root model a file is validated into (a park config, a command center's config)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Schema(Generic[M]):
    """What a park config is validated against: the root model, assembled from the registries
    of rule kinds, drivers and notification channels, and every cross-check (both built by
    :mod:`parkwatch.schema`, which this package never imports)."""

    model: type[M]
    cross_check: Callable[[M], list[tuple[Loc, str]]]


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists every reason, in file order."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (the name itself)"
        else:
            out += ("." if out else "") + str(part)
    return out


def _data_loc(data: Any, loc: tuple[Any, ...]) -> Loc:
    """Keep the loc parts that exist in the data, plus a missing key at the very end.

    Anything else in a pydantic loc (a union member's tag, a validator name) is skipped.
    """
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (for key suggestions)."""
    current: Any = model
    for part in loc:
        current = _strip(current)
        origin = typing.get_origin(current)
        if origin in (list, tuple, set) and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif origin is dict:
            current = typing.get_args(current)[1]  # `part` is a key of the user's choosing
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        else:
            return None
    current = _strip(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _strip(tp: Any) -> Any:
    """Remove Annotated and Optional wrappers; None for a union of several models."""
    for _ in range(6):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return None
            tp = members[0]
        else:
            return tp
    return tp


def _message(err: Any, data_loc: Loc, root: type[BaseModel]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = data_loc[-1] if data_loc else "?"
        model = _model_at(root, data_loc[:-1])
        msg: str = f"unknown key '{key}'"
        if model is not None:
            allowed = list(model.model_fields)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            msg += f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(allowed)})"
        return msg
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        return ("must be an identifier: letters, digits, '_', '-', '.' (no spaces, '/', '+' "
                f"or '#'), at most 64 characters; got {err.get('input')!r:.60}")
    if kind == "string_type" and isinstance(err.get("input"), int | float) and not isinstance(
            err.get("input"), bool):
        return f"must be text, got the number {err['input']!r}; quote it, e.g. \"{err['input']}\""
    if kind == "union_tag_invalid":
        return (f"unknown type '{ctx.get('tag')}' (known: {ctx.get('expected_tags')})")
    if kind == "union_tag_not_found":
        return "required key 'type' is missing"
    if kind == "timezone_aware":
        return ("needs a UTC offset, e.g. 2026-12-01T09:00:00+08:00 (a time without one is "
                "ambiguous)")
    if kind in ("datetime_type", "datetime_parsing"):
        return (f"must be a date and time with a UTC offset, e.g. 2026-12-01T09:00:00+08:00; "
                f"got {err.get('input')!r:.60}")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if msg.startswith("Input should be"):
        msg = "must be" + msg[len("Input should be"):]
    if "input" in err and kind in ("float_parsing", "int_parsing", "bool_parsing",
                                   "string_type", "int_from_float", "float_type", "int_type",
                                   "list_type", "dict_type", "model_type", "literal_error",
                                   "bool_type", "greater_than", "greater_than_equal",
                                   "less_than", "less_than_equal", "too_short", "too_long",
                                   "string_too_short", "string_too_long"):
        got = err["input"]
        shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
        msg += f", got {shown[:60]}"
    return msg


def validate_data(data: Any, smap: SourceMap, schema: Schema[M]) -> M:
    """Validate parsed YAML; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(smap.file, 1, "", "the file must be a mapping of "
                                         "sections (park, gateway, brokers, ...)")])
    def validate(data: Any) -> M:
        return schema.model.model_validate(data,
                                           context=compact_context(base_dir=smap.base_dir))

    try:
        cfg = validate(data)
    except ValidationError as exc:
        problems = []
        locs = []
        for err in exc.errors(include_url=False):
            loc = _data_loc(data, err["loc"])
            locs.append(loc)
            problems.append(ConfigProblem(smap.file, smap.line_of(loc), format_path(loc),
                                          _message(err, loc, schema.model)))
        # the cross-references among what is valid, in the same run (parkwatch.config.partial)
        problems += [ConfigProblem(smap.file, smap.line_of(loc), format_path(loc), msg)
                     for loc, msg in cross_check_rest(data, locs, validate, schema.cross_check)]
        raise ConfigError(_ordered(problems)) from None
    cross = schema.cross_check(cfg)
    if cross:
        raise ConfigError(_ordered([
            ConfigProblem(smap.file, smap.line_of(loc), format_path(loc), msg)
            for loc, msg in cross
        ]))
    return cfg


def _ordered(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: p.line)


def _holds(node: Any, part: Any) -> bool:
    """`node[part]` names a place in the YAML data: a key of a mapping, an item of a list."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node)


def load_config(path: str | Path, schema: Schema[M],
                overrides: dict[Loc, Any] | None = None) -> M:
    """Read, validate and cross-check a park config file.

    ``overrides`` replaces values by key path before validation (the demo and the tests point
    the brokers at private ports this way).
    """
    try:
        data, smap = load_yaml_with_lines(path)
    except ConfigSyntaxError as exc:
        raise ConfigError([ConfigProblem(exc.file, exc.line, "", exc.message)]) from None
    for loc, value in (overrides or {}).items():
        node = data
        for part in loc[:-1]:
            if isinstance(node, dict) and part not in node:
                node[part] = {}  # overriding a key of a section the file leaves out
            node = node[part] if _holds(node, part) else None
        # a file that is not a mapping, or whose section is not one, keeps its mistake for
        # validation to report (this raised TypeError; found by tests/test_fuzz.py)
        if isinstance(node, dict) or _holds(node, loc[-1]):
            node[loc[-1]] = value
    return validate_data(data, smap, schema)
