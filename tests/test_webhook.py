"""Webhook delivery against a running daemon: signed, retried with backoff, expired, and never in
the way of another target.

The example park's daemon runs in-process on the test broker with webhook targets pointed at
local receivers (tests/webhook_receiver.py).  Only its MQTT (LoRa) sensors are kept, so no
absent serial port raises data alarms while these tests watch the outbox.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import EXAMPLE, Device, Subscriber, example_config, wait_until
from parkwatch.alarms.channels.webhook import sign
from parkwatch.alarms.event import load_schema
from parkwatch.config import ParkConfig
from parkwatch.daemon.app import Daemon
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.devtools.parkdata import mqtt_only
from webhook_receiver import WebhookReceiver, free_port, signature, verify

SECRET = "parkwatch-test-hook-secret-0123456789"
SECRET_ENV = "PARKWATCH_TEST_HOOK_SECRET"
FAST_RETRY = {"initial_s": 0.2, "max_s": 1.0}
FIRE_ONLY = {"kinds": ["fire"]}  # the tests press buttons; nothing else reaches the hooks
BUTTON = "A-3F-FB1"


def lora_only(data: dict[str, Any]) -> dict[tuple, Any]:
    """Overrides that keep the example's MQTT driver and its sensors only."""
    kept = mqtt_only(copy.deepcopy(data))
    return {(key,): kept[key] for key in ("drivers", "sensors", "outputs")} | {
        ("linkage", "rules"): kept["linkage"]["rules"]}


def hook_config(broker: LocalMosquitto, workdir: Path, targets: dict[str, Any],
                subscribers: list[dict[str, Any]]) -> ParkConfig:
    """The example park on the bench (MQTT devices only) with these webhook targets and
    subscribers."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    ov = lora_only(data)
    ov[("alarms", "targets")] = {"journal": {"type": "log"}, **targets}
    # `district` stays: the escalation ladders name it
    ov[("alarms", "subscribers")] = [
        {"id": "district", "party": "escalation", "target": "journal"}, *subscribers]
    return example_config(broker, workdir, ov)


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "secret_env": SECRET_ENV, "retry": FAST_RETRY,
            **extra}


def fire_subscriber(sid: str, target: str) -> dict[str, Any]:
    return {"id": sid, "party": "any", "target": target, "filter": FIRE_ONLY}


@contextmanager
def running(cfg: ParkConfig) -> Iterator[Daemon]:
    d = Daemon(cfg)
    d.start()
    try:
        drivers = [drv for drv in d.drivers if hasattr(drv, "link")]
        assert d.uplink.link.connected.wait(5)
        for drv in drivers:
            assert drv.link.connected.wait(5)
        wait_until(lambda: all(drv.subscribed.is_set() for drv in drivers))
        yield d
    finally:
        d.stop()


def outbox(d: Daemon, target: str) -> list[dict[str, Any]]:
    """The target's outbox rows, in order, read on a connection of our own."""
    db = sqlite3.connect(d.store_path, timeout=5)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT * FROM outbox WHERE target=? ORDER BY id", (target,))]
    finally:
        db.close()


def change_payload(d: Daemon, alarm_id: str, seq: int) -> bytes:
    db = sqlite3.connect(d.store_path, timeout=5)
    try:
        (text,) = db.execute("SELECT payload FROM changes WHERE alarm_id=? AND seq=?",
                             (alarm_id, seq)).fetchone()
    finally:
        db.close()
    return text.encode("utf-8")


@pytest.fixture(autouse=True)
def hook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


# --- the receiver's check itself ----------------------------------------------------------------


def test_signature_check_accepts_the_daemons_signature_and_nothing_else():
    body = json.dumps({"alarm_id": "x", "seq": 1, "message": "三层 火警"},
                      ensure_ascii=False).encode()
    good = sign(SECRET, body)  # the daemon's own signer
    assert good == signature(SECRET, body)
    assert good.startswith("sha256=") and len(good) == len("sha256=") + 64
    assert verify(SECRET, body, good)
    assert not verify(SECRET, body + b" ", good)  # one byte more
    assert not verify(SECRET, body.replace(b'"seq": 1', b'"seq": 2'), good)  # tampered
    assert not verify("another-secret-0123456789", body, good)  # wrong key
    assert not verify(SECRET, body, good[len("sha256="):])  # no scheme
    assert not verify(SECRET, body, "sha1=" + good[len("sha256="):])
    assert not verify(SECRET, body, None) and not verify(SECRET, body, "")
    assert not verify(SECRET, body, good[:-1] + ("0" if good[-1] != "0" else "1"))


# --- against the daemon ---------------------------------------------------------------------


def test_every_post_is_signed_and_verifies(broker, tmp_path, device: Device):
    with ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver(SECRET))
        wrong = stack.enter_context(WebhookReceiver("not-the-secret-of-this-target"))
        plain = stack.enter_context(WebhookReceiver(SECRET))
        cfg = hook_config(broker, tmp_path, {
            "hook": webhook(hook.url),
            "wrong": webhook(wrong.url),
            "plain": {"type": "webhook", "url": plain.url, "retry": FAST_RETRY},  # unsigned
        }, [fire_subscriber("ops", "hook"), fire_subscriber("ops2", "wrong"),
            fire_subscriber("ops3", "plain")])
        d = stack.enter_context(running(cfg))

        device.send(BUTTON, {"event": "press"})
        device.send(BUTTON, {"event": "reset"})
        for r in (hook, wrong, plain):
            r.wait_for(lambda reqs: len([q for q in reqs if q.ok]) >= 2)

        reqs = hook.snapshot()
        assert [r.json["event"] for r in reqs] == ["raised", "cleared"]
        assert all(r.signed and r.signature_ok for r in reqs)
        assert hook.bad_signatures == 0 and hook.missing_signatures == 0
        alarm_id = reqs[0].json["alarm_id"]
        for r in reqs:
            assert r.path == "/hook"
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["x-parkwatch-subscriber"] == "ops"
            assert r.delivery == f"{alarm_id}/{r.json['seq']}"
            # the signature covers these very bytes: any change to them fails the check
            sig = r.headers["x-parkwatch-signature"]
            assert verify(SECRET, r.body, sig)
            assert not verify(SECRET, r.body.replace(b'"seq":', b'"seq": '), sig)
            assert not verify(SECRET, r.body[:-1], sig)
        # a receiver holding another secret rejects every one; an unsigned target sends none
        assert wrong.bad_signatures == len(wrong.snapshot()) >= 2
        assert all(r.signature_ok is False for r in wrong.snapshot())
        assert plain.missing_signatures == len(plain.snapshot()) >= 2
        assert all("x-parkwatch-signature" not in r.headers for r in plain.snapshot())
        assert d.couriers["hook"].failures == 0


def test_the_body_is_exactly_the_contract_event(broker, tmp_path, device: Device):
    validator = jsonschema.Draft202012Validator(load_schema())
    sub = Subscriber(broker)
    with ExitStack() as stack:
        stack.callback(sub.close)
        hook = stack.enter_context(WebhookReceiver(SECRET))
        cfg = hook_config(broker, tmp_path, {"hook": webhook(hook.url)},
                          [fire_subscriber("ops", "hook")])
        d = stack.enter_context(running(cfg))

        device.send(BUTTON, {"event": "press"})
        device.send(BUTTON, {"event": "reset"})
        reqs = hook.wait_for(lambda reqs: len(reqs) >= 2)
        sub.wait_events(lambda ev: len([e for e in ev if e["sensor_id"] == BUTTON]) >= 2)
        uplink = {(e["alarm_id"], e["seq"]): p for t, p, _ in list(sub.messages)
                  if t.endswith("/events") and (e := json.loads(p))["sensor_id"] == BUTTON}

        for r in reqs:
            errors = [e.message for e in validator.iter_errors(r.json)]
            assert errors == [], errors
            assert r.json["schema"] == "parkwatch.alarm/1"
            assert r.json["sensor_id"] == BUTTON and r.json["sensor_kind"] == "fire_button"
            alarm_id, seq = r.key  # type: ignore[misc]
            # byte for byte what the store committed and what the command center received
            assert r.body == change_payload(d, alarm_id, seq)
            assert r.body == uplink[(alarm_id, seq)]
            assert int(r.headers["content-length"]) == len(r.body)
        assert [(r.json["event"], r.json["seq"]) for r in reqs] == [("raised", 1), ("cleared", 2)]


def test_500s_are_retried_with_backoff_and_delivered_once(broker, tmp_path, device: Device):
    with ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver(SECRET))
        cfg = hook_config(broker, tmp_path, {"hook": webhook(hook.url)},
                          [fire_subscriber("ops", "hook")])
        d = stack.enter_context(running(cfg))

        hook.fail_next(3)
        device.send(BUTTON, {"event": "press"})
        hook.wait_for(lambda reqs: any(r.ok for r in reqs), timeout=6)
        # recorded as delivered: a delivered row is never sent again
        wait_until(lambda: [r["state"] for r in outbox(d, "hook")] == ["delivered"],
                   what="the row marked delivered")
        reqs = hook.snapshot()
        assert [r.status for r in reqs] == [500, 500, 500, 200]
        assert len({r.body for r in reqs}) == 1 and len({r.delivery for r in reqs}) == 1
        assert all(r.signature_ok for r in reqs)
        # backoff: 0.2 s, then 0.4 s, then 0.8 s (initial_s × factor 2 per attempt)
        gaps = [b.at - a.at for a, b in pairwise(reqs)]
        for gap, want in zip(gaps, (0.2, 0.4, 0.8), strict=True):
            assert want * 0.9 <= gap <= want + 0.5, gaps

        (row,) = outbox(d, "hook")
        assert (row["alarm_id"], row["seq"]) == reqs[-1].key
        assert row["state"] == "delivered" and row["attempts"] >= 4, row
        assert "HTTP 500" in row["last_error"], row
        assert d.couriers["hook"].failures == 3 and d.couriers["hook"].delivered == 1


def test_backoff_is_capped_at_max_s(broker, tmp_path, device: Device):
    with ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver(SECRET))
        retry = {"initial_s": 0.1, "max_s": 0.3, "factor": 3}
        cfg = hook_config(broker, tmp_path, {"hook": webhook(hook.url, retry=retry)},
                          [fire_subscriber("ops", "hook")])
        stack.enter_context(running(cfg))

        hook.fail_next(4)
        device.send(BUTTON, {"event": "press"})
        reqs = hook.wait_for(lambda reqs: any(r.ok for r in reqs), timeout=5)
        gaps = [b.at - a.at for a, b in pairwise(reqs)]
        assert len(gaps) == 4
        # 0.1, then 0.3 (not 0.9, not 2.7): max_s caps the wait
        for gap, want in zip(gaps, (0.1, 0.3, 0.3, 0.3), strict=True):
            assert want * 0.9 <= gap <= want + 0.4, gaps


def test_a_failing_target_does_not_delay_the_others(broker, tmp_path, device: Device):
    sub = Subscriber(broker)
    with ExitStack() as stack:
        stack.callback(sub.close)
        good = stack.enter_context(WebhookReceiver(SECRET))
        bad = stack.enter_context(WebhookReceiver(SECRET))
        hanging = stack.enter_context(WebhookReceiver(SECRET))
        bad.fail_for(math.inf)  # 500 to everything
        hanging.delay_s = 30.0  # answers only when stopped: every attempt times out
        closed = f"http://127.0.0.1:{free_port()}/hook"  # connection refused
        cfg = hook_config(broker, tmp_path, {
            "bad": webhook(bad.url),
            "closed": webhook(closed),
            "hanging": webhook(hanging.url, timeout_s=1.0),
            "good": webhook(good.url),
        }, [fire_subscriber("s-bad", "bad"), fire_subscriber("s-closed", "closed"),
            fire_subscriber("s-hanging", "hanging"), fire_subscriber("s-good", "good")])
        d = stack.enter_context(running(cfg))

        def uplink_has(n: int) -> None:
            sub.wait_events(lambda ev: len([e for e in ev if e["sensor_id"] == BUTTON]) >= n,
                            timeout=2.0)

        t0 = time.monotonic()
        device.send(BUTTON, {"event": "press"})
        good.wait_for(lambda reqs: len(reqs) >= 1, timeout=2.0)
        uplink_has(1)
        first = time.monotonic() - t0
        # the failing ones are failing meanwhile, and keep failing
        bad.wait_for(lambda reqs: len(reqs) >= 3, timeout=3.0)
        hanging.wait_for(lambda reqs: len(reqs) >= 1, timeout=2.0)
        wait_until(lambda: d.couriers["closed"].failures >= 3, timeout=3.0, what="refusals")
        wait_until(lambda: d.couriers["hanging"].failures >= 1, timeout=3.0, what="a timeout")

        # the next change goes through just as promptly while the others are stuck
        t1 = time.monotonic()
        device.send(BUTTON, {"event": "reset"})
        good.wait_for(lambda reqs: len(reqs) >= 2, timeout=2.0)
        uplink_has(2)
        second = time.monotonic() - t1
        assert first < 2.0 and second < 2.0, (first, second)

        assert [r.json["event"] for r in good.snapshot()] == ["raised", "cleared"]
        assert all(r.status == 500 for r in bad.snapshot())
        assert {r.key for r in bad.snapshot()} == {good.snapshot()[0].key}  # still the first
        for name, error in (("bad", "HTTP 500"), ("closed", "ConnectionRefusedError"),
                            ("hanging", "TimeoutError")):
            rows = outbox(d, name)
            assert [r["state"] for r in rows] == ["pending", "pending"], (name, rows)
            assert rows[0]["attempts"] >= 1 and error in (rows[0]["last_error"] or ""), rows
            assert d.couriers[name].failing
        # (the receiver sees a request a moment before the courier marks its row)
        for target in ("good", "uplink"):
            wait_until(lambda t=target: [r["state"] for r in outbox(d, t)] == [
                "delivered", "delivered"], timeout=2.0, what=f"{target} rows delivered")
        status = d.call(d.status)
        assert status["targets"]["bad"]["pending"] == 2 and status["targets"]["bad"]["failing"]
        assert status["targets"]["good"]["pending"] == 0
        hanging.stop()  # answers its waiting request now: the courier stops with the daemon


def test_a_delivery_expires_after_expire_after_s(broker, tmp_path, device: Device, caplog):
    caplog.set_level(logging.INFO, logger="parkwatch.delivery")
    with ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver(SECRET))
        hook.fail_for(math.inf)
        cfg = hook_config(broker, tmp_path, {"hook": webhook(hook.url, expire_after_s=1.0)},
                          [fire_subscriber("ops", "hook")])
        d = stack.enter_context(running(cfg))

        t0 = time.monotonic()
        device.send(BUTTON, {"event": "press"})
        wait_until(lambda: [r["state"] for r in outbox(d, "hook")] == ["expired"], timeout=4.0,
                   what="the delivery to expire")
        took = time.monotonic() - t0
        assert 0.9 <= took <= 2.5, took
        (row,) = outbox(d, "hook")
        assert 1.0 <= row["done_at"] - row["created_at"] <= 2.0, row
        assert row["attempts"] >= 2 and "HTTP 500" in row["last_error"], row
        tried = len(hook.snapshot())
        assert tried == row["attempts"]
        logged = [r for r in caplog.records if r.name == "parkwatch.delivery"
                  and r.levelno == logging.ERROR and "expired" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in caplog.records]
        assert row["alarm_id"] in logged[0].getMessage()
        assert f"after {row['attempts']} attempt(s)" in logged[0].getMessage()
        assert d.couriers["hook"].expired == 1
        assert d.call(d.status)["targets"]["hook"]["expired"] == 1

        # given up: the next change is delivered when the hook heals, and the one given up is
        # not tried again (the courier keeps the order: a retry would have come before it)
        hook.heal()
        device.send(BUTTON, {"event": "reset"})
        reqs = hook.wait_for(lambda reqs: any(r.ok for r in reqs), timeout=3.0)
        assert [r.json["event"] for r in reqs if r.ok] == ["cleared"]
        assert len([r for r in reqs if r.json["event"] == "raised"]) == tried
        wait_until(lambda: [r["state"] for r in outbox(d, "hook")] == ["expired", "delivered"],
                   what="the next change delivered")


# --- answers that are not a 2xx ------------------------------------------------------------------


def test_a_redirect_is_a_failure_not_a_delivery(broker, tmp_path, device: Device):
    with ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver(SECRET))
        cfg = hook_config(broker, tmp_path, {"hook": webhook(hook.url)},
                          [fire_subscriber("ops", "hook")])
        d = stack.enter_context(running(cfg))

        hook.redirect_to = "/moved"  # e.g. a proxy's redirect; GET /moved answers 200
        device.send(BUTTON, {"event": "press"})
        hook.wait_for(lambda reqs: len(reqs) >= 2, timeout=3.0)
        got = [(r.method, r.path, r.status) for r in hook.snapshot()]
        # the answer to the POST was 302, not 2xx: a failure, retried with the event's body
        assert got[:2] == [("POST", "/hook", 302), ("POST", "/hook", 302)], got
        wait_until(lambda: "HTTP 302" in (outbox(d, "hook")[0]["last_error"] or ""),
                   what="the failure recorded")
        (row,) = outbox(d, "hook")
        assert row["state"] == "pending", row
        hook.heal()
        wait_until(lambda: [r["state"] for r in outbox(d, "hook")] == ["delivered"],
                   timeout=3.0)
        assert [r.json["event"] for r in hook.delivered()] == ["raised"]


def test_a_malformed_answer_is_a_counted_failure(broker, tmp_path, device: Device, caplog):
    caplog.set_level(logging.INFO, logger="parkwatch.delivery")
    with ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver(SECRET))
        cfg = hook_config(broker, tmp_path, {"hook": webhook(hook.url)},
                          [fire_subscriber("ops", "hook")])
        d = stack.enter_context(running(cfg))

        hook.broken_next(1)
        device.send(BUTTON, {"event": "press"})
        wait_until(lambda: [r["state"] for r in outbox(d, "hook")] == ["delivered"],
                   timeout=4.0)
        (row,) = outbox(d, "hook")
        assert [r.status for r in hook.snapshot()] == [0, 200]
        unexpected = [r.getMessage() for r in caplog.records if "unexpected" in r.getMessage()]
        assert unexpected == []
        assert row["attempts"] == 2 and row["last_error"], row
        assert d.couriers["hook"].failures == 1
