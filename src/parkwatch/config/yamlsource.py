"""YAML loading that remembers where every key and list item came from.

Field engineers fix configs by line number, so every value we load carries its source line;
validation errors are mapped back through :class:`SourceMap`.  Duplicate keys are an error
(PyYAML would silently keep the last one, which is exactly the "silently fixed" config we
refuse to run on).

libyaml parses (a 10,000-sensor park in a fraction of the pure-Python parser's time, which
dominated the daemon's start); a file it refuses is parsed again by the pure-Python parser, whose
messages say more, so a field engineer reads the same error either way.

A large file the parse cache does not hold yet is parsed by a child process, which fills the
cache, and read from there: parsing a megabyte of YAML passes through some 100 MB of node
objects, and the holes they leave in the heap stayed in the daemon's memory for as long as it
ran (18 MB with 10,000 sensors).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from parkwatch.config import parsecache

log = logging.getLogger("parkwatch.config")

Loc = tuple[str | int, ...]

#: a child parse that takes longer than this is given up; the file is parsed in-process
CHILD_TIMEOUT_S = 120.0

#: libyaml's parser, when PyYAML was built with it (its wheels are)
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class SourceMap:
    """Key path → 1-based line number of the YAML node it was read from."""

    file: str
    lines: dict[Loc, int] = field(default_factory=dict)
    base_dir: Path | None = None  # relative paths in the config are taken from here
    #: where the lines come from when they were not needed so far (a cached parse)
    pending: Callable[[], dict[Loc, int]] | None = None

    def line_of(self, loc: Loc) -> int:
        """The line of the deepest known prefix of ``loc`` (1 for the document itself)."""
        if self.pending is not None:
            self.lines, self.pending = self.pending(), None
        for cut in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:cut]))
            if line is not None:
                return line
        return 1


class ConfigSyntaxError(Exception):
    """The file is not readable YAML; carries file and line for the message."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


#: most YAML nodes one config may expand to; aliases can multiply a small file exponentially
#: ("billion laughs"), and each expanded node is walked here (found by tests/test_fuzz.py)
MAX_NODES = 200_000


def _construct(node: yaml.Node, loc: Loc, smap: SourceMap, loader: yaml.SafeLoader,
               within: tuple[yaml.Node, ...] = ()) -> Any:
    if any(node is outer for outer in within):
        # an alias to a mapping or list that contains it (`a: &x [*x]`): walking it would
        # never end (RecursionError escaped before; found by tests/test_fuzz.py)
        raise ConfigSyntaxError(smap.file, node.start_mark.line + 1,
                                "an alias refers to the mapping or list that contains it")
    if len(smap.lines) > MAX_NODES:
        raise ConfigSyntaxError(smap.file, node.start_mark.line + 1,
                                f"the file expands to more than {MAX_NODES} values (aliases "
                                "of aliases?)")
    within = (*within, node)
    smap.lines.setdefault(loc, node.start_mark.line + 1)  # a key's own line wins over its value's
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (key_node.value if key_node.tag == _STR_TAG
                   else loader.construct_object(key_node, deep=True))
            if not isinstance(key, str | int | float | bool) or key is None:
                raise ConfigSyntaxError(smap.file, key_node.start_mark.line + 1,
                                        f"mapping key must be a plain value, not {key!r}")
            if isinstance(key, bool | float):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                raise ConfigSyntaxError(smap.file, key_node.start_mark.line + 1,
                                        f"duplicate key {key!r} (first defined on line "
                                        f"{smap.lines[(*loc, key)]})")
            smap.lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, key), smap, loader, within)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), smap, loader, within)
                for i, item in enumerate(node.value)]
    if node.tag == _STR_TAG:
        return node.value  # most scalars: skip the constructor's bookkeeping
    return loader.construct_object(node, deep=True)


def load_yaml_with_lines(path: str | Path,
                         display_name: str | None = None) -> tuple[Any, SourceMap]:
    """Parse one YAML document; return the data and the map of key paths to lines."""
    name = display_name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigSyntaxError(name, 0, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigSyntaxError(name, 0, f"cannot read file: {exc}") from None
    cached = parsecache.load(Path(path), text)
    if cached is None and parsecache.cacheable(Path(path), text) and _parse_aside(Path(path)):
        cached = parsecache.load(Path(path), text)
    if cached is not None:
        data, lines = cached

        def pending() -> dict[Loc, int]:  # the cache's line map, else parse for it after all
            return lines() or parse_yaml_with_lines(text, name)[1].lines

        smap = SourceMap(name, pending=pending)
    else:
        data, smap = parse_yaml_with_lines(text, name)
        parsecache.store(Path(path), text, data, smap.lines)
    smap.base_dir = Path(path).resolve().parent
    return data, smap


def _parse_aside(path: Path) -> bool:
    """Have a child process parse the file into the cache; False when it could not (a syntax
    error, an unwritable cache, data JSON cannot hold): the caller parses in-process then,
    and reports what is wrong with the file itself."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from parkwatch.config.yamlsource import "
             "parse_into_cache as p; sys.exit(p(sys.argv[1]))", str(path)],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=CHILD_TIMEOUT_S,
            check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("config %s: no child parse (%s); parsing here", path, exc)
        return False
    return done.returncode == 0


def parse_into_cache(path: str) -> int:
    """The child's side of :func:`_parse_aside`: 0 once the parse is in the cache."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data, smap = parse_yaml_with_lines(text, path)
    except (OSError, UnicodeDecodeError, ConfigSyntaxError):
        return 1
    return 0 if parsecache.store(Path(path), text, data, smap.lines) else 1


def parse_yaml_with_lines(text: str, name: str) -> tuple[Any, SourceMap]:
    try:
        checked = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        # the reader refuses control characters (e.g. \x08) already here, before the try below
        # (this escaped as yaml.reader.ReaderError; found by tests/test_fuzz.py)
        raise ConfigSyntaxError(name, 1, f"invalid YAML: {exc}") from None
    if _FAST_LOADER is not None:
        fast = _FAST_LOADER(text)
        try:
            return _parse(fast, text, name)
        except (yaml.YAMLError, ConfigSyntaxError) as exc:
            if isinstance(exc, ConfigSyntaxError) and not exc.message.startswith("invalid YAML"):
                raise  # ours (a duplicate key, ...): the same whichever parser read the file
        finally:
            fast.dispose()
    return _parse(checked, text, name)


def _parse(loader: yaml.SafeLoader, text: str, name: str) -> tuple[Any, SourceMap]:
    smap = SourceMap(name)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigSyntaxError(name, 1, "the file is empty")
        data = _construct(node, (), smap, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and exc.context is not None and (
                exc.context == "while scanning a simple key" or "quoted" in exc.context):
            mark = exc.context_mark  # the key being read, the quote opened: the mistake
        line = mark.line + 1 if mark else 1
        raise ConfigSyntaxError(name, line, _in_plain_words(exc, mark)) from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(name, 1, f"invalid YAML: {exc}") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level ("[[[[...") (found by
        # tests/test_fuzz.py; this escaped as RecursionError)
        raise ConfigSyntaxError(name, 1, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, smap


def _in_plain_words(exc: yaml.MarkedYAMLError, mark: Any) -> str:
    """What is wrong with the YAML, in a field engineer's words where PyYAML's are a parser's
    (the common mistakes of a hand-edited file: a tab, an indent that does not line up, a ':'
    inside a value, a quote or bracket left open); PyYAML's own words otherwise."""
    problem = exc.problem or str(exc)
    column = f" (column {mark.column + 1})" if mark is not None else ""
    opened = exc.context_mark.line + 1 if exc.context_mark is not None else None
    since = f" (the block begins on line {opened})" if opened not in (None, mark_line(mark)) \
        else ""
    if "cannot start any token" in problem and "'\\t'" in problem:
        return (f"a tab character{column}: YAML indents with spaces only; replace the tab "
                "with spaces")
    if problem.startswith("expected <block end>"):
        return (f"this line's indentation{column} does not line up with the lines before it"
                f"{since}: keys of one section start in the same column, items of a list "
                "each start with '- ' in the same column")
    if "mapping values are not allowed" in problem:
        return (f"a ':' where a value goes{column}: a line indented further than the key "
                "above it, or a value with ': ' in it that needs quotes")
    if "could not find expected ':'" in problem:
        return (f"a key without ': '{column}: is the space after the ':' missing, or is the "
                f"line indented as if it went on from the one before?{since}")
    if "found unexpected end of stream" in problem and exc.context and "quoted" in exc.context:
        return f"the quote opened on line {opened} is never closed"
    if exc.context and "flow" in exc.context:
        return (f"a list [...] or mapping {{...}} opened on line {opened} is not closed, or "
                "lacks a ',' between two items")
    msg = f"invalid YAML: {problem}{column}"
    if exc.context and exc.context_mark is not None:
        msg += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return msg


def mark_line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None
