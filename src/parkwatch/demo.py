"""`parkwatch demo`: a private broker, simulated devices and the daemon, shown as an operator.

Nothing to configure: it plays the example 厂中厂 park's demo scenario, prints each alarm event
the way a command-center operator would read it, acknowledges the alarms as the duty officer
once they have cleared, and stops by itself, leaving no process behind.

The broker is the gateway's Mosquitto as shipped (examples/mosquitto/parkwatch.conf and its
ACL, docs/securing.md): every client logs in.  The daemon logs in as `parkwatch`, this view as
`operator`, and every simulated MQTT device with its sensor id, so that a device can publish only
its own uplink, as it should on a gateway.

A command center (``parkwatch center`` on SQLite, :mod:`parkwatch.democenter`) listens on the
same broker as `center`; the demo prints its console's address with a login, so that the
alarms can be watched arriving on the board in a browser while the demo runs.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.cells import cell_len

from parkwatch.alarms.messages import WORDS
from parkwatch.democenter import TICKET_USERS, DemoCenter
from parkwatch.devtools.localbroker import BrokerUnavailable, ensure_mosquitto
from parkwatch.devtools.shippedbroker import ShippedMosquitto, find_mosquitto_passwd
from parkwatch.firmware_sim import scenarios
from parkwatch.firmware_sim.devices import (
    CENTER_LOGIN,
    OPERATOR_LOGIN,
    SimulatedPark,
    bench_logins,
    bench_overrides,
    login_overrides,
)
from parkwatch.logsetup import setup_logging
from parkwatch.mqttlink.link import set_nodelay
from parkwatch.schema import load_config

COLOURS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m"}
RESET = "\033[0m"
DUTY_OFFICER = "王工"  # an operator of the example config (alarms.operators)


def example_path() -> Path:
    return Path(str(resources.files("parkwatch.examples").joinpath("park.yaml")))


class OperatorView:
    """Subscribes to the command-center events and prints them for a human."""

    def __init__(self, port: int, park: str, colour: bool, password: str) -> None:
        self.colour = colour
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="parkwatch-demo-operator")
        c.username_pw_set(OPERATOR_LOGIN, password)
        c.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.subscribe(f"parkwatch/v1/{park}/events", qos=1)
        c.loop_start()
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        e = json.loads(msg.payload)
        with self.lock:
            self.events.append(e)
        print(row(e, time.strftime("%H:%M:%S"), self.colour), flush=True)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def row(e: dict[str, Any], clock: str, colour: bool = False) -> str:
    """One event as a row whose columns line up in a terminal (a Chinese character takes two
    columns there)."""
    words = WORDS["zh"]
    sev = e["severity"]
    place = " ".join(x for x in (e["building"], e["floor"], e["zone"]) if x)
    head = (f"{clock}  {pad(words[sev], 4)} {sev:8s} "
            f"{pad(words[e['event']], 8)} {e['event']:16s}")
    if colour:
        head = COLOURS.get(sev, "") + head + RESET
    tenants = ",".join(e["tenants"]) or "-"
    return f"{head} {pad(place, 10)} {pad(f'[{tenants}]', 24)} {e['message']}"


def pad(text: str, columns: int) -> str:
    """`text` padded with spaces to `columns` terminal columns (wide characters count two)."""
    return text + " " * max(0, columns - cell_len(text))


def run_demo(duration_s: float = 45.0, verbose: bool = False, speed: float = 1.0) -> int:
    setup_logging("INFO" if verbose else "WARNING")
    log = logging.getLogger("parkwatch.demo")
    try:
        ensure_mosquitto(install=True)
        find_mosquitto_passwd()
    except BrokerUnavailable as exc:
        print(f"parkwatch demo: {exc}", file=sys.stderr)
        return 1
    from parkwatch.daemon.app import Daemon

    colour = sys.stdout.isatty()
    example = load_config(example_path())
    logins = bench_logins(example)
    with tempfile.TemporaryDirectory(prefix="parkwatch-demo-") as tmp, \
            ShippedMosquitto(logins, workdir=Path(tmp)) as broker:
        cfg = load_config(example_path(), {**bench_overrides(example, broker.port, tmp),
                                           **login_overrides(example, logins, tmp)})
        center = DemoCenter(Path(tmp), broker.port, logins[CENTER_LOGIN])
        try:
            center.start()
            fleet = SimulatedPark(cfg, client_prefix="parkwatch-demo-device", logins=logins)
            daemon = Daemon(cfg)
            view = OperatorView(broker.port, cfg.park.id, colour, logins[OPERATOR_LOGIN])
        except BaseException:
            center.stop()
            raise
        plan = scenarios.build(cfg, "demo")
        stop = threading.Event()
        print(f"parkwatch demo — {cfg.park.name} ({cfg.park.id}): {len(cfg.buildings)} buildings, "
              f"{len(cfg.tenants)} tenants, {len(cfg.sensors)} sensors; private Mosquitto on "
              f"127.0.0.1:{broker.port} as shipped: logins and ACL (docs/securing.md)")
        print(f"scenario: {plan.description}; about {plan.duration / speed:.0f} s. "
              "Ctrl-C stops.")
        for line in fleet.describe():
            print(f"  simulated: {line}")
        print(f"command center console: {center.url}  login {center.user} / password "
              f"{center.password}  (open it now: it runs as long as the demo)")
        print(f"  hazard tickets (/tickets): also {' and '.join(n for n, _r, _s in TICKET_USERS)}"
              f" (grid inspector, huaxin's safety officer), same password")
        print()
        try:
            fleet.start()  # the ports exist before the daemon opens them, as on a gateway
            names = {o.id: o.name or o.id for o in cfg.outputs}
            fleet.watch_outputs(lambda oid, on: print(
                f"          · 联动 {oid} {names[oid]} {'启动' if on else '停止'}", flush=True))
            daemon.start()

            def narrate(note: str) -> None:
                print(f"          · 现场 {note}", flush=True)

            player = threading.Thread(
                target=scenarios.play, args=(plan, fleet),
                kwargs={"stop": stop, "speed": speed, "narrate": narrate},
                name="parkwatch-demo-devices", daemon=True)
            player.start()
            player.join(duration_s)
            time.sleep(1.0)
            _acknowledge_cleared(daemon, view)
            time.sleep(0.5)
        except KeyboardInterrupt:  # Ctrl-C: the documented way to stop early
            interrupted = True
        else:
            interrupted = False
        finally:
            stop.set()
            daemon.stop()  # before the devices, or it would report their ports lost
            fleet.stop()
            view.stop()
            center.stop()  # after the daemon: it stores the demo's last events
            print(f"command center: {center.service.ingest.figures.stored} alarm event(s) "
                  "stored; its console has stopped with the demo.")
        return _summary(view.events, log, interrupted)


def _acknowledge_cleared(daemon: Any, view: OperatorView) -> int:
    """The duty officer acknowledges every alarm still waiting for it, which closes those that
    have cleared."""
    with view.lock:
        events = list(view.events)
    return sum(bool(daemon.acknowledge(alarm_id, DUTY_OFFICER))
               for alarm_id in unacknowledged(events))


def unacknowledged(events: list[dict[str, Any]]) -> list[str]:
    """The alarms whose latest event (by seq) says open and not acknowledged: one an operator
    acknowledged meanwhile (from the console, say) is left alone."""
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["alarm_id"] not in latest or e["seq"] > latest[e["alarm_id"]]["seq"]:
            latest[e["alarm_id"]] = e
    return [a for a, e in latest.items() if not e["acknowledged"] and e["event"] != "closed"]


def _summary(events: list[dict[str, Any]], log: logging.Logger,
             interrupted: bool = False) -> int:
    raised = [e for e in events if e["event"] == "raised"]
    # a floor's or an output's alarm has no sensor kind: its rule says what it is
    kinds = {e["sensor_kind"] or e["rule"] for e in raised}
    by: dict[str, int] = {}
    for e in events:
        if e["event"] == "acknowledged":
            by[e.get("acked_by") or "?"] = by.get(e.get("acked_by") or "?", 0) + 1
    who = ", ".join(f"{n} by {name}" for name, n in sorted(by.items())) or f"0 by {DUTY_OFFICER}"
    print(f"\n{len(events)} alarm event(s): {len(raised)} raised "
          f"({', '.join(sorted(kinds)) or 'none'}), "
          f"{sum(e['event'] == 'cleared' for e in events)} cleared, {sum(by.values())} "
          f"acknowledged ({who}), {sum(e['event'] == 'closed' for e in events)} closed.")
    if interrupted:
        print("demo stopped with Ctrl-C; broker, devices and daemon stopped.")
        return 0
    missing = {"fire_button", "load_cell", "water_level"} - kinds
    if missing:
        log.error("demo did not show alarms of: %s", ", ".join(sorted(missing)))
        return 1
    print("demo finished; broker, devices and daemon stopped.")
    return 0
