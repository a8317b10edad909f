"""PayloadDecoder: one MQTT device payload -> (value, device time, quality, battery) or Rejected."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parkwatch.drivers.mqtt.payload import PayloadDecoder, Rejected
from parkwatch.readings import Quality

NOW = 1_763_800_000.0  # 2025-11-22T08:26:40Z
SKEW = 86_400.0
MAX_BYTES = 4096


def decoder(value_field: str = "value", time_field: str | None = "ts", time_unit: str = "auto",
            event_field: str = "event", battery_field: str | None = "battery",
            max_bytes: int = MAX_BYTES, max_skew_s: float = SKEW) -> PayloadDecoder:
    """Defaults as the MQTT driver's config has them."""
    return PayloadDecoder(value_field, time_field, time_unit, event_field, battery_field,
                          max_bytes, max_skew_s)


DEC = decoder()


def dec(payload: Any, is_button: bool = False, d: PayloadDecoder = DEC,
        now: float = NOW) -> tuple[float, float, int, float]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return d.decode(data, is_button, now)


def reason(payload: Any, is_button: bool = False, d: PayloadDecoder = DEC) -> str:
    with pytest.raises(Rejected) as exc:
        dec(payload, is_button, d)
    return exc.value.reason


# --- values -------------------------------------------------------------------------------


def test_json_object_with_value_field() -> None:
    value, ts, quality, battery = dec({"value": 812.5})
    assert (value, ts, quality) == (812.5, NOW, Quality.GOOD)  # no device time: receive time
    assert math.isnan(battery)
    assert dec({"value": -3})[0] == -3.0


def test_dotted_value_path() -> None:
    d = decoder(value_field="uplink.decoded.level")
    assert dec({"uplink": {"decoded": {"level": 3.25}, "rssi": -80}}, d=d)[0] == 3.25
    assert reason({"uplink": {"decoded": {}}}, d=d) == "missing_value"
    assert reason({"uplink": {"decoded": 3.25}}, d=d) == "missing_value"
    assert reason({"level": 3.25}, d=d) == "missing_value"


@pytest.mark.parametrize(("raw", "want"), [(b"42", 42.0), (b" -3.5\n", -3.5), (b"1e3", 1000.0),
                                           (b"0", 0.0)])
def test_bare_number(raw: bytes, want: float) -> None:
    assert dec(raw)[:3] == (want, NOW, Quality.GOOD)


@pytest.mark.parametrize("raw", [b'{"value": true}', b'{"value": false}', b"true", b"false"])
def test_booleans_are_not_numbers(raw: bytes) -> None:
    assert reason(raw) == "bad_value"


@pytest.mark.parametrize("raw", [b'{"value": NaN}', b'{"value": Infinity}',
                                 b'{"value": -Infinity}', b"NaN", b"Infinity", b"-Infinity",
                                 b'{"value": 1e400}', b"-1e400"])
def test_nan_and_infinity_rejected_as_bad_value(raw: bytes) -> None:
    json.loads(raw)  # json itself happily accepts these
    assert reason(raw) == "bad_value"


@pytest.mark.parametrize("raw", [b'{"value": "12.5"}', b'{"value": [1]}', b'{"value": {}}',
                                 b'"12.5"', b"[1, 2]", b"null"])
def test_non_numeric_values_rejected(raw: bytes) -> None:
    assert reason(raw) == "bad_value"


@pytest.mark.parametrize("raw", [b'{"level": 3}', b'{"value": null}', b"{}"])
def test_missing_value_field(raw: bytes) -> None:
    assert reason(raw) == "missing_value"


# --- device time --------------------------------------------------------------------------


@pytest.mark.parametrize(("ts", "unit", "want"), [
    (NOW - 12.5, "auto", NOW - 12.5),
    (int(NOW * 1000) - 250, "auto", NOW - 0.25),
    (NOW - 12.5, "s", NOW - 12.5),
    (int(NOW * 1000) + 750, "ms", NOW + 0.75),
    ("2025-11-22T08:26:40Z", "auto", NOW),
    ("2025-11-22T08:26:39.250Z", "auto", NOW - 0.75),
    ("2025-11-22T16:26:40+08:00", "auto", NOW),
    ("2025-11-22T08:26:40.500+00:00", "auto", NOW + 0.5),
])
def test_device_time(ts: Any, unit: str, want: float) -> None:
    _, got, _, _ = dec({"value": 1, "ts": ts}, d=decoder(time_unit=unit))
    assert got == pytest.approx(want, abs=1e-6)


def test_dotted_time_path() -> None:
    d = decoder(time_field="meta.time")
    assert dec({"value": 1, "meta": {"time": NOW - 3}}, d=d)[1] == NOW - 3


@pytest.mark.parametrize("ts", ["2025-11-22T08:26:40", "2025-11-22 08:26:40", "yesterday",
                                "", "2025-13-40T00:00:00Z", True, [NOW], {"s": NOW}])
def test_unusable_device_time_rejected(ts: Any) -> None:
    assert reason({"value": 1, "ts": ts}) == "bad_timestamp"


@pytest.mark.parametrize("ts", [NOW + SKEW + 1, NOW - SKEW - 1, 0, 1, int(NOW * 1000) * 1000,
                                "2024-01-01T00:00:00Z", "2099-01-01T00:00:00+08:00"])
def test_device_time_far_from_gateway_clock_rejected(ts: Any) -> None:
    assert reason({"value": 1, "ts": ts}) == "bad_timestamp"
    assert reason({"event": "press", "ts": ts}, is_button=True) == "bad_timestamp"


def test_device_time_at_the_skew_limit_accepted() -> None:
    assert dec({"value": 1, "ts": NOW - SKEW})[1] == NOW - SKEW
    assert dec({"value": 1, "ts": NOW + SKEW})[1] == NOW + SKEW


def test_milliseconds_declared_as_seconds_are_rejected() -> None:
    assert reason({"value": 1, "ts": int(NOW * 1000)}, d=decoder(time_unit="s")) == \
        "bad_timestamp"


def test_no_time_field_configured_uses_receive_time() -> None:
    d = decoder(time_field=None)
    assert dec({"value": 1, "ts": 5}, d=d)[1] == NOW


# --- battery ------------------------------------------------------------------------------


def test_battery_parsed() -> None:
    assert dec({"value": 3, "battery": 87})[3] == 87.0
    assert dec({"event": "heartbeat", "battery": 12.5}, is_button=True)[3] == 12.5
    assert dec({"value": 3, "battery": 0})[3] == 0.0
    assert dec({"value": 3, "battery": 100})[3] == 100.0


@pytest.mark.parametrize("battery", [101, -1, 1e9, "87", True, None, [87]])
def test_out_of_range_or_odd_battery_ignored_reading_kept(battery: Any) -> None:
    value, _, quality, got = dec({"value": 3, "battery": battery})
    assert (value, quality) == (3.0, Quality.GOOD)
    assert math.isnan(got)


# --- buttons ------------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "value", "quality"), [
    ("press", 1.0, Quality.GOOD), ("PRESS", 1.0, Quality.GOOD), ("Press", 1.0, Quality.GOOD),
    ("reset", 0.0, Quality.GOOD), ("Reset", 0.0, Quality.GOOD),
    ("heartbeat", math.nan, Quality.HEARTBEAT), ("HeartBeat", math.nan, Quality.HEARTBEAT),
    ("test", math.nan, Quality.TEST), ("TEST", math.nan, Quality.TEST),
])
def test_button_events(event: str, value: float, quality: Quality) -> None:
    got_value, ts, got_quality, battery = dec({"event": event, "battery": 87, "ts": NOW - 1},
                                              is_button=True)
    assert got_quality == quality
    assert got_value == value or (math.isnan(value) and math.isnan(got_value))
    assert (ts, battery) == (NOW - 1, 87.0)


@pytest.mark.parametrize("raw", [b"press", b"PRESS", b" press\r\n", b'"press"', b'"Press"'])
def test_bare_press_word(raw: bytes) -> None:
    assert dec(raw, is_button=True)[:3] == (1.0, NOW, Quality.GOOD)


@pytest.mark.parametrize(("raw", "quality"), [(b"reset", Quality.GOOD),
                                              (b"heartbeat", Quality.HEARTBEAT),
                                              (b"Test", Quality.TEST)])
def test_other_bare_words(raw: bytes, quality: Quality) -> None:
    assert dec(raw, is_button=True)[2] == quality


def test_bare_word_from_a_non_button_is_malformed() -> None:
    assert reason(b"press", is_button=False) == "malformed_json"


@pytest.mark.parametrize(("payload", "value"), [({"value": 1}, 1.0), ({"value": 0}, 0.0),
                                                ({"value": 1.0, "battery": 50}, 1.0)])
def test_contact_style_button(payload: dict[str, Any], value: float) -> None:
    assert dec(payload, is_button=True)[:3] == (value, NOW, Quality.GOOD)


@pytest.mark.parametrize("payload", [{"value": 2}, {"value": True}, {"battery": 90}, {},
                                     {"value": "press"}])
def test_button_without_event_or_contact_value(payload: dict[str, Any]) -> None:
    assert reason(payload, is_button=True) == "missing_event"


@pytest.mark.parametrize("raw", [b'{"event": "panic"}', b'{"event": 1}', b'{"event": ["press"]}',
                                 b'"panic"', b'{"event": ""}'])
def test_unknown_button_event_rejected(raw: bytes) -> None:
    assert reason(raw, is_button=True) == "bad_event"


def test_unknown_bare_word_is_malformed() -> None:
    assert reason(b"panic", is_button=True) == "malformed_json"


def test_event_field_wins_over_value_for_buttons() -> None:
    assert dec({"event": "reset", "value": 1}, is_button=True)[0] == 0.0


# --- size and garbage ---------------------------------------------------------------------


def test_too_large_payload_rejected() -> None:
    body = b'{"value": 1, "pad": "'
    exact = body + b"x" * (MAX_BYTES - len(body) - 2) + b'"}'
    assert len(exact) == MAX_BYTES
    assert dec(exact)[0] == 1.0
    assert reason(exact + b" ") == "too_large"
    assert reason(b"press" + b" " * MAX_BYTES, is_button=True) == "too_large"


@pytest.mark.parametrize("raw", [b"\x80\x81\x82\xfe", b'{"value": 1, "x": "\xff"}',
                                 b"\xc3\x28", b"", b"   ", b"{", b"\x00\x01\x02garbage"])
def test_garbage_rejected_as_malformed_json(raw: bytes) -> None:
    assert reason(raw) == "malformed_json"
    assert reason(raw, is_button=True) == "malformed_json"


# --- payloads that crash the decoder instead of being rejected (see report) ----------------


def test_deeply_nested_json_is_rejected_not_a_crash() -> None:
    """2000 nested arrays fit in 4096 bytes; json raises RecursionError, which is not Rejected."""
    raw = b"[" * 2000 + b"]" * 2000
    assert len(raw) <= MAX_BYTES
    assert reason(raw) == "malformed_json"


@pytest.mark.parametrize(("raw", "why"), [
    (b"1" + b"0" * 400, "bad_value"),
    (b'{"value": 1' + b"0" * 400 + b"}", "bad_value"),
    (b'{"value": 1, "ts": 1' + b"0" * 400 + b"}", "bad_timestamp"),
])
def test_huge_integer_is_rejected_not_a_crash(raw: bytes, why: str) -> None:
    """float(10**400) raises OverflowError in number(); it must be a Rejected like 1e400."""
    assert reason(raw) == why


def test_huge_integer_battery_is_ignored_not_a_crash() -> None:
    value, _, quality, battery = dec(b'{"value": 1, "battery": 1' + b"0" * 400 + b"}")
    assert (value, quality) == (1.0, Quality.GOOD)
    assert math.isnan(battery)


# --- properties ---------------------------------------------------------------------------


def _check_result(result: tuple[float, float, int, float]) -> None:
    value, ts, quality, battery = result
    assert isinstance(value, float)
    assert math.isfinite(ts) and abs(ts - NOW) <= SKEW
    if math.isnan(value):
        assert quality in (Quality.HEARTBEAT, Quality.TEST)
    else:
        assert math.isfinite(value)
        assert quality == Quality.GOOD
    assert math.isnan(battery) or 0.0 <= battery <= 100.0


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=300), is_button=st.booleans())
def test_arbitrary_bytes_only_ever_rejected(raw: bytes, is_button: bool) -> None:
    try:
        result = DEC.decode(raw, is_button, NOW)
    except Rejected as exc:
        assert exc.reason in {"too_large", "malformed_json", "bad_value", "missing_value",
                              "bad_timestamp", "missing_event", "bad_event"}
        return
    _check_result(result)


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["press", "RESET", "heartbeat", "Test", "panic", "", "2025-11-22T08:26:40Z",
                     "2025-11-22T08:26:40", NOW, NOW * 1000, 87, 150, 0, 1]),
    st.text(max_size=8),
)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
payload_doc = st.one_of(
    json_value,
    st.fixed_dictionaries({}, optional={"value": json_value, "ts": json_value,
                                        "event": json_value, "battery": json_value}),
)


@settings(max_examples=400, deadline=None)
@given(doc=payload_doc, is_button=st.booleans())
def test_json_shaped_payloads_only_ever_rejected(doc: Any, is_button: bool) -> None:
    raw = json.dumps(doc).encode()  # json.dumps writes NaN / Infinity, which json.loads reads
    try:
        result = DEC.decode(raw, is_button, NOW)
    except Rejected:
        return
    _check_result(result)


def test_utf16_looking_garbage_is_not_read_as_a_number() -> None:
    """json.loads(bytes) guesses UTF-16; b'1\\x002\\x00' must not become the value 12."""
    for raw in (b"1\x002\x00", b"\x001\x002", b"\xff\xfe1\x002\x00"):
        with pytest.raises(Rejected):
            DEC.decode(raw, False, NOW)


@pytest.mark.parametrize(("raw", "value"), [(b"1", 1.0), (b"0", 0.0)])
def test_bare_contact_value_from_a_button(raw: bytes, value: float) -> None:
    got, _, quality, _ = DEC.decode(raw, True, NOW)
    assert (got, quality) == (value, Quality.GOOD)


# --- the fast path ------------------------------------------------------------------------

FAST_DECODERS = [DEC, decoder(time_unit="ms"), decoder(time_unit="s"), decoder(time_field=None),
                 decoder(battery_field=None), decoder(value_field="v", time_field="t")]
fast_doc = st.fixed_dictionaries(
    {"value": st.one_of(st.floats(), st.integers(-(2**60), 2**60), json_leaf)},
    optional={"ts": st.one_of(st.integers(0, 2 * int(NOW * 1000)),
                              st.floats(NOW - 2 * SKEW, NOW + 2 * SKEW), json_leaf),
              "battery": json_value, "v": json_leaf, "t": json_leaf})


def outcome(d: PayloadDecoder, decode: Any, raw: bytes, is_button: bool) -> Any:
    try:
        return decode(raw, is_button, NOW)
    except Rejected as exc:
        return exc.reason


@settings(max_examples=600, deadline=None)
@given(doc=st.one_of(fast_doc, payload_doc), is_button=st.booleans(),
       k=st.integers(0, len(FAST_DECODERS) - 1), spaced=st.booleans())
def test_fast_path_reads_exactly_what_the_general_path_reads(doc: Any, is_button: bool, k: int,
                                                             spaced: bool) -> None:
    """decode() reads the common shape itself; it must agree with _decode(), the reference,
    on every payload: the same reading (bit for bit, NaN battery as NaN) or the same reason."""
    d = FAST_DECODERS[k]
    raw = json.dumps(doc, separators=(", ", ": ") if spaced else (",", ":")).encode()
    if spaced:
        raw = b" " + raw + b"\n"
    fast, general = outcome(d, d.decode, raw, is_button), outcome(d, d._decode, raw, is_button)
    assert repr(fast) == repr(general)


def test_fast_path_shapes() -> None:
    """The flood shape and its near misses: each read as the general path reads it."""
    ms = int(NOW * 1000) + 123
    value, ts, quality, battery = dec(b'{"value":1234.5,"ts":%d}' % ms)
    assert (value, ts, quality) == (1234.5, ms / 1000.0, Quality.GOOD) and math.isnan(battery)
    got = dec(b'{"value":1234.5,"ts":%d,"battery":87}' % ms)
    assert got == (1234.5, ms / 1000.0, Quality.GOOD, 87.0)
    assert dec(b'{"value":1234,"ts":%d}' % int(NOW))[:2] == (1234.0, NOW)
    assert reason(b'{"value":1234.5,"ts":%d}' % (ms + 10**9)) == "bad_timestamp"
    assert reason(b'{"value":Infinity}') == "bad_value"
    assert reason(b'{"value":true}') == "bad_value"
    assert reason(b'{"value":1}{"value":2}') == "malformed_json"
    assert dec('{"value":1.5,"note":"größe"}'.encode())[0] == 1.5  # not ASCII: general path
