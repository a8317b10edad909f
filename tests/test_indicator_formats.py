"""Indicator frame formats: exact round trips, and junk or damage never becomes a weight."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parkwatch.drivers.serial_indicator.formats import (
    FORMATS,
    AndLine,
    Frame,
    FrameFormat,
    Reading,
    Rejection,
    Xk3190A9,
)
from parkwatch.drivers.serial_indicator.formats.xk3190 import checksum
from parkwatch.readings import Quality

ALL = sorted(FORMATS.values(), key=lambda f: f.name)
ids = [f.name for f in ALL]


@st.composite
def frames(draw: Any, fmt: type[FrameFormat]) -> tuple[bytes, Reading]:
    """A valid frame of ``fmt`` and the reading it must decode to."""
    decimals = draw(st.integers(0, fmt.max_decimals))
    top = fmt.max_counts(decimals)
    counts = draw(st.integers(-top, top))
    status = draw(st.sampled_from(fmt.statuses))
    net = draw(st.booleans()) if fmt.carries_net else False
    unit = draw(st.sampled_from(["kg", "g", "t", "lb", "KG"])) if fmt.carries_unit else None
    return (fmt.encode_counts(counts, decimals, status, net, unit),
            Reading(counts, decimals, status, net, unit))


def junk(fmt: type[FrameFormat], max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Junk free of the format's frame delimiters: it can never disturb the framing."""
    return st.binary(max_size=max_size).map(
        lambda b: b.translate(None, fmt.delimiters))


def adversarial_junk(fmt: type[FrameFormat]) -> st.SearchStrategy[bytes]:
    """Any bytes, mixed with whole frames and pieces of frames (heads, tails, middles)."""
    piece = st.tuples(frames(fmt), st.integers(0, 30), st.integers(0, 30)).map(
        lambda t: t[0][0][t[1]:t[1] + t[2]] if t[2] else t[0][0])
    return st.lists(st.one_of(st.binary(max_size=24), piece), max_size=4).map(b"".join)


def feed_in_chunks(fmt: type[FrameFormat], stream: bytes, cuts: list[int]) -> list[Frame]:
    """Feed ``stream`` split at ``cuts`` (as reads from a port would split it), then flush."""
    parser = fmt.parser()
    out: list[Frame] = []
    edges = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    for a, b in itertools.pairwise(edges):
        out += parser.feed(stream[a:b])
    return out + parser.flush()


def readings(out: list[Frame]) -> list[Reading]:
    return [f for f in out if isinstance(f, Reading)]


def rejections(out: list[Frame]) -> list[Rejection]:
    return [f for f in out if isinstance(f, Rejection)]


def decode_alone(fmt: type[FrameFormat], raw: bytes) -> list[Frame]:
    p = fmt.parser()
    return p.feed(raw) + p.flush()


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL, ids=ids)
@given(data=st.data())
def test_encode_decode_round_trip_exactly(fmt: type[FrameFormat], data: Any) -> None:
    frame, expected = data.draw(frames(fmt))
    out = decode_alone(fmt, frame)
    assert out == [expected]
    got = out[0]
    assert isinstance(got, Reading)
    assert got.raw == frame
    assert got.value == expected.counts / 10**expected.decimals
    # encode() from a float weight gives the very same frame
    assert fmt.encode(got.value, got.decimals, got.status, got.net, got.unit) == frame


@pytest.mark.parametrize("fmt", ALL, ids=ids)
@given(data=st.data())
def test_byte_by_byte_delivery(fmt: type[FrameFormat], data: Any) -> None:
    pairs = data.draw(st.lists(frames(fmt), min_size=1, max_size=4))
    parser = fmt.parser()
    out: list[Frame] = []
    for frame, _ in pairs:
        for i in range(len(frame)):
            out += parser.feed(frame[i:i + 1])
    assert out == [r for _, r in pairs]


def test_xk3190_frame_layout() -> None:
    frame = Xk3190A9.encode(-123.4, 2)
    assert frame == b"\x02-0123402" + checksum(b"-0123402") + b"\x03"
    assert len(frame) == 12
    x = 0
    for b in frame[1:9]:
        x ^= b
    hi, lo = x >> 4, x & 15
    assert frame[9:11] == bytes((hi + (0x30 if hi <= 9 else 0x37),
                                 lo + (0x30 if lo <= 9 else 0x37)))


def test_and_line_layout_and_quality() -> None:
    assert AndLine.encode(123.45, 2) == b"ST,GS,+00123.45kg\r\n"
    assert AndLine.encode(-7, 0, "OL", net=True, unit="t") == b"OL,NT,-00000007t\r\n"
    out = decode_alone(AndLine, b"ST,GS,+00123.45kg\r\nUS,NT,-  12.345 kg\r\nOL,GS,+99999999kg\n")
    assert [(r.value, r.quality, r.net, r.unit) for r in readings(out)] == [
        (123.45, Quality.GOOD, False, "kg"), (-12.345, Quality.UNSTABLE, True, "kg"),
        (99999999, Quality.OVERLOAD, False, "kg")]


def test_encoders_refuse_what_the_frame_cannot_carry() -> None:
    with pytest.raises(ValueError):
        Xk3190A9.encode(1_000_000, 0)  # 7 digits
    with pytest.raises(ValueError):
        Xk3190A9.encode(1, 5)
    with pytest.raises(ValueError):
        Xk3190A9.encode(1, 0, "US")  # the XK3190 frame has no stability flag
    with pytest.raises(ValueError):
        AndLine.encode(1, 0, "XX")
    with pytest.raises(ValueError):
        AndLine.encode(1, 0, unit="k g")


# --- junk between frames ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL, ids=ids)
@settings(max_examples=200)
@given(data=st.data())
def test_junk_between_frames_costs_nothing_but_rejections(fmt: type[FrameFormat],
                                                          data: Any) -> None:
    """Delimiter-free junk between frames: exactly the encoded readings, in order."""
    pairs = data.draw(st.lists(st.tuples(junk(fmt), frames(fmt)), min_size=1, max_size=6))
    tail = data.draw(junk(fmt))
    stream = b"".join(g + f for g, (f, _) in pairs) + tail
    out = feed_in_chunks(fmt, stream, data.draw(st.lists(st.integers(0, 10_000), max_size=6)))
    assert readings(out) == [r for _, (_, r) in pairs]
    for rej in rejections(out):
        assert rej.reason in ("garbage", "cut_frame"), rej
    if fmt is Xk3190A9:
        # one rejection per run of junk (not per byte), and every junk byte accounted for
        runs = [g for g, _ in pairs if g] + ([tail] if tail else [])
        assert len(rejections(out)) == len(runs)
        assert sum(r.size for r in rejections(out)) == sum(map(len, runs))


@pytest.mark.parametrize("fmt", ALL, ids=ids)
@settings(max_examples=400)
@given(data=st.data())
def test_arbitrary_junk_never_yields_a_wrong_reading(fmt: type[FrameFormat], data: Any) -> None:
    """Any bytes at all between frames: every frame sent is still read, in order, and any
    extra reading is a well-formed frame that the junk itself contained."""
    pairs = data.draw(st.lists(st.tuples(adversarial_junk(fmt), frames(fmt)), min_size=1,
                               max_size=5))
    tail = data.draw(adversarial_junk(fmt))
    stream = b"".join(g + f for g, (f, _) in pairs) + tail
    out = feed_in_chunks(fmt, stream, data.draw(st.lists(st.integers(0, 10_000), max_size=6)))
    expected = [r for _, (_, r) in pairs]
    got = readings(out)
    i = 0
    for r in got:
        if i < len(expected) and r == expected[i]:
            i += 1
            continue
        # an extra: it must be a complete, valid frame that is really in the stream
        assert r.raw and r.raw in stream
        assert decode_alone(fmt, r.raw) == [r]
        if fmt is Xk3190A9:
            assert r.raw[9:11] == checksum(r.raw[1:9])
    assert i == len(expected), f"frames lost: {expected[i:]}"


@pytest.mark.parametrize("fmt", ALL, ids=ids)
def test_junk_is_counted_per_run_not_per_byte(fmt: type[FrameFormat]) -> None:
    good = fmt.encode(12.5, 1, unit="kg" if fmt.carries_unit else None)
    noise = bytes(range(0x20, 0x7F)).translate(None, fmt.delimiters + b",")
    out = feed_in_chunks(fmt, noise + good + noise * 2 + good, [7, 50, 130, 131])
    assert [r.reason for r in rejections(out)] == ["garbage", "garbage"]
    assert len(readings(out)) == 2


def test_endless_junk_is_reported_while_it_lasts() -> None:
    """A line at the wrong baud rate is all junk: it must show in the counts, not hide."""
    parser = Xk3190A9.parser()
    out: list[Frame] = []
    for _ in range(10):
        out += parser.feed(b"\xff\xfe" * 100)
    assert len(rejections(out)) >= 3
    assert all(r.reason == "garbage" for r in rejections(out))


# --- damaged frames -------------------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.data())
def test_xk3190_any_single_bit_error_is_caught(data: Any) -> None:
    """One flipped bit anywhere in a frame: that frame is rejected, its neighbours are read."""
    pairs = data.draw(st.lists(frames(Xk3190A9), min_size=3, max_size=3))
    victim = bytearray(pairs[1][0])
    victim[data.draw(st.integers(0, 11))] ^= 1 << data.draw(st.integers(0, 7))
    stream = pairs[0][0] + bytes(victim) + pairs[2][0]
    out = feed_in_chunks(Xk3190A9, stream, data.draw(st.lists(st.integers(0, 100), max_size=3)))
    assert readings(out) == [pairs[0][1], pairs[2][1]]
    assert rejections(out)


@pytest.mark.parametrize("fmt", ALL, ids=ids)
def test_corrupted_frame_is_rejected_and_counted(fmt: type[FrameFormat]) -> None:
    unit = "kg" if fmt.carries_unit else None
    a, b = fmt.encode(100.0, 1, unit=unit), fmt.encode(200.0, 1, unit=unit)
    out = feed_in_chunks(fmt, fmt.corrupt(a) + b + fmt.corrupt(b) + a, [])
    assert [r.value for r in readings(out)] == [200.0, 100.0]
    reason = "bad_checksum" if fmt is Xk3190A9 else "bad_digits"
    assert [r.reason for r in rejections(out)] == [reason, reason]


def test_xk3190_rejections_by_reason() -> None:
    body = b"+12A4561"  # a letter among the digits, with a checksum that matches it
    cases = {
        b"\x02" + body + checksum(body) + b"\x03": "bad_digits",
        b"\x02+0001009" + checksum(b"+0001009") + b"\x03": "bad_digits",  # 9 decimals
        b"\x02+0001002" + bytes(c ^ 1 for c in checksum(b"+0001002")) + b"\x03": "bad_checksum",
        b"\x02+000100200Z\x03": "bad_frame",  # 13 bytes: one too many
    }
    for raw, reason in cases.items():
        first = decode_alone(Xk3190A9, raw)[0]
        assert isinstance(first, Rejection) and first.reason == reason, raw


@pytest.mark.parametrize("fmt", ALL, ids=ids)
@given(data=st.data())
def test_cut_frame_is_rejected_and_the_next_one_read(fmt: type[FrameFormat], data: Any) -> None:
    (cut, _), (good, expected) = data.draw(frames(fmt)), data.draw(frames(fmt))
    keep = data.draw(st.integers(1, len(cut) - 2))  # lost its end (for lines: CR LF too)
    out = feed_in_chunks(fmt, cut[:keep] + good, data.draw(st.lists(st.integers(0, 50),
                                                                    max_size=3)))
    assert readings(out) == [expected]
    assert [r.reason for r in rejections(out)] in (["cut_frame"], ["garbage"])
    if fmt is Xk3190A9 or keep >= 6:  # a line start with its header is recognisably cut
        assert rejections(out)[0].reason == "cut_frame"


@pytest.mark.parametrize("fmt", ALL, ids=ids)
def test_frame_cut_by_a_closed_port_is_reported_on_flush(fmt: type[FrameFormat]) -> None:
    parser = fmt.parser()
    frame = fmt.encode(5, 0, unit="kg" if fmt.carries_unit else None)
    assert parser.feed(frame[:6]) == []
    assert [getattr(f, "reason", None) for f in parser.flush()] == ["cut_frame"]
    assert readings(parser.feed(frame)) == readings(decode_alone(fmt, frame))


def test_and_line_lost_digit_is_not_read_as_a_smaller_weight() -> None:
    out = decode_alone(AndLine, b"ST,GS,+0012.45kg\r\n")  # one digit lost on the line
    assert readings(out) == []
    assert [r.reason for r in rejections(out)] == ["bad_digits"]
