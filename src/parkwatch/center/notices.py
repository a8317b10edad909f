"""Overdue hazard tickets told to people: who (:func:`notices_of`: the responsible party first,
then the landlord, then the park's grid officers, as ``tickets.notify.recipients`` name them),
what (:func:`notice_text`, in Chinese) and how (:class:`NoticeCourier`: the chat groups'
robots and webhooks of ``tickets.notify.targets``).

The vendors' rules (DingTalk's 加签 URL, Feishu's signed body, the webhook's HMAC header, the
answers that mean success) are the gateway's notification channels' own
(:mod:`parkwatch.alarms.channels`), used here as they are: the same robots take a gateway's
alarms and a center's escalations alike.  The notices wait in the center's database (an
outbox) until delivered: a robot that is down, or a center that restarts, delays a notice and
does not lose it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from parkwatch.alarms.channels.dingtalk import signed_url
from parkwatch.alarms.channels.feishu import sign as feishu_sign
from parkwatch.alarms.channels.httppost import post, post_json
from parkwatch.alarms.channels.robottext import cut
from parkwatch.alarms.channels.webhook import SIGNATURE_HEADER
from parkwatch.alarms.channels.webhook import sign as webhook_sign
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.alarms.senders import DeliveryError
from parkwatch.center.noticeconfig import NoticeConfig, NoticeTarget, Recipient
from parkwatch.center.store import CenterStore, StoreError
from parkwatch.center.ticketwords import landlord, word

log = logging.getLogger("parkwatch.center")
#: the notices go to Chinese officers: in Chinese
ZH = "zh-CN"

#: the levels' parties: who an escalation to that level tells
LEVEL_PARTY = {1: "responsible", 2: "landlord", 3: "grid"}
_LEVEL_ZH = {1: "第一级：责任方", 2: "第二级：房东", 3: "第三级：网格员"}
#: a claim lasts this long: a center that dies while sending leaves the notice to another
LEASE_S = 120.0
#: pauses between attempts of one notice, then the last one again and again
BACKOFF_S = (10.0, 30.0, 60.0, 300.0, 900.0)
#: the robots take at most this much text (WeCom's 2,048 bytes is the least)
MAX_TEXT_BYTES = 2000


def recipients_for(cfg: NoticeConfig, ticket: dict[str, Any], level: int) -> list[Recipient]:
    """Who an escalation of ``ticket`` to ``level`` tells."""
    park, building, tenant = ticket["park"], ticket.get("building"), ticket.get("tenant")

    def landlords() -> list[Recipient]:
        return [r for r in cfg.recipients if r.party == "landlord" and r.park == park
                and (not r.buildings or building in r.buildings)]

    if level <= 1:
        if tenant is None:  # a shared part: the landlord answers for it
            return landlords()
        return [r for r in cfg.recipients if r.party == "tenant" and r.park == park
                and r.tenant == tenant]
    if level == 2:
        return landlords()
    return [r for r in cfg.recipients if r.party == "grid" and r.park == park]


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M")


def notice_text(ticket: dict[str, Any], level: int, now: float) -> str:
    """The message of an escalation, in Chinese, for a chat group."""
    where = " ".join(str(p) for p in (ticket.get("building"), ticket.get("floor"),
                                      ticket.get("zone")) if p)
    late_h = max(0.0, (now - ticket["deadline_at"]) / 3600.0)
    lines = [f"【隐患逾期督办·{_LEVEL_ZH.get(level, f'第{level}级')}】",
             f"园区：{ticket['park']}  位置：{where or '—'}",
             f"责任方：{ticket.get('tenant') or landlord(ZH)}",
             f"类别：{word(ZH, 'category', ticket['category'])}  "
             f"等级：{word(ZH, 'level', ticket['level'])}",
             f"隐患：{ticket['description']}",
             f"整改期限：{_local(ticket['deadline_at'])}（已逾期 {late_h:.0f} 小时）",
             "请立即整改并在指挥中心提交复查。",
             f"隐患编号：{ticket['ticket_id']}"]
    return cut("\n".join(lines), MAX_TEXT_BYTES)


def notices_of(cfg: NoticeConfig) -> Callable[[dict[str, Any], float], list[dict[str, Any]]]:
    """The notices an escalation makes (rows of the outbox), for
    :meth:`~parkwatch.center.store.CenterStore.escalate_overdue`."""

    def make(ticket: dict[str, Any], now: float) -> list[dict[str, Any]]:
        level = ticket["escalation_level"]
        found = recipients_for(cfg, ticket, level)
        if not found:
            log.warning("center: hazard ticket %s escalated to level %d (%s) tells nobody: "
                        "no tickets.notify.recipients for it", ticket["ticket_id"], level,
                        LEVEL_PARTY.get(level, "?"))
        text = notice_text(ticket, level, now)
        return [{"notice_id": new_alarm_id(now), "ticket_id": ticket["ticket_id"],
                 "level": level, "party": r.party, "target": r.target, "text": text,
                 "state": "pending", "attempts": 0, "next_at": now,
                 "expires_at": now + cfg.retry_for_s, "created_at": now}
                for r in {r.target: r for r in found}.values()]  # one per target

    return make


def send(target: NoticeTarget, notice: dict[str, Any]) -> None:
    """Deliver one notice to its robot or webhook; DeliveryError saying why not.  A robot's
    signature carries the time of sending, which the vendor checks against its own clock."""
    url, secret, text = target.url.get_secret_value(), target.secret(), notice["text"]
    now = time.time()
    if target.type == "webhook":
        data = json.dumps({"schema": "parkwatch.ticket-notice/1", **{k: notice[k] for k in (
            "notice_id", "ticket_id", "level", "party", "text")}}, ensure_ascii=False).encode()
        post(url, data, target.timeout_s,
             {SIGNATURE_HEADER: webhook_sign(secret, data)} if secret else None)
        return
    if target.type == "feishu":
        doc: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if secret:
            ts = str(int(now))
            doc = {"timestamp": ts, "sign": feishu_sign(secret, ts), **doc}
        answer = post_json(url, json.dumps(doc, ensure_ascii=False).encode(), target.timeout_s)
        code = answer.get("code", answer.get("StatusCode"))
        if code != 0:
            raise DeliveryError(f"Feishu code {code}: {answer.get('msg')}")
        return
    if target.type == "dingtalk" and secret:
        url = signed_url(url, secret, int(now * 1000))
    answer = post_json(url, json.dumps({"msgtype": "text", "text": {"content": text}},
                                       ensure_ascii=False).encode(), target.timeout_s)
    if answer.get("errcode") != 0:
        raise DeliveryError(f"{target.type} errcode {answer.get('errcode')}: "
                            f"{answer.get('errmsg')}")


class NoticeCourier:
    """Sends the due notices, on a thread of its own; woken when an escalation made some."""

    def __init__(self, cfg: NoticeConfig, store: CenterStore,
                 clock: Callable[[], float] = time.time, poll_s: float = 15.0) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.poll_s = poll_s
        self.sent = 0  # delivered by this instance (/metrics)
        self.failed = 0  # attempts that failed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parkwatch-center-notices",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self, _ticket: object = None) -> None:
        self._wake.set()

    def deliver_due(self) -> int:
        """Send what is due now; how many were delivered."""
        done = 0
        for n in self.store.claim_notices(self.clock(), LEASE_S):
            target = self.cfg.targets.get(n["target"])
            now = self.clock()
            try:
                if target is None:
                    raise DeliveryError(f"target {n['target']!r} is no longer in "
                                        "tickets.notify.targets")
                send(target, n)
            except (DeliveryError, OSError, KeyError) as exc:
                self.failed += 1
                pause = BACKOFF_S[min(n["attempts"], len(BACKOFF_S) - 1)]
                give_up = now + pause >= n["expires_at"]
                self.store.notice_failed(n["notice_id"], str(exc), now + pause, give_up)
                (log.error if give_up else log.warning)(
                    "center: notice of ticket %s (level %d) to %s %s: %s", n["ticket_id"],
                    n["level"], n["target"], "given up" if give_up else
                    f"failed, trying again in {pause:.0f} s", exc)
                continue
            self.store.notice_sent(n["notice_id"], now)
            self.sent += 1
            done += 1
            log.info("center: ticket %s's level %d notice delivered to %s", n["ticket_id"],
                     n["level"], n["target"])
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except StoreError as exc:  # the database away: the notices wait in it
                log.warning("center: notices wait, the database is away (%s)", exc)
            except Exception:  # a bug or a database error not translated: never end the loop
                log.exception("center: delivering ticket notices failed; trying again in "
                              "%.0f s", self.poll_s)
            self._wake.wait(self.poll_s)
            self._wake.clear()

