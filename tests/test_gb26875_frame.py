"""GB/T 26875.3-2011 frames, byte by byte: the encoder against frames written out by hand from
the standard's layout (§6.6 table 1, §7, §8.2), the decoder's round trips and refusals, the
channel's mapping of alarm changes to frames, and the session against the simulated center
(real TCP on 127.0.0.1).

Every frame below is spelled field by field; the checksums were summed by hand (bytes 3-27
and the data unit, mod 256).  Time labels are second, minute, hour, day, month, year-2000 in
China Standard Time: 2026-12-05 18:30:15 CST is ``0f 1e 12 05 0c 1a``.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime

import pytest

from conftest import wait_until
from parkwatch.alarms.channels.gb26875 import Gb26875Target, data_units
from parkwatch.alarms.gb26875.codes import Command, DataType
from parkwatch.alarms.gb26875.frame import CST, Frame, FrameError, decode, split
from parkwatch.alarms.gb26875.objects import (
    ComponentState,
    DeviceState,
    SystemState,
    data_unit,
    parse_data_unit,
)
from parkwatch.alarms.gb26875.session import Session
from parkwatch.alarms.senders import DeliveryError
from parkwatch.firmware_sim.gb26875_center import Center

SENT = datetime(2026, 12, 5, 18, 30, 15, tzinfo=CST)  # the frame's time label
HAPPENED = datetime(2026, 12, 5, 18, 30, 14, tzinfo=CST)  # the object's time label
DEVICE = 12345  # the gateway's address: 0x3039
CENTER = 0


def hexframe(*fields: str) -> bytes:
    return bytes.fromhex("".join(fields).replace(" ", ""))


#: a manual call point (手动火灾报警按钮) in fire alarm: type 2, one object
FIRE = hexframe(
    "40 40",  # start '@@'
    "01 00",  # serial number 1, low byte first
    "01 00",  # protocol version: main 1, user 0
    "0f 1e 12 05 0c 1a",  # time label: 18:30:15 on 2026-12-05
    "39 30 00 00 00 00",  # source: the device, 12345, low byte first
    "00 00 00 00 00 00",  # destination: the center, 0
    "30 00",  # data unit length: 2 + 46 = 48
    "02",  # command: send data
    "02 01",  # type flag 2 (component running state), 1 object
    "01",  # system type 1: 火灾报警系统
    "01",  # system address 1
    "17",  # component type 23: 手动火灾报警按钮
    "2d 01 00 00",  # component address 301, low byte first
    "03 00",  # state: bit0 normal running + bit1 fire alarm (火警)
    "41 2d 33 46 2d 46 42 31" + "00" * 23,  # description "A-3F-FB1", 31 bytes
    "0e 1e 12 05 0c 1a",  # when: 18:30:14
    "8a",  # checksum
    "23 23",  # end '##'
)

#: a point photoelectric smoke detector in fault, with a Chinese description
FAULT = hexframe(
    "40 40", "02 00", "01 00", "0f 1e 12 05 0c 1a", "39 30 00 00 00 00", "00 00 00 00 00 00",
    "30 00", "02",
    "02 01",  # type 2, 1 object
    "01 01",  # fire alarm system 1
    "2a",  # component type 42: 点型光电感烟火灾探测器
    "0a 00 03 00",  # component address 0x0003000a (loop 3, point 10)
    "05 00",  # state: bit0 normal running + bit2 fault (故障)
    "c8 fd b2 e3 20 d1 cc b8 d0" + "00" * 22,  # "三层 烟感" in GB 18030, 31 bytes
    "0e 1e 12 05 0c 1a",
    "51", "23 23",
)

#: the fire alarm system reset (复位): type 1, system state
RESET = hexframe(
    "40 40", "03 00", "01 00", "0f 1e 12 05 0c 1a", "39 30 00 00 00 00", "00 00 00 00 00 00",
    "0c 00",  # data unit length: 2 + 10 = 12
    "02",
    "01 01",  # type flag 1 (system state), 1 object
    "01 01",  # system type 1, address 1
    "01 20",  # state 0x2001: bit0 normal running + bit13 reset
    "0e 1e 12 05 0c 1a",
    "73", "23 23",
)

#: the device's heartbeat: its running state, normal monitoring
HEARTBEAT = hexframe(
    "40 40", "04 00", "01 00", "0f 1e 12 05 0c 1a", "39 30 00 00 00 00", "00 00 00 00 00 00",
    "09 00",  # data unit length: 2 + 7
    "02",
    "15 01",  # type flag 21 (user information transmission device running state), 1 object
    "01",  # bit0: 正常监视状态
    "0f 1e 12 05 0c 1a",
    "64", "23 23",
)

#: the center's confirm of frame 1: same serial, addresses swapped, no data unit
CONFIRM = hexframe(
    "40 40", "01 00", "01 00", "10 1e 12 05 0c 1a", "00 00 00 00 00 00", "39 30 00 00 00 00",
    "00 00", "03", "d9", "23 23",
)


def sent(serial: int, obj: object) -> Frame:
    return Frame(serial, SENT, DEVICE, CENTER, int(Command.SEND), data_unit([obj]))  # type: ignore[list-item]


CASES = {
    "fire": (FIRE, sent(1, ComponentState(1, 1, 23, 301, 0x0003, "A-3F-FB1", HAPPENED))),
    "fault": (FAULT, sent(2, ComponentState(1, 1, 42, 0x0003000A, 0x0005, "三层 烟感",
                                            HAPPENED))),
    "reset": (RESET, sent(3, SystemState(1, 1, 0x2001, HAPPENED))),
    "heartbeat": (HEARTBEAT, sent(4, DeviceState(0x01, SENT))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_encoder_writes_the_standards_bytes(name: str) -> None:
    raw, frame = CASES[name]
    assert frame.encode() == raw


@pytest.mark.parametrize("name", list(CASES))
def test_the_decoder_reads_back_every_field(name: str) -> None:
    raw, frame = CASES[name]
    got = decode(raw)
    assert got == frame
    kind, objects = parse_data_unit(got.data)
    assert kind == got.data[0] and data_unit(objects) == frame.data  # type: ignore[arg-type]


def test_a_confirm_answers_the_serial_with_the_addresses_swapped() -> None:
    frame = decode(FIRE).answer(Command.CONFIRM, datetime(2026, 12, 5, 18, 30, 16, tzinfo=CST))
    assert frame.encode() == CONFIRM
    assert decode(CONFIRM).data == b""


def corrupt(raw: bytes, at: int, value: int) -> bytes:
    return raw[:at] + bytes((value,)) + raw[at + 1:]


@pytest.mark.parametrize(("raw", "why"), [
    (corrupt(FIRE, len(FIRE) - 3, 0x8B), "checksum 8b, the bytes sum to 8a"),
    (FIRE[:-4] + FIRE[-3:], "data length 48 says 78 bytes, the frame has 77"),
    (FIRE[:-2] + b"#$", "end 2324"),
    (corrupt(FIRE, 0, 0x41), "start 4140"),
    (corrupt(corrupt(FIRE, 26, 9), len(FIRE) - 3, 0x91), "command byte 9"),
    (corrupt(corrupt(FIRE, 8, 25), len(FIRE) - 3, 0x91), "time label"),  # hour 25
], ids=["checksum", "length", "end", "start", "command", "time"])
def test_the_decoder_names_what_is_wrong(raw: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        decode(raw)


def test_a_stream_is_split_into_frames_past_noise_and_partial_reads() -> None:
    buffer = bytearray(b"\x00noise@" + FIRE[:30])
    assert split(buffer) is None
    buffer += FIRE[30:] + RESET
    assert split(buffer) == FIRE and split(buffer) == RESET and split(buffer) is None


def test_a_data_unit_whose_count_does_not_match_is_refused() -> None:
    with pytest.raises(FrameError, match="2 objects of 46 bytes make 94 bytes"):
        parse_data_unit(bytes((2, 2)) + FIRE[29:75])
    with pytest.raises(FrameError, match="type flag 77"):
        parse_data_unit(bytes((77, 1, 0)))


# --- alarm changes to frames -----------------------------------------------------------


TARGET = Gb26875Target(type="gb26875", host="127.0.0.1", port=1, source_address=DEVICE,
                       components={"A-3F-FB1": {"component_type": 23,
                                                "component_address": 301,
                                                "description": "A-3F-FB1"}})


def event(change: str, rule: str = "button_latch", sensor: str = "A-3F-FB1") -> dict[str, object]:
    return {"event": change, "rule": rule, "sensor_id": sensor, "sensor_kind": "fire_button",
            "building": "A", "floor": "3F", "observed_at": "2026-12-05T10:30:14.000Z",
            "changed_at": "2026-12-05T10:30:14.100Z"}


def test_a_press_is_a_fire_alarm_and_its_reset_a_recovery_and_a_system_reset() -> None:
    (press,) = data_units(TARGET, event("raised"))
    assert press == FIRE[27:75]  # the hand-written data unit above
    recovery, reset = data_units(TARGET, event("cleared"))
    assert recovery[:2] == b"\x02\x01" and recovery[9:11] == b"\x01\x00"  # normal again
    assert reset == RESET[27:39]
    for change in ("acknowledged", "escalated", "reminder", "closed"):
        assert data_units(TARGET, event(change)) == []


def test_a_comm_fault_is_a_component_fault_with_a_default_code() -> None:
    (unit,) = data_units(TARGET, event("raised", "comm_fault", "B-1F-LC2") | {
        "sensor_kind": "load_cell"})
    _, (part,) = parse_data_unit(unit)
    assert isinstance(part, ComponentState)
    assert (part.component_type, part.state, part.description) == (0, 0x0005, "B-1F-LC2 A-3F")
    assert data_units(TARGET, event("raised", "high_threshold")) == []


# --- the session against the simulated center -------------------------------------------


@pytest.fixture
def center() -> object:
    c = Center(address=CENTER, device=DEVICE).start()
    yield c
    c.stop()


def session_to(center: Center, **kw: object) -> Session:
    """A session to `center`; no running-state frames unless `heartbeat_s` is given."""
    kw.setdefault("heartbeat_s", None)
    return Session("127.0.0.1", center.port, DEVICE, CENTER, **kw)  # type: ignore[arg-type]


def test_an_opened_session_is_online_before_any_alarm_and_again_after_a_loss() -> None:
    first = Center(address=CENTER, device=DEVICE).start()
    port = first.port
    owner_done = threading.Event()
    owner = threading.Thread(target=owner_done.wait, name="courier")
    owner.start()
    s = session_to(first, heartbeat_s=60.0)
    try:
        s.open(owner, retry_s=0.05, retry_max_s=0.2)
        # connected and reporting its running state, with no alarm to send
        assert first.wait(lambda c: [r.data_type for r in c.received] == [21])
        (state,) = first.received[0].objects
        assert isinstance(state, DeviceState) and state.state == 0x01
        first.stop()  # the center goes away ...
        second = Center(port=port, address=CENTER, device=DEVICE).start()  # ... and is back
        try:
            assert second.wait(lambda c: [r.data_type for r in c.received] == [21], 15), \
                "not online again after the center came back"
            assert second.received[0].frame.serial == 0  # a new connection: serials anew
            owner_done.set()  # the courier ends: the connection is closed
            owner.join()
            assert second.wait(lambda c: c.connections == 1 and c.open_connections == 0, 15)
        finally:
            second.stop()
    finally:
        owner_done.set()
        s.close()


def test_the_center_confirms_the_encoders_frames_on_one_connection(center: Center) -> None:
    s = session_to(center, timeout_s=5.0)
    try:
        for unit in (FIRE[27:75], FAULT[27:75], RESET[27:39], HEARTBEAT[27:36]):
            s.exchange(unit)
    finally:
        s.close()
    assert [r.data_type for r in center.received] == [2, 2, 1, 21]
    assert [r.frame.serial for r in center.received] == [0, 1, 2, 3]
    assert center.connections == 1 and center.rejected == []


def test_a_denied_or_unanswered_frame_fails_and_the_next_try_is_confirmed(center) -> None:
    center.plan("deny", "drop")
    s = session_to(center, timeout_s=10.0)  # answers that come: however busy the machine
    try:
        with pytest.raises(DeliveryError, match="denied"):
            s.exchange(FIRE[27:75])
        s.timeout_s = 0.5  # the one the center drops: waited for this long
        with pytest.raises(DeliveryError, match="no confirm of frame 1"):
            s.exchange(FIRE[27:75])
        s.timeout_s = 10.0
        s.exchange(FIRE[27:75])
    finally:
        s.close()
    assert [r.action for r in center.received] == ["deny", "drop", "confirm"]


def test_the_center_refuses_corrupted_frames(center: Center) -> None:
    bad_sum = corrupt(FIRE, len(FIRE) - 3, 0)
    # data length 47 where the unit has 48 (checksum kept right): on a TCP stream the frame
    # then seems to end one byte early, and its end mark is wrong
    bad_length = corrupt(corrupt(FIRE, 24, 47), len(FIRE) - 3, 0x89)
    wrong_address = corrupt(corrupt(FIRE, 18, 1), len(FIRE) - 3, 0x8B)
    with socket.create_connection(("127.0.0.1", center.port)) as sock:
        sock.sendall(bad_sum + bad_length + wrong_address + FIRE)
        wait_until(lambda: len(center.rejected) == 3 and len(center.received) == 1)
        sock.settimeout(5)
        answers = bytearray()
        while len(answers) < 2 * len(CONFIRM):
            answers += sock.recv(4096)
    reasons = [why for _, why in center.rejected]
    assert reasons[0].startswith("checksum 00, the bytes sum to 8a")
    assert reasons[1].startswith("end 8923, not 2323")
    assert reasons[2].startswith("destination 000000000001 is not this center")
    # the frame with the wrong address is denied, the good one confirmed; garbage unanswered
    first, second = decode(answers[:len(CONFIRM)]), decode(answers[len(CONFIRM):])
    assert (first.command, second.command) == (Command.DENY, Command.CONFIRM)
    assert center.received[0].raw == FIRE


def test_a_time_sync_is_logged_and_confirmed_and_sets_nothing(center, caplog) -> None:
    caplog.set_level(logging.INFO, "parkwatch.gb26875")
    s = session_to(center)
    try:
        s.exchange(HEARTBEAT[27:36])
        serial = center.sync_clock(datetime(2030, 1, 1, 0, 0, 0, tzinfo=CST))
        assert center.wait(lambda c: serial in c.answers)
    finally:
        s.close()
    assert center.answers[serial] == Command.CONFIRM
    assert list(s.controls) == [(serial, DataType.SYNC_CLOCK)]
    assert "time sync to 2030-01-01T00:00:00+08:00 received and confirmed" in caplog.text
    assert datetime.now(CST).year < 2030


def test_a_description_longer_than_the_standards_31_bytes_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is 32 bytes in GB 18030"):
        Gb26875Target(type="gb26875", host="h", port=1, source_address=1, components={
            "X": {"component_type": 23, "component_address": 1, "description": "栋" * 16}})


def test_the_center_runs_from_the_command_line_and_prints_each_frame() -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "parkwatch.firmware_sim.gb26875_center", "--port", "0",
         "--device", str(DEVICE), "--drop", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("GB/T 26875.3 center listening on 127.0.0.1:"), first
        s = Session("127.0.0.1", int(first.rsplit(":", 1)[1]), DEVICE, CENTER, timeout_s=0.5,
                    heartbeat_s=None)
        try:
            with pytest.raises(DeliveryError, match="no confirm"):
                s.exchange(FIRE[27:75])  # dropped, as told
            s.timeout_s = 10.0  # this one is answered: however busy the machine
            s.exchange(FIRE[27:75])
        finally:
            s.close()
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert [(x["serial"], x["type"], x["action"]) for x in lines] == [
        (0, 2, "drop"), (1, 2, "confirm")]
    assert lines[1]["hex"][54:-6] == FIRE[27:75].hex()  # the data unit, as sent


def test_the_commit_stage_never_connects_and_the_courier_sends_the_rest_after_the_confirm(
        center: Center) -> None:
    import json

    from parkwatch.alarms.channels.gb26875 import Gb26875Sender
    from parkwatch.alarms.store import Pending

    target = TARGET.model_copy(update={"port": center.port, "destination_address": CENTER,
                                       "heartbeat_s": None})
    sender = Gb26875Sender("city-119", target)

    def row(change: str) -> Pending:
        return Pending(1, "a1", 1, "city-119", "", 0, 1e12, 0.0, 0.0,
                       json.dumps(event(change)).encode(), change)

    try:
        # not connected: the committer's publish refuses rather than wait for a connection
        with pytest.raises(DeliveryError, match="not connected"):
            sender.publish(row("raised"))
        assert center.connections == 0
        (raised,) = sender.publish_rows([row("raised")])  # the courier's: it connects
        sender.confirm(raised)
        cleared = sender.publish(row("cleared"))  # connected now: the recovery goes at once
        assert center.wait(lambda c: len(c.received) == 2)
        sender.confirm(cleared)  # its confirm, then the system reset, confirmed too
        sender.confirm(sender.publish(row("acknowledged")))  # no frame for that change
    finally:
        sender.session.close()
    assert [r.data_type for r in center.received] == [2, 2, 1]
    assert all(r.action == "confirm" for r in center.received) and center.connections == 1


def test_a_frame_that_cannot_be_written_fails_at_once_and_the_session_goes_on(
        center: Center) -> None:
    """A write refused by the socket (the connection broke under it) fails that frame and
    drops the connection; it never leaves the session locked (the commit stage publishes
    through it)."""
    s = session_to(center, timeout_s=10.0)
    try:
        s.exchange(FIRE[27:75])
        sock = s._sock
        assert sock is not None
        sock.shutdown(socket.SHUT_WR)  # the next write gets EPIPE
        outcome: list[BaseException | None] = []

        def post() -> None:
            try:
                s.post(FIRE[27:75], connect=False)
                outcome.append(None)
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        t = threading.Thread(target=post, daemon=True)
        t.start()
        t.join(30)
        assert not t.is_alive(), "the post hung (the session's lock never released)"
        assert isinstance(outcome[0], DeliveryError) and "send failed" in str(outcome[0])
        s.exchange(FIRE[27:75])  # a new connection, confirmed
    finally:
        if s._lock.acquire(timeout=5):  # a hung session's close would hang the test too
            s._lock.release()
            s.close()
    assert center.connections == 2
