"""An alarm event's JSON, encoded with orjson on the alarm path, says exactly what the standard
library's encoder says (the contract's JSON: UTF-8, no ASCII escapes, compact), for any text,
number and null an event can hold; what orjson cannot encode falls back to the standard one."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from parkwatch.alarms.event import encode


def _reference(event: dict[str, object]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
NUMBER = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False))
EVENT = st.fixed_dictionaries({
    "schema": st.just("parkwatch.alarm/1"), "alarm_id": TEXT, "seq": st.integers(1, 10**9),
    "event": st.sampled_from(["raised", "cleared", "acknowledged", "closed"]),
    "tenants": st.lists(TEXT, max_size=4), "value": NUMBER, "threshold": NUMBER,
    "active": st.booleans(), "acked_by": st.one_of(st.none(), TEXT), "message": TEXT,
    "escalation_level": st.integers(0, 20)})


@settings(max_examples=2000, deadline=None)
@given(EVENT)
def test_any_event_encodes_to_the_same_json_as_the_standard_encoder(event) -> None:
    ours = encode(event)
    assert json.loads(ours) == json.loads(_reference(event))
    # floats may be spelled differently (1e+16 / 1e16), never anything else
    if not any(isinstance(v, float) for v in event.values()):
        assert ours == _reference(event)


def test_a_typical_event_is_byte_for_byte_the_standard_encoding() -> None:
    event = {"schema": "parkwatch.alarm/1", "alarm_id": "01M91JTMBVPKPSHC6H8CDN5VPX", "seq": 1,
             "event": "raised", "park": "xinqiao", "zone": None, "tenants": ["t-a1f"],
             "value": 12000.0, "threshold": 10000.0, "unit": "kg", "active": True,
             "message": "新桥园区 A栋 1F 荷载 LC0000 超限：12000 kg（限值 10000 kg）\n\t\"",
             "observed_at": "2026-12-04T22:29:32.953Z"}
    assert encode(event) == _reference(event)


def test_what_orjson_cannot_encode_falls_back_to_the_standard_encoder() -> None:
    event = {"value": np.float64(1.5), "big": 2**70, "when": 3}
    assert json.loads(encode(event)) == {"value": 1.5, "big": 2**70, "when": 3}
