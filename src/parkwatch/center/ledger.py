"""The hazard ledger (隐患台账): every ticket a user may see as one row, and each tenant's
record (found, overdue, closed on time) for the 厂中厂 star ratings and points schemes; as CSV
and as an Excel workbook.

A row's columns (:data:`COLUMNS`) are the ledger's: the same in the CSV, the workbook and the
docs (docs/center.md, "The ledger").  Times are local, ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from parkwatch.center.ticketwords import landlord, word

#: (key, Chinese header, English header)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ticket_id", "隐患编号", "ticket"),
    ("park", "园区", "park"),
    ("building", "楼栋", "building"),
    ("floor", "楼层", "floor"),
    ("zone", "区域", "zone"),
    ("responsible", "责任方", "responsible"),
    ("category", "类别", "category"),
    ("level", "等级", "level"),
    ("source", "来源", "source"),
    ("alarm_id", "报警编号", "alarm"),
    ("description", "隐患描述", "description"),
    ("state", "状态", "state"),
    ("reported_by", "报告人", "reported by"),
    ("reported_at", "发现时间", "reported at"),
    ("deadline_at", "整改期限", "deadline"),
    ("closed_at", "销号时间", "closed at"),
    ("on_time", "按期整改", "on time"),
    ("overdue", "逾期", "overdue"),
    ("escalation_level", "督办级别", "escalation level"),
)
#: (key, Chinese header, English header) of a tenant's record
RECORD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("park", "园区", "park"),
    ("responsible", "责任方", "responsible"),
    ("found", "发现隐患", "found"),
    ("open", "未销号", "open"),
    ("overdue", "逾期（含逾期后整改）", "overdue (also closed late)"),
    ("closed_on_time", "按期整改销号", "closed on time"),
    ("closed_late", "逾期整改销号", "closed late"),
    ("on_time_rate", "按期整改率", "on-time rate"),
)
_YES_NO = {"zh-CN": ("是", "否"), "en": ("yes", "no")}


def _yes(lang: str, yes: bool) -> str:
    return _YES_NO.get(lang, _YES_NO["zh-CN"])[0 if yes else 1]


def _local(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def late(ticket: dict[str, Any], now: float) -> bool:
    """Past its deadline: closed after it, or still open after it."""
    end = ticket["closed_at"] if ticket["closed_at"] is not None else now
    return bool(end > ticket["deadline_at"])


def rows(tickets: list[dict[str, Any]], now: float, lang: str) -> list[dict[str, Any]]:
    """The ledger's rows of ``tickets``, in their order."""
    out = []
    for t in tickets:
        closed = t["closed_at"] is not None
        out.append({
            **{k: t.get(k) or "" for k in ("ticket_id", "park", "building", "floor", "zone",
                                           "alarm_id", "description", "reported_by")},
            "responsible": t["tenant"] or landlord(lang),
            **{k: word(lang, k, t[k]) for k in ("category", "level", "source", "state")},
            "reported_at": _local(t["reported_at"]), "deadline_at": _local(t["deadline_at"]),
            "closed_at": _local(t["closed_at"]),
            "on_time": _yes(lang, not late(t, now)) if closed else "",
            "overdue": _yes(lang, not closed and late(t, now)),
            "escalation_level": t["escalation_level"],
        })
    return out


def records(tickets: list[dict[str, Any]], now: float, lang: str) -> list[dict[str, Any]]:
    """Each responsible party's record, by park then party (the landlord's after the
    tenants')."""
    by: dict[tuple[str, str | None], dict[str, Any]] = {}
    for t in tickets:
        r = by.setdefault((t["park"], t["tenant"]), {
            "park": t["park"], "responsible": t["tenant"] or landlord(lang),
            "found": 0, "open": 0, "overdue": 0, "closed_on_time": 0, "closed_late": 0})
        r["found"] += 1
        is_late = late(t, now)
        r["overdue"] += is_late
        if t["closed_at"] is None:
            r["open"] += 1
        elif is_late:
            r["closed_late"] += 1
        else:
            r["closed_on_time"] += 1
    for r in by.values():
        closed = r["closed_on_time"] + r["closed_late"]
        r["on_time_rate"] = f"{100 * r['closed_on_time'] / closed:.0f}%" if closed else ""
    return [by[k] for k in sorted(by, key=lambda k: (k[0], k[1] is None, k[1] or ""))]


def _headers(columns: tuple[tuple[str, str, str], ...], lang: str) -> list[str]:
    return [zh if lang == "zh-CN" else en for _k, zh, en in columns]


def csv_bytes(ledger: list[dict[str, Any]], lang: str) -> bytes:
    """UTF-8 with a byte-order mark (Excel then reads the Chinese right), CRLF lines."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(_headers(COLUMNS, lang))
    w.writerows([[r[k] for k, _zh, _en in COLUMNS] for r in ledger])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def xlsx_bytes(ledger: list[dict[str, Any]], recs: list[dict[str, Any]], lang: str) -> bytes:
    """A workbook of two sheets: the ledger and the parties' records, each with a bold,
    frozen header row and columns wide enough to read."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    sheets = (("隐患台账" if lang == "zh-CN" else "ledger", COLUMNS, ledger),
              ("责任方记录" if lang == "zh-CN" else "records", RECORD_COLUMNS, recs))
    for i, (title, columns, data) in enumerate(sheets):
        ws = wb.active if i == 0 else wb.create_sheet()
        assert ws is not None
        ws.title = title
        ws.append(_headers(columns, lang))
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for r in data:
            ws.append([r[k] for k, _zh, _en in columns])
        ws.freeze_panes = "A2"
        for col, (key, zh, en) in zip(ws.iter_cols(min_row=1, max_row=1), columns,
                                      strict=True):
            longest = max([len(str(r[key])) for r in data] + [len(zh if lang == "zh-CN" else en)])
            ws.column_dimensions[col[0].column_letter].width = min(60, 4 + 1.6 * longest)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
