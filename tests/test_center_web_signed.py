"""Acknowledging from the console where gateways require signed commands: an operator with a
key file in ``commands.signing_keys_dir`` sends an ack signed with it (the gateway's own
check admits it), one without sends the plain ack, and a key file that cannot be used sends
nothing and says so; a signing directory that is not there is a config error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from center_web import Client
from conftest import wait_until
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.config import load_center_config
from parkwatch.center.service import CenterService
from parkwatch.center.users import add_user
from parkwatch.commandsig import is_signed, public_key, public_text, read_envelope, write_new_key
from parkwatch.config import ConfigError
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import PREFIX, Gateway, center_yaml, event


def _config(tmp_path: Path, broker: LocalMosquitto, keys: Path | None) -> Path:
    path = center_yaml(tmp_path / "center.yaml", broker, f"sqlite:///{tmp_path / 'c.db'}", "s")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["commands"] = {"signing_keys_dir": str(keys) if keys else None}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def signing_center(broker: LocalMosquitto, tmp_path: Path) -> Iterator[CenterService]:
    keys = tmp_path / "keys"
    keys.mkdir()
    service = CenterService(load_center_config(_config(tmp_path, broker, keys)))
    for name in ("王工", "李工", "赵工"):
        assert add_user(service.store, name, "operator", "long-enough-pw") is None
    service.start()
    wait_until(service.ingest.subscribed.is_set, 10, "the center subscribed")
    wait_until(lambda: service.web is not None and service.web.started, 10, "console serving")
    yield service
    service.stop()


def test_an_operator_with_a_key_signs_one_without_sends_the_plain_ack(
        signing_center: CenterService, broker: LocalMosquitto, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    pub = public_text(write_new_key(keys / "王工.key"))
    (keys / "赵工.key").write_text("not a key\n", encoding="utf-8")
    got: list[dict[str, Any]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-signed-acks")
    sub.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
    sub.connect(broker.host, broker.port)
    sub.subscribe(f"{PREFIX}/+/commands/ack", qos=1)
    sub.loop_start()
    gw = Gateway(broker, "xinqiao")
    assert signing_center.web is not None
    port = signing_center.web.port
    try:
        alarms = [new_alarm_id(time.time()) for _ in range(3)]
        for a in alarms:
            gw.publish(event("xinqiao", a, 1))
        wait_until(lambda: all(signing_center.store.alarm(a) for a in alarms), 10,
                   "the alarms stored")

        def ack(user: str, alarm_id: str) -> int:
            c = Client(port)
            assert c.login(user, "long-enough-pw").status == 303
            page = c.get(f"/alarms/{alarm_id}")
            return c.post(f"/alarms/{alarm_id}/ack", {"csrf": page.csrf(), "note": "到场"}).status

        assert ack("王工", alarms[0]) == 303
        wait_until(lambda: len(got) == 1, 10, "the signed ack on the broker")
        signed = got[0]
        assert is_signed(signed)
        cmd = read_envelope(signed)
        assert cmd.verify(public_key(pub))  # what the gateway checks with 王工's public_key
        assert (cmd.command, cmd.park, cmd.alarm_id, cmd.by, cmd.note) == \
            ("ack", "xinqiao", alarms[0], "王工", "到场")
        assert abs(cmd.ts - time.time()) < 60

        assert ack("李工", alarms[1]) == 303  # no key file: the plain ack
        wait_until(lambda: len(got) == 2, 10, "the plain ack")
        assert got[1] == {"alarm_id": alarms[1], "by": "李工", "note": "到场"}

        assert ack("赵工", alarms[2]) == 503  # a key file that is no key: nothing sent
        assert signing_center.store.commands(alarms[2]) == []
        assert [c["author"] for a in alarms[:2] for c in signing_center.store.commands(a)] == \
            ["王工", "李工"]
    finally:
        sub.disconnect()
        sub.loop_stop()
        gw.close()
    assert len(got) == 2


def test_a_signing_directory_that_is_not_there_is_a_config_error(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_center_config(_config(tmp_path, broker, tmp_path / "no-such-dir"))
    (problem,) = info.value.problems
    assert "commands.signing_keys_dir" in str(problem) and "不存在" in str(problem)
    assert "center.yaml:" in str(problem)  # the file and its line
