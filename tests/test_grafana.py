"""The Grafana dashboards ask only for what the daemon writes and exports.

Every InfluxQL query in `grafana/dashboards/*.json` (panel targets and template variables) is
parsed by a small parser for the subset of InfluxQL the dashboards use, and each measurement,
field and tag it names is checked against the telemetry sink's schema
(`parkwatch.telemetry.schema.MEASUREMENTS`).  Every PromQL expression is parsed likewise and
each metric and label it names is checked against the daemon's metrics
(`parkwatch.daemon.metrics`: its families, types and labels).  A query the parsers do not
understand fails the test, so a new query cannot slip by unchecked: extend the parser instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO
from parkwatch.daemon import metrics
from parkwatch.daemon.metrics import METRICS
from parkwatch.telemetry.schema import MEASUREMENTS, Measurement

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "parkwatch.yaml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "parkwatch.yaml"

#: variables Grafana itself defines
GRAFANA_VARIABLES = frozenset({"timeFilter", "__interval", "__interval_ms", "interval",
                               "__rate_interval", "__range", "__range_s", "__range_ms"})
#: labels Prometheus adds to every scraped series
SCRAPE_LABELS = frozenset({"instance", "job"})

# The daemon's metrics: family name as exposed → (type, labels), from the one place they are
# defined (the exposition is generated from the same table).
PROM_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    name: (kind, frozenset(labels)) for name, (kind, labels) in metrics._KIND.items()}

#: label values that are a closed set: a literal `label="x"` matcher must use one of them
PROM_LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("parkwatch_open_alarms", "kind"): frozenset(metrics.HAZARDS),
    ("parkwatch_open_alarms", "state"): frozenset(metrics.OPEN_STATES),
    ("parkwatch_rule_readings_total", "outcome"): frozenset(metrics.RULE_OUTCOMES),
    ("parkwatch_rule_evaluation_seconds", "what"): frozenset({"batch", "tick"}),
    ("parkwatch_telemetry_points_total", "outcome"): frozenset(
        {"written", "spooled", "replayed", "rejected", "overflow"}),
    **{(name, "lane"): frozenset({"events", "telemetry"}) for name in (
        "parkwatch_spool_bytes", "parkwatch_spool_points", "parkwatch_spool_oldest_age_seconds",
        "parkwatch_spool_dropped_points_total")},
}


class QueryError(Exception):
    """The query is outside the subset the checker understands."""


def variables_in(text: str) -> set[str]:
    """Grafana template variables referenced in `text` ($name, ${name}, [[name]])."""
    out: set[str] = set()
    for a, b, c in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", text):
        out.add(a or b or c)
    return out


# ------------------------------------------------------------------------------------ InfluxQL

_INFLUX_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<ident>"(?:[^"\\]|\\.)*")
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<var>\$\{\w+\}|\$\w+)
  | (?P<duration>\d+(?:ns|u|µ|ms|s|m|h|d|w)\b)
  | (?P<number>-?\d+(?:\.\d+)?\b)
  | (?P<word>[A-Za-z_]\w*)
  | (?P<op>=~|!~|!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)

#: InfluxQL keywords the dashboards use; they are written in capitals
_KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "GROUP", "BY", "ORDER", "ASC",
                       "DESC", "LIMIT", "SLIMIT", "AS", "SHOW", "TAG", "VALUES", "WITH", "KEY"})
_NUMERIC = frozenset({"float", "integer"})
_ANY = frozenset({"float", "integer", "boolean", "string"})
#: aggregate and selector functions → field types they accept
_AGGREGATES: dict[str, frozenset[str]] = {
    "count": _ANY, "distinct": _ANY, "mode": _ANY, "first": _ANY, "last": _ANY,
    "mean": _NUMERIC, "median": _NUMERIC, "spread": _NUMERIC, "stddev": _NUMERIC,
    "sum": _NUMERIC, "max": _NUMERIC, "min": _NUMERIC, "integral": _NUMERIC,
    "percentile": _NUMERIC,
}
#: transformations: applied to an aggregate in GROUP BY time() queries
_TRANSFORMS = frozenset({"derivative", "non_negative_derivative", "difference",
                         "non_negative_difference", "moving_average", "cumulative_sum"})
_FILLS = frozenset({"null", "none", "previous", "linear"})


@dataclass
class Tok:
    kind: str
    text: str


def tokenize_influxql(query: str) -> list[Tok]:
    """Split an InfluxQL query into tokens; a regex literal is read after `=~` and `!~`."""
    out: list[Tok] = []
    pos = 0
    while pos < len(query):
        if out and out[-1].kind == "op" and out[-1].text in ("=~", "!~"):
            m = re.compile(r"\s*/((?:[^/\\]|\\.)*)/").match(query, pos)
            if not m:
                raise QueryError(f"expected a /regex/ after {out[-1].text} at {pos}")
            out.append(Tok("regex", m.group(1)))
            pos = m.end()
            continue
        m = _INFLUX_TOKEN.match(query, pos)
        if not m:
            raise QueryError(f"unexpected character {query[pos]!r} at {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "ws":
            continue
        text = m.group()
        if kind in ("ident", "string"):
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif kind == "var":
            text = text.strip("${}")
        out.append(Tok(kind, text))
    out.append(Tok("eof", ""))
    return out


@dataclass
class Call:
    func: str
    args: list[Any]  # Call, Ref, or a literal Tok


@dataclass
class Ref:
    name: str  # a double-quoted identifier: a field or a tag


@dataclass
class InfluxQuery:
    """What a parsed query names, for checking against the schema."""

    kind: str  # "select" or "show_tag_values"
    measurements: list[str]
    items: list[tuple[Call | Ref, str | None]] = field(default_factory=list)  # (expr, alias)
    where: list[tuple[str, str, Tok]] = field(default_factory=list)  # (identifier, op, value)
    time_filter: bool = False
    group_time: bool = False
    group_tags: list[str] = field(default_factory=list)
    fill: str | None = None
    key: str | None = None  # SHOW TAG VALUES ... WITH KEY = "key"


class _InfluxParser:
    def __init__(self, query: str) -> None:
        self.toks = tokenize_influxql(query)
        self.i = 0

    # -- token helpers
    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def is_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.upper() == word

    def kw(self, word: str) -> None:
        tok = self.take()
        if tok.kind != "word" or tok.text.upper() != word:
            raise QueryError(f"expected {word}, got {tok.text or 'end'!r}")
        if tok.text != word:
            raise QueryError(f"write keywords in capitals: {tok.text!r} → {word}")

    def accept_kw(self, word: str) -> bool:
        if self.is_kw(word):
            self.kw(word)
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> Tok:
        tok = self.take()
        if tok.kind != kind or (text is not None and tok.text != text):
            want = text or kind
            raise QueryError(f"expected {want}, got {tok.text or 'end'!r}")
        return tok

    def accept(self, kind: str, text: str) -> bool:
        tok = self.peek()
        if tok.kind == kind and tok.text == text:
            self.i += 1
            return True
        return False

    def ident(self) -> str:
        tok = self.take()
        if tok.kind != "ident":
            raise QueryError(f'expected a "double-quoted" identifier, got {tok.text or "end"!r}')
        return tok.text

    # -- grammar
    def parse(self) -> InfluxQuery:
        if self.is_kw("SELECT"):
            q = self.select()
        elif self.is_kw("SHOW"):
            q = self.show_tag_values()
        else:
            raise QueryError(f"a query starts with SELECT or SHOW, not {self.peek().text!r}")
        if self.peek().kind != "eof":
            raise QueryError(f"unexpected {self.peek().text!r} after the query")
        return q

    def show_tag_values(self) -> InfluxQuery:
        for word in ("SHOW", "TAG", "VALUES", "FROM"):
            self.kw(word)
        q = InfluxQuery("show_tag_values", [self.ident()])
        while self.accept("punct", ","):
            q.measurements.append(self.ident())
        self.kw("WITH")
        self.kw("KEY")
        self.expect("op", "=")
        q.key = self.ident()
        if self.accept_kw("WHERE"):
            self.condition(q)
        return q

    def select(self) -> InfluxQuery:
        self.kw("SELECT")
        items = [self.select_item()]
        while self.accept("punct", ","):
            items.append(self.select_item())
        self.kw("FROM")
        if self.peek().kind != "ident":
            raise QueryError("FROM takes one \"measurement\" (no subqueries, regexes or lists)")
        q = InfluxQuery("select", [self.ident()], items=items)
        if self.accept_kw("WHERE"):
            self.condition(q)
        if self.accept_kw("GROUP"):
            self.kw("BY")
            self.group_item(q)
            while self.accept("punct", ","):
                self.group_item(q)
        tok = self.peek()
        if tok.kind == "word" and tok.text == "fill":
            self.take()
            self.expect("punct", "(")
            arg = self.take()
            if not (arg.kind == "number" or (arg.kind == "word" and arg.text in _FILLS)):
                raise QueryError(f"fill() takes null, none, previous, linear or a number, "
                                 f"not {arg.text!r}")
            q.fill = arg.text
            self.expect("punct", ")")
        if self.accept_kw("ORDER"):
            self.kw("BY")
            self.expect("word", "time")
            if not self.accept_kw("DESC"):
                self.accept_kw("ASC")
        for word in ("LIMIT", "SLIMIT"):
            if self.accept_kw(word):
                self.expect("number")
        return q

    def select_item(self) -> tuple[Call | Ref, str | None]:
        expr = self.expr()
        alias = self.ident() if self.accept_kw("AS") else None
        return expr, alias

    def expr(self) -> Call | Ref:
        tok = self.peek()
        if tok.kind == "ident":
            return Ref(self.take().text)
        if tok.kind == "word" and tok.text.upper() not in _KEYWORDS:
            name = self.take().text
            if name not in _AGGREGATES and name not in _TRANSFORMS:
                raise QueryError(f"unknown function {name!r}")
            self.expect("punct", "(")
            args: list[Any] = [self.expr()]
            while self.accept("punct", ","):
                arg = self.take()
                if arg.kind not in ("number", "duration"):
                    raise QueryError(f"{name}(): extra arguments must be numbers or "
                                     f"durations, not {arg.text!r}")
                args.append(arg)
            self.expect("punct", ")")
            return Call(name, args)
        raise QueryError(f"expected a \"field\" or a function call, got {tok.text or 'end'!r}")

    def condition(self, q: InfluxQuery) -> None:
        self.term(q)
        while self.is_kw("AND") or self.is_kw("OR"):
            self.kw(self.peek().text.upper())
            self.term(q)

    def term(self, q: InfluxQuery) -> None:
        if self.accept("punct", "("):
            self.condition(q)
            self.expect("punct", ")")
            return
        tok = self.peek()
        if tok.kind == "var":
            if tok.text != "timeFilter":
                raise QueryError(f"${tok.text} cannot stand alone in WHERE")
            self.take()
            q.time_filter = True
            return
        name = self.ident()
        op = self.expect("op").text
        value = self.take()
        if value.kind not in ("string", "regex", "number", "word"):
            raise QueryError(f"{name} {op}: expected a value, got {value.text or 'end'!r}")
        if (value.kind == "regex") != (op in ("=~", "!~")):
            raise QueryError(f"{name} {op} {value.text!r}: regexes go with =~ and !~ only")
        q.where.append((name, op, value))

    def group_item(self, q: InfluxQuery) -> None:
        tok = self.peek()
        if tok.kind == "word" and tok.text == "time":
            self.take()
            self.expect("punct", "(")
            every = self.take()
            if every.kind not in ("duration", "var"):
                raise QueryError(f"time() takes a duration or $__interval, not {every.text!r}")
            self.expect("punct", ")")
            q.group_time = True
            return
        q.group_tags.append(self.ident())


def parse_influxql(query: str) -> InfluxQuery:
    """Parse one query of the subset; QueryError for anything else."""
    return _InfluxParser(query).parse()


def _field_refs(expr: Call | Ref) -> Iterator[tuple[str | None, str]]:
    """(innermost function or None, identifier) for every identifier in a select item."""
    if isinstance(expr, Ref):
        yield None, expr.name
        return
    for arg in expr.args:
        if isinstance(arg, Ref):
            yield expr.func, arg.name
        elif isinstance(arg, Call):
            yield from _field_refs(arg)


def check_influxql(query: str, variables: frozenset[str] = frozenset()) -> list[str]:
    """Problems with one InfluxQL query against the telemetry schema (empty: none)."""
    try:
        q = parse_influxql(query)
    except QueryError as exc:
        return [f"not understood: {exc}"]
    problems = [f"${v} is not a dashboard variable" for v in sorted(variables_in(query))
                if v not in variables and v not in GRAFANA_VARIABLES]
    ms: list[Measurement] = []
    for name in q.measurements:
        if name in MEASUREMENTS:
            ms.append(MEASUREMENTS[name])
        else:
            problems.append(f"unknown measurement {name!r}")
    if not ms:
        return problems

    def tag_everywhere(tag: str, what: str) -> None:
        for m in ms:
            if tag not in m.tags:
                hint = " (a field; InfluxQL filters and groups by tags)" if tag in m.fields else ""
                problems.append(f"{what} {tag!r} is not a tag of {m.name}{hint}")

    if q.kind == "show_tag_values":
        assert q.key is not None
        tag_everywhere(q.key, "KEY")
        for name, _, _ in q.where:
            tag_everywhere(name, "WHERE")
        return problems

    m = ms[0]
    fields_selected = 0
    calls = [expr for expr, _ in q.items if isinstance(expr, Call)]
    for expr, _ in q.items:
        if isinstance(expr, Call) and expr.func in _TRANSFORMS and q.group_time:
            inner = expr.args[0]
            if not (isinstance(inner, Call) and inner.func in _AGGREGATES):
                problems.append(f"{expr.func}() with GROUP BY time() must wrap an aggregate")
        for func, name in _field_refs(expr):
            if name in m.fields:
                fields_selected += 1
                ftype = m.fields[name][0]
                accepts = _AGGREGATES.get(func or "", _NUMERIC if func in _TRANSFORMS else _ANY)
                if ftype not in accepts:
                    problems.append(f"{func}({name!r}): {name} is a {ftype} field of {m.name}")
            elif name in m.tags:
                if func is not None:
                    problems.append(f"{func}({name!r}): {name} is a tag of {m.name}; "
                                    "functions take fields")
            else:
                problems.append(f"{name!r} is neither a field nor a tag of {m.name}")
    if fields_selected == 0:
        problems.append(f"selects no field of {m.name} (InfluxQL returns nothing)")
    if calls and len(calls) != len(q.items):
        problems.append("mixes functions and raw fields in SELECT")
    if q.group_time and len(calls) != len(q.items):
        problems.append("GROUP BY time() needs a function around every selected field")
    if q.fill is not None and not q.group_time:
        problems.append("fill() without GROUP BY time()")
    if not q.time_filter:
        problems.append("no $timeFilter in WHERE: the query ignores the dashboard's time range")
    for name, op, value in q.where:
        tag_everywhere(name, "WHERE")
        if name in m.tags and value.kind not in ("string", "regex"):
            problems.append(f"{name} {op} {value.text}: tag values are strings; quote them "
                            "'like this' or use a /regex/")
    for tag in q.group_tags:
        tag_everywhere(tag, "GROUP BY")
    return problems


# -------------------------------------------------------------------------------------- PromQL

_PROM_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<var>\$\{\w+\}|\$\w+)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+\b)
  | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?\b)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=])
  | (?P<punct>[(){}\[\],:])
""", re.VERBOSE)

_PROM_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "group", "stddev",
                                "stdvar", "topk", "bottomk", "quantile", "count_values"})
#: functions → whether they take a range vector (and which metric types, for rate-likes)
_PROM_FUNCTIONS: dict[str, str] = {
    "rate": "counter-range", "irate": "counter-range", "increase": "counter-range",
    "resets": "counter-range", "delta": "range", "idelta": "range", "deriv": "range",
    "changes": "range", "avg_over_time": "range", "min_over_time": "range",
    "max_over_time": "range", "sum_over_time": "range", "count_over_time": "range",
    "last_over_time": "range", "present_over_time": "range", "quantile_over_time": "range",
    "histogram_quantile": "histogram", "abs": "instant", "ceil": "instant", "floor": "instant",
    "round": "instant", "clamp_min": "instant", "clamp_max": "instant", "sgn": "instant",
    "absent": "instant", "timestamp": "instant", "sort": "instant", "sort_desc": "instant",
    "vector": "scalar", "scalar": "instant", "time": "none",
}
_PROM_BINOPS = frozenset({"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=",
                          "and", "or", "unless"})


@dataclass
class PromNode:
    """What an expression yields: its labels, and whether it is a range vector."""

    labels: frozenset[str]
    vector: bool = True
    is_range: bool = False
    metric: str | None = None  # set on a bare selector (or its range)
    counter_like: bool = False  # a counter, or a histogram's _bucket/_sum/_count


class _PromParser:
    def __init__(self, expr: str, problems: list[str]) -> None:
        self.toks: list[Tok] = []
        pos = 0
        while pos < len(expr):
            m = _PROM_TOKEN.match(expr, pos)
            if not m:
                raise QueryError(f"unexpected character {expr[pos]!r} at {pos}")
            pos = m.end()
            if m.lastgroup != "ws":
                self.toks.append(Tok(m.lastgroup or "", m.group()))
        self.toks.append(Tok("eof", ""))
        self.i = 0
        self.problems = problems

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind != "string":
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise QueryError(f"expected {text!r}, got {tok.text or 'end'!r}")

    def label_list(self) -> list[str]:
        self.expect("(")
        out: list[str] = []
        while not self.accept(")"):
            tok = self.take()
            if tok.kind != "ident":
                raise QueryError(f"expected a label name, got {tok.text or 'end'!r}")
            out.append(tok.text)
            if not self.accept(","):
                self.expect(")")
                break
        return out

    def parse(self) -> PromNode:
        node = self.expr()
        if self.peek().kind != "eof":
            raise QueryError(f"unexpected {self.peek().text!r}")
        return node

    def expr(self) -> PromNode:
        left = self.unary()
        while self.peek().text in _PROM_BINOPS and self.peek().kind in ("op", "ident"):
            op = self.take().text
            self.accept("bool")
            on: list[str] | None = None
            if self.peek().text in ("on", "ignoring"):
                matching = self.take().text
                names = self.label_list()
                if matching == "on":
                    on = names
            group: list[str] = []
            if self.peek().text in ("group_left", "group_right"):
                self.take()
                if self.peek().text == "(":
                    group = self.label_list()
            right = self.unary()
            for label in on or []:
                for side in (left, right):
                    if side.vector and label not in side.labels:
                        self.problems.append(f"on({label}): not a label of both sides of {op}")
            for label in group:
                if label not in right.labels | left.labels:
                    self.problems.append(f"group_left/right({label}): no such label")
            if not left.vector:
                left = PromNode(right.labels, right.vector)
            else:
                left = PromNode(left.labels | frozenset(group))
        return left

    def unary(self) -> PromNode:
        if self.peek().text in ("-", "+"):
            self.take()
        node = self.primary()
        if self.accept("["):
            tok = self.take()
            if tok.kind not in ("duration", "var"):
                raise QueryError(f"expected a range duration, got {tok.text!r}")
            if self.accept(":"):
                tok = self.take()
                if tok.kind not in ("duration", "var"):
                    raise QueryError(f"expected a subquery step, got {tok.text!r}")
            self.expect("]")
            node = PromNode(node.labels, True, True, node.metric, node.counter_like)
        if self.accept("offset") and self.take().kind not in ("duration", "var"):
            raise QueryError("offset takes a duration")
        return node

    def primary(self) -> PromNode:
        tok = self.take()
        if tok.kind == "number":
            return PromNode(frozenset(), vector=False)
        if tok.kind == "string":
            return PromNode(frozenset(), vector=False)
        if tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind != "ident":
            raise QueryError(f"unexpected {tok.text or 'end'!r}")
        name = tok.text
        if name in _PROM_AGGREGATIONS:
            return self.aggregation(name)
        if name in _PROM_FUNCTIONS:
            return self.function(name)
        if name in ("by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                    "offset", "and", "or", "unless"):
            raise QueryError(f"unexpected keyword {name!r}")
        if self.peek().text == "(":
            raise QueryError(f"unknown function {name!r}")
        return self.selector(name)

    def selector(self, name: str) -> PromNode:
        labels, counter_like = self.metric(name)
        if self.accept("{"):
            while not self.accept("}"):
                label = self.take()
                if label.kind != "ident":
                    raise QueryError(f"expected a label name, got {label.text or 'end'!r}")
                op = self.take()
                if op.text not in ("=", "!=", "=~", "!~"):
                    raise QueryError(f"expected a label matcher, got {op.text!r}")
                value = self.take()
                if value.kind != "string":
                    raise QueryError(f"{label.text}{op.text}: expected a quoted value")
                if labels is not None and label.text not in labels:
                    self.problems.append(f"{name}: no label {label.text!r}")
                literal = value.text[1:-1]
                family = re.sub(r"_(bucket|sum|count)$", "", name)
                allowed = PROM_LABEL_VALUES.get((family, label.text))
                if op.text in ("=", "!=") and allowed and not variables_in(literal) \
                        and literal not in allowed:
                    self.problems.append(f"{name}{{{label.text}{op.text}{value.text}}}: "
                                         f"{label.text} is one of {sorted(allowed)}")
                if not self.accept(","):
                    self.expect("}")
                    break
        return PromNode(labels or frozenset(), metric=name, counter_like=counter_like)

    def metric(self, name: str) -> tuple[frozenset[str] | None, bool]:
        """(labels, counter-like) of a series name; None when the name is unknown."""
        if name in PROM_METRICS:
            kind, labels = PROM_METRICS[name]
            if kind == "histogram":
                self.problems.append(f"{name} is a histogram: use {name}_bucket, _sum or _count")
            return labels | SCRAPE_LABELS, kind == "counter"
        base, _, suffix = name.rpartition("_")
        if base in PROM_METRICS and PROM_METRICS[base][0] == "histogram" \
                and suffix in ("bucket", "sum", "count"):
            extra = {"le"} if suffix == "bucket" else set()
            return PROM_METRICS[base][1] | SCRAPE_LABELS | extra, True
        if name == "up":  # Prometheus's own per-target series
            return SCRAPE_LABELS, False
        self.problems.append(f"unknown metric {name!r}")
        return None, False

    def aggregation(self, name: str) -> PromNode:
        grouping: tuple[str, list[str]] | None = None
        if self.peek().text in ("by", "without"):
            grouping = (self.take().text, self.label_list())
        self.expect("(")
        if name in ("topk", "bottomk", "quantile", "count_values"):
            self.unary()
            self.expect(",")
        inner = self.expr()
        self.expect(")")
        if self.peek().text in ("by", "without"):
            if grouping is not None:
                raise QueryError(f"{name}: two grouping clauses")
            grouping = (self.take().text, self.label_list())
        if inner.is_range or not inner.vector:
            self.problems.append(f"{name}() takes an instant vector")
        if grouping is None:
            return PromNode(frozenset())
        how, labels = grouping
        for label in labels:
            if label not in inner.labels:
                self.problems.append(f"{name} {how} ({label}): the series aggregated have no "
                                     f"label {label!r}")
        if how == "by":
            return PromNode(frozenset(labels))
        return PromNode(inner.labels - frozenset(labels))

    def function(self, name: str) -> PromNode:
        self.expect("(")
        args: list[PromNode] = []
        while not self.accept(")"):
            args.append(self.expr())
            if not self.accept(","):
                self.expect(")")
                break
        how = _PROM_FUNCTIONS[name]
        if how == "none":
            if args:
                raise QueryError(f"{name}() takes no arguments")
            return PromNode(frozenset(), vector=False)
        if not args:
            raise QueryError(f"{name}() needs an argument")
        if how == "histogram":
            if len(args) != 2 or args[0].vector:
                raise QueryError("histogram_quantile(φ, buckets)")
            if "le" not in args[1].labels:
                self.problems.append("histogram_quantile() over series without 'le': aggregate "
                                     "the _bucket series by (le, ...)")
            return PromNode(args[1].labels - {"le"})
        arg = args[-1] if name in ("quantile_over_time",) else args[0]
        if how in ("range", "counter-range"):
            if not arg.is_range:
                self.problems.append(f"{name}() takes a range vector, e.g. x[$__rate_interval]")
            if how == "counter-range" and arg.metric and not arg.counter_like:
                self.problems.append(f"{name}({arg.metric}): not a counter")
            return PromNode(arg.labels)
        if how == "scalar":
            return PromNode(frozenset())
        if arg.is_range:
            self.problems.append(f"{name}() takes an instant vector")
        return PromNode(arg.labels, arg.vector)


def check_promql(expr: str, variables: frozenset[str] = frozenset()) -> list[str]:
    """Problems with one PromQL expression against the daemon's metrics (empty: none)."""
    problems = [f"${v} is not a dashboard variable" for v in sorted(variables_in(expr))
                if v not in variables and v not in GRAFANA_VARIABLES]
    try:
        _PromParser(expr, problems).parse()
    except QueryError as exc:
        return [*problems, f"not understood: {exc}"]
    return problems


def check_prometheus_variable(query: str, variables: frozenset[str] = frozenset()) -> list[str]:
    """Problems with a Prometheus template variable query: label_values(selector, label)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.DOTALL)
    if not m:
        return ["not understood: a Prometheus variable must be label_values(selector, label)"]
    problems = check_promql(m.group(1), variables)
    try:
        node = _PromParser(m.group(1), []).parse()
    except QueryError:
        return problems
    if m.group(2) not in node.labels:
        problems.append(f"label_values: the series have no label {m.group(2)!r}")
    return problems


# -------------------------------------------------------------------------- dashboards, queries


def _provisioned() -> dict[str, str]:
    """Provisioned datasources: uid → type."""
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return {ds["uid"]: ds["type"] for ds in doc["datasources"]}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


@dataclass
class Query:
    where: str  # dashboard file, panel or variable, refId
    language: str  # "influxql", "promql" or "prometheus-variable"
    text: str
    variables: frozenset[str]


def _variable_query(var: dict[str, Any]) -> str:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    assert isinstance(query, str) and query.strip(), f"variable {var['name']}: no query"
    return query


def collect_queries(path: Path) -> tuple[list[Query], list[str]]:
    """Every query of a dashboard, and problems with where queries are (empty: none).

    Every object in the JSON with a query-like key must be a panel target or a template
    variable, so a query in an unexpected place (an annotation, a library panel) fails.
    """
    dashboard = _load(path)
    provisioned = _provisioned()
    problems: list[str] = []
    queries: list[Query] = []
    seen: set[int] = set()
    templating = dashboard.get("templating", {}).get("list", [])
    names = frozenset(v["name"] for v in templating)

    def datasource_type(where: str, ds: Any) -> str | None:
        if not isinstance(ds, dict) or ds.get("uid") not in provisioned:
            problems.append(f"{where}: datasource {ds!r} is not a provisioned uid "
                            f"({sorted(provisioned)})")
            return None
        if ds.get("type") != provisioned[ds["uid"]]:
            problems.append(f"{where}: datasource {ds['uid']} has type "
                            f"{provisioned[ds['uid']]}, not {ds.get('type')}")
        return provisioned[ds["uid"]]

    for var in templating:
        where = f"{path.name} variable ${var['name']}"
        seen.add(id(var))
        if isinstance(var.get("query"), dict):
            seen.add(id(var["query"]))
        if var.get("type") != "query":
            problems.append(f"{where}: type {var.get('type')!r}; the checker knows 'query'")
            continue
        kind = datasource_type(where, var.get("datasource"))
        language = {"influxdb": "influxql", "prometheus": "prometheus-variable"}.get(kind or "")
        if language:
            queries.append(Query(where, language, _variable_query(var), names))
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            seen.add(id(target))
            where = f"{path.name} panel {panel.get('title')!r} {target.get('refId')}"
            kind = datasource_type(where, target.get("datasource"))
            if kind == "influxdb":
                if target.get("rawQuery") is not True or not target.get("query"):
                    problems.append(f"{where}: InfluxDB targets must be raw queries "
                                    "(rawQuery: true, query: ...) so they can be checked")
                    continue
                queries.append(Query(where, "influxql", target["query"], names))
            elif kind == "prometheus":
                if not target.get("expr"):
                    problems.append(f"{where}: no expr")
                    continue
                queries.append(Query(where, "promql", target["expr"], names))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("builtIn") != 1:
            problems.append(f"{path.name}: annotation {annotation.get('name')!r} is not checked"
                            "; teach collect_queries about it")
        seen.add(id(annotation))

    def sweep(node: Any) -> None:
        if isinstance(node, dict):
            keys = {"query", "expr", "rawSql", "rawQuery"} & node.keys()
            if keys and id(node) not in seen:
                problems.append(f"{path.name}: a query outside panel targets and variables: "
                                f"{node}")
            for value in node.values():
                sweep(value)
        elif isinstance(node, list):
            for value in node:
                sweep(value)

    sweep(dashboard)
    return queries, problems


def check_query(q: Query) -> list[str]:
    """Problems with one collected query."""
    if q.language == "influxql":
        return check_influxql(q.text, q.variables)
    if q.language == "promql":
        return check_promql(q.text, q.variables)
    return check_prometheus_variable(q.text, q.variables)


def _all_queries() -> list[Query]:
    out: list[Query] = []
    for path in DASHBOARDS:
        out += collect_queries(path)[0]
    return out


# ------------------------------------------------------------------------------------- tests


def test_there_are_dashboards_and_both_languages_are_checked() -> None:
    assert {p.name for p in DASHBOARDS} >= {"park-overview.json", "gateway-health.json"}
    languages = {q.language for q in _all_queries()}
    assert languages == {"influxql", "promql", "prometheus-variable"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_names_only_what_the_daemon_writes(path: Path) -> None:
    queries, problems = collect_queries(path)
    assert queries
    for q in queries:
        problems += [f"{q.where}: {p}\n    {q.text}" for p in check_query(q)]
    assert not problems, "\n".join(problems)


def test_every_measurement_and_every_metric_is_on_a_dashboard() -> None:
    measurements: set[str] = set()
    text = ""
    for q in _all_queries():
        if q.language == "influxql":
            measurements.update(parse_influxql(q.text).measurements)
        else:
            text += q.text + "\n"
    hidden = set(MEASUREMENTS) - measurements
    assert not hidden, f"measurements on no dashboard: {sorted(hidden)}"
    unused = {name for name in PROM_METRICS if not re.search(rf"\b{name}", text)}
    assert not unused, f"metrics on no dashboard: {sorted(unused)}"


def test_every_exported_metric_is_known_to_the_checker() -> None:
    assert set(PROM_METRICS) == set(METRICS)
    assert {kind for kind, _ in PROM_METRICS.values()} <= {"counter", "gauge", "histogram"}
    for name, (kind, _) in PROM_METRICS.items():
        assert name.endswith("_total") == (kind == "counter"), name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_valid_grafana_models(path: Path) -> None:
    dashboard = _load(path)
    for key in ("uid", "title", "panels", "schemaVersion", "templating", "time"):
        assert key in dashboard, f"{path.name}: no {key}"
    assert dashboard["schemaVersion"] >= 36
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard.get("id") is None, "leave id out: Grafana assigns it"
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    for panel in panels:
        where = f"{path.name} panel {panel.get('id')} {panel.get('title')!r}"
        assert panel.get("type") and panel.get("title"), where
        grid = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= grid.keys(), f"{where}: gridPos"
        assert grid["x"] + grid["w"] <= 24, f"{where}: wider than the dashboard"
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets, f"{where}: no targets"
        refs = [t.get("refId") for t in targets]
        assert all(refs) and len(refs) == len(set(refs)), f"{where}: refIds {refs}"
        assert panel.get("datasource") in [t["datasource"] for t in targets], where
        if panel.get("repeat"):
            names = {v["name"] for v in dashboard["templating"]["list"]}
            assert panel["repeat"] in names, f"{where}: repeats over an unknown variable"
    _, problems = collect_queries(path)
    assert not problems, "\n".join(problems)
    uids = [_load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_provisioning_files() -> None:
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    by_uid = {ds["uid"]: ds for ds in doc["datasources"]}
    assert set(by_uid) == {"parkwatch-influx", "parkwatch-prometheus"}
    influx, prom = by_uid["parkwatch-influx"], by_uid["parkwatch-prometheus"]
    assert influx["type"] == "influxdb" and prom["type"] == "prometheus"
    assert influx["jsonData"]["version"] == "InfluxQL"
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    # nothing secret or site-specific in the repository: it all comes from the environment
    assert re.fullmatch(r"Token \$\{\w+\}", influx["secureJsonData"]["httpHeaderValue1"])
    for value in (influx["url"], influx["jsonData"]["dbName"], prom["url"]):
        assert re.fullmatch(r"\$\{\w+\}", value), value
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert [p["type"] for p in providers] == ["file"]
    assert providers[0]["options"]["path"].startswith("/")


# --------------------------------------------------------------- the checker catches mistakes

GOOD_INFLUX = ('SELECT mean("load_pct") FROM "floor_load" WHERE "park" =~ /^$park$/ AND '
               '$timeFilter GROUP BY time($__interval), "group" fill(null)')


@pytest.mark.parametrize(("query", "expected"), [
    (GOOD_INFLUX.replace("load_pct", "load_percent"),
     "'load_percent' is neither a field nor a tag of floor_load"),
    (GOOD_INFLUX.replace('"group" fill', '"groupe" fill'),
     "GROUP BY 'groupe' is not a tag of floor_load"),
    (GOOD_INFLUX.replace('"park" =~', '"tenant" =~'), "WHERE 'tenant' is not a tag"),
    (GOOD_INFLUX.replace('"park" =~', '"cells" =~'), "'cells' is not a tag of floor_load "
     "(a field"),
    (GOOD_INFLUX.replace('"floor_load"', '"floor_loads"'), "unknown measurement 'floor_loads'"),
    (GOOD_INFLUX.replace("mean(", "meen("), "not understood: unknown function 'meen'"),
    (GOOD_INFLUX.replace(" fill(null)", " fill(null"), "not understood"),
    (GOOD_INFLUX.replace('"group"', "group"), "not understood"),
    (GOOD_INFLUX.replace("SELECT", "select"), "not understood: write keywords in capitals"),
    (GOOD_INFLUX.replace("FROM", "INTO \"x\" FROM"), "not understood"),
    (GOOD_INFLUX + " OFFSET 1", "not understood"),
    (GOOD_INFLUX.replace('"floor_load"', '/floor_.*/'), "not understood"),
    (GOOD_INFLUX.replace('"floor_load"', '(SELECT "load_pct" FROM "floor_load")'),
     "not understood"),
    ('SELECT * FROM "floor_load" WHERE $timeFilter', "not understood"),
    (GOOD_INFLUX.replace(" AND $timeFilter", ""), "no $timeFilter"),
    (GOOD_INFLUX.replace("$park", "$campus"), "$campus is not a dashboard variable"),
    (GOOD_INFLUX.replace('"park" =~ /^$park$/', "\"floor\" = 2"), "tag values are strings"),
    ('SELECT mean("message") FROM "alarm_event" WHERE $timeFilter GROUP BY time(1m)',
     "mean('message'): message is a string field of alarm_event"),
    ('SELECT last("hazard") FROM "alarm_event" WHERE $timeFilter',
     "last('hazard'): hazard is a tag"),
    ('SELECT "hazard" FROM "alarm_event" WHERE $timeFilter', "selects no field"),
    ('SELECT "message" FROM "alarm_event" WHERE $timeFilter GROUP BY time(1m)',
     "GROUP BY time() needs a function"),
    ('SELECT "message", count("seq") FROM "alarm_event" WHERE $timeFilter', "mixes functions"),
    ('SELECT "message" FROM "alarm_event" WHERE $timeFilter fill(0)', "fill() without"),
    ('SELECT non_negative_derivative("readings_accepted", 1s) FROM "gateway" WHERE '
     "$timeFilter GROUP BY time(1m)", "must wrap an aggregate"),
    ('SHOW TAG VALUES FROM "water_level" WITH KEY = "group"',
     "KEY 'group' is not a tag of water_level"),
    ('SHOW TAG VALUES FROM "water_level", "gateway" WITH KEY = "building"',
     "KEY 'building' is not a tag of gateway"),
    ('SHOW TAG VALUES FROM "water_level" WITH KEY = "sensor" WHERE "kind" = \'x\'',
     "WHERE 'kind' is not a tag of water_level"),
    ("SHOW FIELD KEYS FROM \"water_level\"", "not understood"),
])
def test_influxql_checker_reports_mistakes(query: str, expected: str) -> None:
    problems = check_influxql(query, frozenset({"park"}))
    assert any(expected in p for p in problems), problems


def test_influxql_checker_passes_a_good_query() -> None:
    assert check_influxql(GOOD_INFLUX, frozenset({"park"})) == []


GOOD_PROM = ('histogram_quantile(0.99, sum by (instance, le, target) (rate('
             'parkwatch_delivery_latency_seconds_bucket{instance=~"$instance"}'
             '[$__rate_interval])))')


@pytest.mark.parametrize(("expr", "expected"), [
    (GOOD_PROM.replace("latency", "latancy"),
     "unknown metric 'parkwatch_delivery_latancy_seconds_bucket'"),
    (GOOD_PROM.replace("le, target", "le, tenant"), "have no label 'tenant'"),
    (GOOD_PROM.replace("instance=~", "slave=~"), "no label 'slave'"),
    (GOOD_PROM.replace("le, ", ""), "without 'le'"),
    (GOOD_PROM.replace("_bucket", ""), "is a histogram"),
    (GOOD_PROM.replace("[$__rate_interval]", ""), "takes a range vector"),
    (GOOD_PROM.replace("$instance", "$gw"), "$gw is not a dashboard variable"),
    (GOOD_PROM.replace("rate(", "rote("), "not understood: unknown function 'rote'"),
    (GOOD_PROM[:-1], "not understood"),
    ("rate(parkwatch_outbox_pending[5m])", "not a counter"),
    ('sum(parkwatch_open_alarms{state="open"})', "state is one of"),
    ('{__name__="parkwatch_info"}', "not understood"),
])
def test_promql_checker_reports_mistakes(expr: str, expected: str) -> None:
    problems = check_promql(expr, frozenset({"instance"}))
    assert any(expected in p for p in problems), problems


def test_promql_checker_passes_good_expressions() -> None:
    assert check_promql(GOOD_PROM, frozenset({"instance"})) == []
    assert check_promql("time() - parkwatch_start_time_seconds") == []
    assert check_prometheus_variable('label_values(parkwatch_info{park=~"$park"}, gateway)',
                                     frozenset({"park"})) == []
    assert check_prometheus_variable("label_values(parkwatch_info, tenant)") == [
        "label_values: the series have no label 'tenant'"]
    assert check_prometheus_variable("query_result(up)")[0].startswith("not understood")


def test_dashboard_checks_report_misplaced_queries(tmp_path: Path) -> None:
    dashboard = _load(GRAFANA / "dashboards" / "park-overview.json")
    panel = next(p for p in dashboard["panels"] if p.get("targets"))
    panel["targets"].append({"refId": "Z", "datasource": {"type": "influxdb", "uid": "other"},
                             "rawQuery": True, "query": GOOD_INFLUX})
    panel["targets"].append({"refId": "Y", "datasource": {"type": "influxdb",
                                                          "uid": "parkwatch-influx"},
                             "measurement": "floor_load", "select": [[]]})
    dashboard["annotations"]["list"].append({"name": "raised", "query": GOOD_INFLUX})
    panel["options"]["hidden"] = {"expr": "up"}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(dashboard), encoding="utf-8")
    _, problems = collect_queries(path)
    text = "\n".join(problems)
    assert "datasource {'type': 'influxdb', 'uid': 'other'} is not a provisioned uid" in text
    assert "Y: InfluxDB targets must be raw queries" in text
    assert "annotation 'raised' is not checked" in text
    assert "a query outside panel targets and variables: {'expr': 'up'}" in text
