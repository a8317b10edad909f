"""The center's decode stage: what it refuses of a batch of messages, and why, and that what
it keeps is stored as the JSON that arrived, byte for byte, on both backends."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.contract import Event, decode_events
from parkwatch.center.intake import Decoder
from parkwatch.center.store import BadEvent, CenterStore, open_store
from parkwatch.rejections import Rejections
from test_center_store import T0, event, raw, url  # noqa: F401  (url: the backends fixture)

PREFIX = "parkwatch/v1"


def payload(ev: dict[str, Any]) -> bytes:
    return orjson.dumps(ev)


def test_a_batch_of_good_events_decodes_whole() -> None:
    evs = [event(new_alarm_id(T0.timestamp()), 1) for _ in range(3)]
    got = decode_events([payload(e) for e in evs])
    assert all(isinstance(e, Event) for e in got)
    assert [e.alarm_id for e in got if isinstance(e, Event)] == [e["alarm_id"] for e in evs]


@pytest.mark.parametrize("bad", [
    b"",  # nothing
    b"   ",  # white space only
    b"{not json",
])
def test_a_payload_that_is_not_json_is_refused_alone(bad: bytes) -> None:
    good = [payload(event(new_alarm_id(T0.timestamp()), 1)) for _ in range(2)]
    got = decode_events([good[0], bad, good[1]])
    assert isinstance(got[0], Event) and isinstance(got[2], Event)
    assert isinstance(got[1], tuple) and got[1][0] == "bad_json"


def test_a_payload_holding_two_events_is_refused_and_cannot_borrow_a_neighbours_place() -> None:
    """Decoded as one array, a payload of two JSON values next to an empty one would still give
    one item per payload; each is then judged alone."""
    one, two, three = (payload(event(new_alarm_id(T0.timestamp()), 1)) for _ in range(3))
    for batch in ([one + b"," + two, b"", three], [b"", one + b"," + two, three],
                  [one + b"," + two, three]):
        got = decode_events(batch)
        assert len(got) == len(batch)
        assert [isinstance(g, Event) for g in got] == [False] * (len(batch) - 1) + [True]
        assert got[-1].alarm_id == orjson.loads(three)["alarm_id"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "value", "where"), [
    ("seq", "1", "$.seq"),  # text, not a number
    ("seq", 0, "$.seq"),
    ("seq", True, "$.seq"),  # a boolean is no seq
    ("alarm_id", "not-a-ulid", "$.alarm_id"),
    ("schema", "parkwatch.alarm/2", "$.schema"),
    ("event", "exploded", "$.event"),
    ("park", "", "$.park"),
    ("building", 3, "$.building"),
    ("tenants", ["t-acme", 7], "$.tenants[1]"),
    ("changed_at", None, "$.changed_at"),
    ("changed_at", "yesterday", "$.changed_at"),
    ("raised_at", "2026-12-01T08:00:00.000", "$.raised_at"),  # no offset: which zone?
])
def test_an_event_of_the_wrong_shape_is_refused_saying_which_field(field: str, value: Any,
                                                                    where: str) -> None:
    ev = {**event(new_alarm_id(T0.timestamp()), 1), field: value}
    (got,) = decode_events([payload(ev)])
    assert isinstance(got, tuple) and got[0] == "bad_event" and where in got[1]


def test_a_missing_required_field_is_named() -> None:
    ev = event(new_alarm_id(T0.timestamp()), 1)
    del ev["rule"]
    (got,) = decode_events([payload(ev)])
    assert isinstance(got, tuple) and got[0] == "bad_event" and "rule" in got[1]


def test_a_time_with_an_offset_is_the_same_instant_in_utc() -> None:
    ev = {**event(new_alarm_id(T0.timestamp()), 1), "changed_at": "2026-12-01T16:00:00.250+08:00"}
    (got,) = decode_events([payload(ev)])
    assert isinstance(got, Event) and got.changed_at.timestamp() == T0.timestamp() + 0.25


def test_fields_the_center_does_not_read_are_left_to_the_gateways_schema() -> None:
    ev = {**event(new_alarm_id(T0.timestamp()), 1), "value": "not a number", "extra": {"a": 1}}
    (got,) = decode_events([payload(ev)])
    assert isinstance(got, Event)


def test_the_decoder_counts_each_refusal_by_reason_and_keeps_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    rejections = Rejections(logging.getLogger("test"), "test")
    decode = Decoder(PREFIX, rejections)
    good = event(new_alarm_id(T0.timestamp()), 1)
    elsewhere = event(new_alarm_id(T0.timestamp()), 1, park="nanhu")  # on xinqiao's topic
    topic = f"{PREFIX}/xinqiao/events"
    packets = [(topic, b"{", 1, 1), (topic, payload(elsewhere), 2, 1),
               (topic, payload({**good, "seq": -1}), 3, 1), (topic, payload(good), 4, 1),
               (f"{PREFIX}/xinqiao/unknown", b"{}", 5, 1)]
    out = decode(packets, 1.0)
    assert dict(rejections.total) == {"bad_json": 1, "bad_event": 2, "unknown_topic": 1}
    assert out.mids == [1, 2, 3, 4, 5]  # every one acknowledged with the batch
    assert out.offered == 1 and out.rows is not None
    assert [r[0] for r in out.rows.events] == [good["alarm_id"]]


def test_the_json_is_stored_as_it_arrived(url: str) -> None:  # noqa: F811
    """Spacing, key order and Chinese text stay as the gateway sent them, in the event's row
    and in the alarm's state, on both backends."""
    ev = event(new_alarm_id(T0.timestamp()), 1, message="【火警】B1 一层 手报按钮 按下")
    sent = ("{ " + ", ".join(f'"{k}" : {orjson.dumps(v).decode()}'
                             for k, v in reversed(ev.items())) + " }").encode()
    out = Decoder(PREFIX, Rejections(logging.getLogger("test"), "test"))(
        [(f"{PREFIX}/xinqiao/events", sent, 1, 1)], 1.0)
    assert out.rows is not None
    store: CenterStore = open_store(url)
    try:
        assert store.store_rows(out.rows, out.offered).stored == 1
        state = store.alarm(ev["alarm_id"])
        assert state is not None and state["events"] == [ev] and state["event"] == ev
    finally:
        store.close()
    assert raw(url, "SELECT body FROM events") == [(sent.decode(),)]
    assert raw(url, "SELECT event FROM alarms") == [(sent.decode(),)]


def test_an_event_given_as_a_dict_is_checked_as_a_received_one(url: str) -> None:  # noqa: F811
    store = open_store(url)
    try:
        with pytest.raises(BadEvent, match=r"\$\.seq"):
            store.store_events([{**event(new_alarm_id(T0.timestamp()), 1), "seq": "1"}], 1.0)
        assert store.open_alarms() == []
    finally:
        store.close()
