"""Draw the board with rich: gateway line, alarm table, the selected alarm's details, footer.

A pure function of the board and a :class:`Frame` (what the app knows about the connection and
the operator), so the tests render it on a recording console and read the text back.  Colours:
critical red, warning yellow, info cyan; an unacknowledged fire alarm's row is white on red
until someone acknowledges it; the selected row is reversed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from parkwatch.alarms.routing import hazard
from parkwatch.cli.ages import format_age
from parkwatch.console.board import SEVERITY_ORDER, Board, OpenAlarm, place

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
GATEWAY_STYLE = {"online": ("●", "green"), "stale": ("◌", "bold yellow"),
                 "offline": ("○", "bold red")}
FIRE_ROW = "bold white on red"
KEY_HELP = "↑/↓ or j/k select · PgUp/PgDn · a acknowledge · q quit"
#: lines around the table: title, gateways, table header, "rows … of …", detail, 5 footer lines
CHROME_LINES = 10


@dataclass(frozen=True)
class Frame:
    """What the app knows beyond the board: who acknowledges, and the broker connection."""

    operator: str | None         # None: read-only
    broker: str                  # "host:port"
    connected: bool
    connection: str              # "connected", "connecting…", "disconnected, retrying"
    keys: bool = True            # False when stdin is not a terminal
    notice: str | None = None    # the latest warning of the MQTT connection, if any


def _title(board: Board) -> Text:
    rows = board.rows()
    text = Text("parkwatch watch", style="bold")
    by_sev = [f"{n} {s}" for s in SEVERITY_ORDER if (n := sum(a.severity == s for a in rows))]
    unacked = sum(not a.acknowledged for a in rows)
    parks = len({a.park for a in rows})
    text.append(f" · {len(rows)} open alarm(s)")
    if rows:
        text.append(f" ({', '.join(by_sev)}) in {parks} park(s), ")
        text.append(f"{unacked} unacknowledged", style="bold" if unacked else "")
    return text


def _gateways(board: Board, now: float) -> Text:
    """One line: how many gateways are online, then each, troubles first (with many parks the
    line is cut at the right edge, so the online ones are what gets cut)."""
    views = board.gateway_views(now)
    online = sum(view == "online" for _, view in views)
    text = Text(f"gateways {online}/{len(views)} online: " if views else "gateways: ",
                style="bold", no_wrap=True, overflow="ellipsis")
    if not views:
        return text.append("no gateway status heard yet", style="dim")
    rank = {"offline": 0, "stale": 1, "online": 3}
    for i, (g, view) in enumerate(sorted(views, key=lambda v: (rank.get(v[1], 2), v[0].park))):
        if i:
            text.append(" · ", style="dim")
        mark, style = GATEWAY_STYLE.get(view, ("?", "magenta"))
        text.append(f"{g.park} {mark} {view}", style=style)
        if view == "offline":
            text.append(f" ({g.reason or 'last will: connection lost'})", style="red")
        else:
            text.append(f" {format_age(now - g.heard_at)}", style="dim")
    return text


def _state(board: Board, a: OpenAlarm) -> Text:
    text = Text("ACTIVE" if a.active else "cleared", style="bold" if a.active else "dim")
    if a.key in board.pending:
        text.append(", ack pending…", style="bold magenta")
    elif a.acknowledged:
        text.append(f", acked by {a.event.get('acked_by') or '?'}", style="green")
    else:
        text.append(", UNACKED", style="bold")
    if a.event.get("drill"):
        text.append(" DRILL", style="bold blue")
    return text


def _row(board: Board, a: OpenAlarm, now: float) -> tuple[list[RenderableType], str]:
    e = a.event
    sensor = e.get("sensor_id") or ("zone" if e.get("zone") else "floor")
    try:
        kind = f"{hazard(e)} · {e.get('rule') or '?'}"
    except (KeyError, TypeError):
        kind = str(e.get("rule") or "?")
    tenants = e.get("tenants") or []
    age = format_age(None if a.raised_at is None else now - a.raised_at)
    level = int(e.get("escalation_level") or 0) if isinstance(
        e.get("escalation_level"), int) else 0
    selected = a.key == board.selected
    alarming = a.is_fire and not a.acknowledged  # the whole row is red: no red text in it
    cells: list[RenderableType] = [
        "▶" if selected else " ",
        a.severity if alarming else Text(a.severity,
                                         style=SEVERITY_STYLE.get(a.severity, "magenta")),
        a.park, place(e), str(sensor), kind,
        ", ".join(str(t) for t in tenants) or "-",
        _state(board, a),
        Text(str(level), style="bold yellow" if level else "dim"),
        age, a.alarm_id[-6:],
    ]
    style = FIRE_ROW if alarming else ""
    if selected:
        style = f"{style} reverse".strip()
    return cells, style


def _window(rows: list[OpenAlarm], selected: int, room: int) -> tuple[int, int]:
    """The [start, end) slice of rows to show in `room` lines, keeping the selection visible."""
    if len(rows) <= room:
        return 0, len(rows)
    room = max(1, room)
    start = max(0, min(selected - room // 2, len(rows) - room))
    return start, start + room


def _table(board: Board, now: float, room: int) -> tuple[Table, Text | None]:
    table = Table(box=None, pad_edge=False, expand=True, header_style="bold underline")
    for name, kwargs in (("", {"width": 1}), ("SEVERITY", {}), ("PARK", {}),
                         ("PLACE", {}), ("SENSOR", {}), ("KIND", {}),
                         ("TENANTS", {"ratio": 1, "min_width": 8}), ("STATE", {}),
                         ("ESC", {"justify": "right"}), ("AGE", {"justify": "right"}),
                         ("ID", {})):
        table.add_column(name, no_wrap=True, overflow="ellipsis", **kwargs)
    rows = board.rows()
    selected = next((i for i, a in enumerate(rows) if a.key == board.selected), 0)
    start, end = _window(rows, selected, room)
    for a in rows[start:end]:
        cells, style = _row(board, a, now)
        table.add_row(*cells, style=style)
    more = None
    if start or end < len(rows):
        more = Text(f"rows {start + 1}–{end} of {len(rows)}"
                    f"{f' · {start} above' if start else ''}"
                    f"{f' · {len(rows) - end} below' if end < len(rows) else ''}", style="dim")
    return table, more


def _detail(board: Board) -> Text:
    a = board.selected_alarm()
    if a is None:
        return Text("no open alarms", style="dim")
    e = a.event
    text = Text("▶ ", style="bold", no_wrap=True, overflow="ellipsis")
    text.append(str(e.get("message") or "(no message)"), style="bold")
    value, threshold, unit = e.get("value"), e.get("threshold"), e.get("unit")
    if value is not None or threshold is not None:
        text.append(f" · value {value if value is not None else '-'}"
                    f"{(' ' + unit) if unit and value is not None else ''}"
                    f" / limit {threshold if threshold is not None else '-'}")
    text.append(f" · {a.park}/{a.alarm_id} · last change: {e.get('event')} (seq {a.seq})"
                f" · raised at {e.get('raised_at') or '?'}", style="dim")
    return text


def _footer(board: Board, frame: Frame) -> list[Text]:
    who = Text()
    if frame.operator:
        who.append("operator: ", style="bold").append(frame.operator, style="bold green")
    else:
        who.append("READ-ONLY", style="bold yellow").append(
            ": start with --operator NAME to acknowledge")
    who.append(f" · broker {frame.broker}: ")
    who.append(frame.connection, style="green" if frame.connected else "bold red")
    lines = [who]
    if frame.notice and not frame.connected:
        lines.append(Text(f"  {frame.notice}", style="red"))
    if board.last_ack is not None:
        lines.append(Text(f"ack: {board.last_ack.text}",
                          style="green" if board.last_ack.ok else "bold red"))
    if board.malformed:
        n = sum(board.malformed.values())
        lines.append(Text(f"{n} malformed message(s) ignored (last: {board.last_malformed})",
                          style="yellow"))
    keys = KEY_HELP if frame.keys else "keys off: stdin is not a terminal · Ctrl-C quits"
    if not frame.operator:
        keys = keys.replace(" · a acknowledge", "")
    lines.append(Text(keys, style="dim"))
    for line in lines:  # one line each, whatever the width: the table keeps its room
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


def render(board: Board, now: float, frame: Frame, height: int = 40) -> RenderableType:
    """The whole screen for a terminal of `height` lines."""
    table, more = _table(board, now, max(3, height - CHROME_LINES))
    parts: list[RenderableType] = [_title(board), _gateways(board, now), table]
    if more is not None:
        parts.append(more)
    parts.append(_detail(board))
    parts.extend(_footer(board, frame))
    return Group(*parts)
