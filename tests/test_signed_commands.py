"""Signed operators' commands (docs/contract.md, Signed commands) against a daemon and a real
Mosquitto: with ``alarms.require_signed_commands`` an acknowledgement is carried out only when
it is signed by the key of the operator it names, for this park, this alarm and this command,
fresh and never seen before; everything else is refused and counted by reason, and the name
recorded is the verified signer's.  The signing side is checked against OpenSSL's own Ed25519,
so the format is what the contract says, not what this code happens to do."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import example_config, http_json, wait_until
from parkwatch.commandsig import (
    PREFIX,
    CommandError,
    public_text,
    read_envelope,
    sign,
    write_new_key,
)
from parkwatch.daemon.httpapi import state_token
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.firmware_sim.devices import SimulatedPark

PARK = "xinqiao"
ACK_TOPIC = f"parkwatch/v1/{PARK}/commands/ack"
WANG = Ed25519PrivateKey.generate()
ZHANG = Ed25519PrivateKey.generate()
MALLORY = Ed25519PrivateKey.generate()  # nobody's key in the config


def operators() -> list[dict[str, Any]]:
    return [{"id": "王工", "public_key": public_text(WANG)},
            {"id": "张三", "public_key": public_text(ZHANG)},
            {"id": "district-duty"}]  # listed, but without a key: cannot sign


@pytest.fixture
def signed_daemon(broker: LocalMosquitto, tmp_path: Path,
                  serial_devices: SimulatedPark) -> Iterator[Any]:
    from parkwatch.daemon.app import Daemon

    cfg = example_config(broker, tmp_path, {("alarms", "operators"): operators(),
                                            ("alarms", "require_signed_commands"): True})
    d = Daemon(cfg)
    d.start()
    assert d.uplink.link.connected.wait(5)
    wait_until(lambda: all(drv.subscribed.is_set() for drv in d.drivers if hasattr(drv, "link")))
    yield d
    d.stop()


def _fire(subscriber: Any, device: Any) -> str:
    device.send("A-3F-FB1", {"event": "press"})
    events = subscriber.wait_events(lambda ev: any(
        e["sensor_id"] == "A-3F-FB1" and e["event"] == "raised" for e in ev))
    return str(next(e["alarm_id"] for e in events if e["event"] == "raised"))


def _publish(device: Any, command: Any) -> None:
    data = command if isinstance(command, bytes) else json.dumps(command).encode()
    device.publish(ACK_TOPIC, data).wait_for_publish(5)


def _refusals(d: Any) -> dict[str, int]:
    return dict(d.alarms.refused.total)


def _tampered(envelope: dict[str, str], **changes: Any) -> dict[str, str]:
    body = json.loads(envelope["body"])
    body.update(changes)
    return {**envelope, "body": json.dumps(body, ensure_ascii=False, separators=(",", ":"))}


def test_only_a_fresh_command_signed_by_the_named_operator_acknowledges(
        signed_daemon: Any, subscriber: Any, device: Any) -> None:
    d = signed_daemon
    alarm_id = _fire(subscriber, device)
    good = sign(ZHANG, "ack", PARK, alarm_id, "张三", note="收到，已到现场")
    refused = {
        "unsigned": {"alarm_id": alarm_id, "by": "王工"},
        # mallory signs with her own key and claims to be 王工
        "forged": sign(MALLORY, "ack", PARK, alarm_id, "王工"),
        # 张三's genuine command, with its operator changed on the way
        "altered": _tampered(good, by="王工"),
        "stale": sign(WANG, "ack", PARK, alarm_id, "王工", now=time.time() - 3600),
        "future": sign(WANG, "ack", PARK, alarm_id, "王工", now=time.time() + 3600),
        "other_park": sign(WANG, "ack", "other-park", alarm_id, "王工"),
        "other_command": sign(WANG, "reset", PARK, alarm_id, "王工"),
        "no_key": sign(WANG, "ack", PARK, alarm_id, "district-duty"),
        "stranger": sign(MALLORY, "ack", PARK, alarm_id, "mallory"),
    }
    for command in refused.values():
        _publish(device, command)
    wait_until(lambda: d.alarms.refused.count == len(refused), what="every refusal counted")
    assert _refusals(d) == {"unsigned": 1, "bad_signature": 2, "stale": 2, "wrong_park": 1,
                            "wrong_command": 1, "no_key": 1, "not_operator": 1}

    _publish(device, good)
    events = subscriber.wait_events(lambda ev: any(
        e["alarm_id"] == alarm_id and e["event"] == "acknowledged" for e in ev))
    (acked,) = [e for e in events if e["alarm_id"] == alarm_id and e["event"] == "acknowledged"]
    # the verified signer, and the alarm's next change: no refused command published anything
    assert (acked["acked_by"], acked["seq"]) == ("张三", 2)

    # the same command again, word for word: a replay
    _publish(device, good)
    wait_until(lambda: _refusals(d).get("replayed") == 1, what="the replay refused")
    status = d.status()
    assert status["refused_commands"] == len(refused) + 1


def test_a_replay_is_refused_after_a_restart_too(broker: LocalMosquitto, tmp_path: Path,
                                                  serial_devices: SimulatedPark,
                                                  subscriber: Any, device: Any) -> None:
    from parkwatch.daemon.app import Daemon

    cfg = example_config(broker, tmp_path, {("alarms", "operators"): operators(),
                                            ("alarms", "require_signed_commands"): True})
    d = Daemon(cfg)
    d.start()
    try:
        assert d.uplink.link.connected.wait(5)
        wait_until(lambda: all(drv.subscribed.is_set() for drv in d.drivers
                               if hasattr(drv, "link")))
        alarm_id = _fire(subscriber, device)
        ack = sign(WANG, "ack", PARK, alarm_id, "王工")
        assert d.commands.request("ack", alarm_id, ack, "http").value == "done"
    finally:
        d.stop()
    d = Daemon(cfg)
    d.start()
    try:
        with pytest.raises(CommandError) as refused:
            d.commands.request("ack", alarm_id, ack, "http")
        assert refused.value.reason == "replayed"
        assert _refusals(d) == {"replayed": 1}
    finally:
        d.stop()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parkwatch", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_the_cli_signs_with_the_operators_key_and_is_told_when_it_must(
        signed_daemon: Any, subscriber: Any, device: Any, tmp_path: Path) -> None:
    d = signed_daemon
    alarm_id = _fire(subscriber, device)
    key_file = tmp_path / "wang.pem"
    out = _cli("keygen", str(key_file), "--operator", "王工", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    # the key the config knows is WANG's: a new key is not 王工's
    url = f"http://127.0.0.1:{d.api.port}"
    token = d.state_dir / "api.token"
    common = ["--url", url, "--token-file", str(token), "--by", "王工"]
    out = _cli("reset", alarm_id, *common, "--key", str(key_file), cwd=tmp_path)
    assert out.returncode == 1 and "bad_signature" in out.stderr, out.stderr
    out = _cli("reset", alarm_id, *common, cwd=tmp_path)
    assert out.returncode == 1 and "unsigned" in out.stderr and "--key" in out.stderr

    wang_file = tmp_path / "wang-real.pem"
    wang_file.write_bytes(_pem(WANG))
    out = _cli("reset", alarm_id, *common, "--key", str(wang_file), "--note", "按钮已复位",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    status, body = http_json(d.api.port, "GET", f"/api/alarms/{alarm_id}", None,
                             state_token(d.state_dir))
    assert status == 200 and body["alarm"]["active"] is False
    assert (body["details"]["reset_by"], body["details"]["reset_note"]) == ("王工", "按钮已复位")


def _pem(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_a_command_signed_by_openssl_is_read_and_verified(tmp_path: Path) -> None:
    """The contract's recipe with a standard tool: sign the prefix and the body's bytes."""
    key_file = tmp_path / "op.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key_file)],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "pkey", "-in", str(key_file), "-pubout", "-outform",
                          "DER"], check=True, capture_output=True).stdout
    public = base64.b64encode(der[-32:]).decode()
    body = json.dumps({"command": "ack", "park": PARK, "alarm_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                       "by": "王工", "note": "收到", "ts": "2026-12-05T10:00:00.000Z",
                       "nonce": "Vq3n8ZcX1pLr0sTt2uWw"}, ensure_ascii=False)
    signed = tmp_path / "signed.bin"
    signed.write_bytes(PREFIX + body.encode("utf-8"))
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(key_file), "-rawin",
                          "-in", str(signed)], check=True, capture_output=True).stdout
    cmd = read_envelope({"schema": "parkwatch.command/1", "body": body,
                         "sig": base64.b64encode(sig).decode()})
    from parkwatch.commandsig import public_key

    assert cmd.verify(public_key(public)) and cmd.by == "王工" and cmd.note == "收到"
    assert not cmd.verify(public_key(public_text(MALLORY)))


def test_keygen_writes_a_key_that_signs_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    key = write_new_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    cmd = read_envelope(sign(key, "ack", PARK, "A1", "王工"))
    from parkwatch.commandsig import load_private_key, public_key

    assert cmd.verify(public_key(public_text(load_private_key(path))))
    with pytest.raises(FileExistsError):
        write_new_key(path)


@pytest.mark.parametrize("envelope, why", [
    ({"schema": "parkwatch.command/1", "body": "{}", "sig": "AA=="}, "64 bytes"),
    ({"schema": "parkwatch.command/2", "body": "{}", "sig": ""}, "schema"),
    ({"schema": "parkwatch.command/1", "body": 5, "sig": ""}, "strings"),
    ({"schema": "parkwatch.command/1", "body": "[", "sig": base64.b64encode(bytes(64)).decode()},
     "unreadable"),
])
def test_envelopes_that_cannot_be_read_say_why(envelope: dict[str, Any], why: str) -> None:
    with pytest.raises(CommandError) as err:
        read_envelope(envelope)
    assert err.value.reason == "bad_command" and why in str(err.value)


def test_a_gateway_without_operator_keys_does_not_load_openssl() -> None:
    """The OpenSSL binding costs a gateway about 7 MB of its memory budget: it is loaded only
    when a key is used."""
    code = ("import sys, parkwatch.daemon.app, parkwatch.cli.commands; "
            "print('cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"
