"""The ingest's decode stage: a batch of MQTT messages from the central broker into what one
transaction stores, the rows of its events and the gateway statuses, and the message ids to
acknowledge once that transaction has committed.

It runs on a thread of its own, so that the next batch is decoded while the database writes
the last one.  What is not the contract's is refused and counted by reason here, before the
database sees it; a refused message is acknowledged with its batch (it would be refused again
if the broker sent it again).
"""

from __future__ import annotations

import logging
import marshal
from dataclasses import dataclass, field
from typing import Any

import orjson

from parkwatch.center import rows as R
from parkwatch.center.contract import Event, classify, decode_events
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.center")

#: (topic, payload, message id, QoS) of one PUBLISH, as the client hands it over
Publish = tuple[str, bytes, int, int]


@dataclass
class Decoded:
    """One batch, ready for its transaction."""

    rows: R.Batch | None  # the events' rows (None: no event in the batch)
    offered: int  # events the rows were made of (a duplicate in the batch counts)
    statuses: list[tuple[str, dict[str, Any] | None]]  # (park, retained gateway status)
    mids: list[int]  # the QoS 1 messages, in the order received: acknowledged after commit
    by_park: dict[str, int] = field(default_factory=dict)  # events per park
    latest_change: float = 0.0  # the latest ``changed_at`` of the events, epoch seconds


def to_wire(msg: tuple[Any, ...]) -> bytes:
    """A receiver's message (:mod:`parkwatch.center.receiver`) as bytes for the center's
    process.  marshal, not pickle: everything in a message is a plain value (rows of text and
    numbers, JSON documents), which marshal writes and reads in a fraction of pickle's time;
    both ends run the same Python, whose marshal format they share."""
    if msg[0] == "batch":
        d = msg[2]
        rows = None if d.rows is None else (
            d.rows.events, d.rows.alarms, d.rows.tenants, d.rows.duplicates_in_batch,
            d.rows.raised_here, d.rows.tenants_raised_here)
        msg = (msg[0], msg[1], (rows, d.offered, d.statuses, d.mids, d.by_park,
                                d.latest_change))
    return marshal.dumps(msg)


def from_wire(data: bytes) -> tuple[Any, ...]:
    """The message :func:`to_wire` made."""
    msg = marshal.loads(data)
    if msg[0] == "batch":
        rows, offered, statuses, mids, by_park, latest = msg[2]
        batch = None if rows is None else R.Batch(*rows)
        msg = (msg[0], msg[1], Decoded(batch, offered, statuses, mids, by_park, latest))
    return tuple(msg)


class Decoder:
    """Decodes batches for one ingest; not thread-safe (one decode thread calls it)."""

    def __init__(self, prefix: str, rejections: Rejections) -> None:
        self.prefix = prefix
        self.rejections = rejections
        #: the event and gateway topics seen (one each per park; an alarm's topic is not kept)
        self._kinds: dict[str, tuple[str, str]] = {}

    def __call__(self, packets: list[Publish], received_at: float) -> Decoded:
        payloads: list[bytes] = []
        places: list[tuple[str, str]] = []  # (topic, park) of each payload
        statuses: list[tuple[str, dict[str, Any] | None]] = []
        mids: list[int] = []
        reject = self.rejections.reject
        for topic, payload, mid, qos in packets:
            if qos == 1:
                mids.append(mid)
            kind = self._kind(topic)
            if kind is None:
                reject("unknown_topic", topic)
                continue
            what, park = kind
            if what == "gateway":
                statuses.append((park, self._status(topic, payload)))
                continue
            if what == "alarms" and not payload:
                continue  # a closed alarm's retained state removed: its events say so
            payloads.append(payload)
            places.append((topic, park))
        events: list[Event] = []
        bodies: list[bytes] = []
        for ev, payload, (topic, park) in zip(decode_events(payloads), payloads, places,
                                              strict=True):
            if isinstance(ev, tuple):
                reason, why = ev
                reject(reason, f"{topic}: {why}; {payload[:200]!r}")
            elif ev.park != park:
                reject("bad_event", f"{topic}: park {ev.park!r} published on park {park!r}'s "
                                    f"topic")
            else:
                events.append(ev)
                bodies.append(payload)
        if not events:
            return Decoded(None, 0, statuses, mids)
        by_park: dict[str, int] = {}
        for ev in events:
            by_park[ev.park] = by_park.get(ev.park, 0) + 1
        return Decoded(R.batch(events, bodies, received_at), len(events), statuses, mids,
                       by_park, _latest_change(events))

    def _kind(self, topic: str) -> tuple[str, str] | None:
        kind = self._kinds.get(topic)
        if kind is None:
            kind = classify(topic, self.prefix)
            if kind is not None and kind[0] != "alarms":
                self._kinds[topic] = kind
        return kind

    def _status(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        if not payload:
            return None
        try:
            doc = orjson.loads(payload)
        except (orjson.JSONDecodeError, RecursionError):
            self.rejections.reject("bad_json", f"{topic}: {payload[:200]!r}")
            return None
        return doc if isinstance(doc, dict) else None


def _latest_change(events: list[Event]) -> float:
    """The latest `changed_at` of the events, as epoch seconds."""
    return max(ev.changed_at for ev in events).timestamp()
