"""The last mile at the edge: a fire-button press → the sounder's coil set on a busy 9600-baud
RS-485 bus, and → the DingTalk robot's message accepted, p50/p99 (issue 23, done-when 6).

**Set-up.**  Every part is real and runs where it would on a gateway.  A private Mosquitto
(devices and uplink).  The daemon, ``parkwatch run --config FILE`` in a process of its own, on
the example park on a bench (every serial port on a pty, every broker on the private one), with
two changes: building B's bus ``rs485-b`` is polled back to back (``poll_interval_s`` 0.001, so
the line is always busy with register polls and the fire-button lane), and the safety officers
are reached through a ``dingtalk`` target with a 加签 secret instead of the park app.  The whole
park's devices are simulated (``SimulatedPark``: both relay modules, the weighing indicator and
the wireless sounder) in a spawned process of their own, so the simulator does not compete with
the measuring process for the GIL.  The DingTalk stand-in is ``tests/chat_robots.py``'s
``DingTalkRobot``, which checks the signature as DingTalk documents it; here its 20-a-minute
limit is lifted, and so is the target's own ``rate_limit`` (a robot's default is 20 a minute,
what is over folded into a summary): this measures the path, not the shaping.

**Cycles.**  The wireless fire button ``B-1F-FB1`` (building B, 1F) publishes
``{"event": "press"}`` (QoS 1), which must sound building B: the sounder ``B-SND-1F`` is coil 0
of the relay module (slave 9) on ``rs485-b``, the strobe ``B-STB-1F`` coil 1.  The measuring
process waits for the coil, the ``raised`` event at a command-center subscriber and the robot's
message; then it resets the button, waits for both coils at rest and acknowledges the alarm
(MQTT command), which closes it.  Before each press it waits a random 0.15–0.35 s
(``--gap``), so the write lands at a random point of the poll in progress.  The first cycles
(``--warmup``) are not counted.

**Times.**  The press is stamped with ``time.monotonic()`` just before the publish; the command
center and the robot stamp what they receive in the measuring process; the simulator stamps the
coil in its own process (``CLOCK_MONOTONIC`` is one clock for the whole machine).  A pty
delivers the master's bytes at once, so the simulator's ``on_write`` runs when the write
request *starts* on the line.  The coil counts as set when the simulated line says the slave
has the whole request and acts on it: the request's last character (``Request.end``, from the
simulator's receiver) plus the slave's turnaround (t3.5), which is also when its echo starts.
Both are in the JSON (``figures.coil`` and ``figures.coil_seen``).

**The floor** is the line alone, from the driver's own poll blocks: the longest transaction on
``rs485-b`` just started when the write is queued (request, t3.5, response, t3.5), then the write
single coil request (8 characters) and the slave's t3.5: 40.7 ms at 9600 baud, 8E1.  The issue's
"about 55 ms" adds the echo and the silence after it (13.2 ms), which the coil does not wait
for.  Target: p99 ≤ 1.5 × the floor.

**The robot** goes through the durable outbox (committed before it is sent) on the dingtalk
courier.  Its peer is the ``raised`` event on the uplink, committed in the same transaction and
measured on the same presses.  Target: robot p99 ≤ 2 × the uplink event's p99.

Run from the repository root::

    .venv/bin/python benchmarks/linkage.py     # about 45 s; writes benchmarks/results/linkage.json
    .venv/bin/python benchmarks/linkage.py --presses 20 --warmup 1   # about 12 s, noisier

The exit code is 0 whether or not the targets are met; the output says which are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # the DingTalk stand-in, as rules.py takes its reference
from benchinfo import command_line, summary  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402
from ingest import DaemonProcess, mosquitto_version  # noqa: E402

from chat_robots import DingTalkRobot  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "linkage.json"
EXAMPLE = ROOT / "examples" / "park.yaml"
BUTTON = "B-1F-FB1"  # a wireless fire button of building B
BUS = "rs485-b"  # building B's RS-485 bus, 9600 baud 8E1
SOUNDER, STROBE = "B-SND-1F", "B-STB-1F"  # coils 9/co0 and 9/co1 on it
RELAY = 9
OPERATOR = "王工"  # one of the example's alarms.operators
TARGET = "bench-ding"
SECRET = "SEC" + "5e1f0c2d" * 8  # the robot's 加签 secret, as DingTalk issues them
MOBILES = ["13800138000"]
FLOOR_TARGET = 1.5  # coil p99 / the line's floor
ROBOT_TARGET = 2.0  # robot p99 / the uplink event's p99, same presses
WAIT_S = 20.0  # give up on one step of a cycle after this long
WRITE_CHARS = 8  # write single coil: addr, fc 05, address(2), value(2), crc(2); its echo the same
CHECK_CHARS = (8, 6)  # an output's read-back: read one coil, and its answer


# --- line theory ------------------------------------------------------------------------------

def floor(cfg: Any) -> dict[str, Any]:
    """The line's floor for a write on `BUS`: the longest transaction there (the driver's own
    poll blocks, and an output's read-back) just started, then the write request and the
    slave's t3.5; and the issue's figure, which adds the echo and the silence after it."""
    from parkwatch.drivers.modbus_rtu.driver import ModbusRtuDriver
    from parkwatch.park import ParkModel

    d = next(x for x in cfg.drivers if x.id == BUS)
    import queue

    drv = ModbusRtuDriver(d, ParkModel(cfg), queue.SimpleQueue(), cfg)  # its blocks only
    char, t35 = d.char_time, d.t35
    txs = [(len(b.request) + b.response_len,
            f"{b.slave}/{b.table}{b.start}+{b.count}") for b in drv.blocks]
    txs.append((sum(CHECK_CHARS), f"{RELAY}/co read-back"))
    chars, what = max(txs)
    poll_s = chars * char + 2 * t35
    #: characters of a poll of each polled slave (its longest block), for the line's load
    by_slave: dict[str, int] = {}
    for b in drv.blocks:
        by_slave[str(b.slave)] = max(by_slave.get(str(b.slave), 0),
                                     len(b.request) + b.response_len)
    apply_s = poll_s + WRITE_CHARS * char + t35
    issue_s = poll_s + 2 * WRITE_CHARS * char + 2 * t35
    return {"baudrate": d.baudrate, "bits_per_char": d.bits_per_char,
            "char_ms": round(char * 1e3, 4), "t35_ms": round(t35 * 1e3, 4),
            "longest_transaction": what, "longest_transaction_chars": chars,
            "longest_transaction_ms": round(poll_s * 1e3, 3),
            "floor_ms": round(apply_s * 1e3, 3),
            "issue_floor_ms": round(issue_s * 1e3, 3),
            "poll_transactions_per_s_max": round(1 / poll_s, 2),
            "poll_chars_by_slave": by_slave}


# --- the simulator process --------------------------------------------------------------------

def sim_main(config: str, cmd: Any, events: Any) -> None:
    """Every device of the park, simulated; each write that moves a coil of the relay module
    on `BUS` goes to `events` as (table, register, value, seen, set) on the monotonic clock."""
    logging.basicConfig(level=logging.WARNING, format="sim %(levelname)s %(name)s: %(message)s")
    from parkwatch.firmware_sim.devices import SimulatedPark
    from parkwatch.schema import load_config

    park = SimulatedPark(load_config(Path(config)), client_prefix="bench-sim")
    bus = park.buses[BUS]
    rx = bus._rx  # a probe on the receiver: the request a write came in, as the line had it
    take = rx.take_frame
    last: list[Any] = [None]

    def take_frame() -> Any:
        req = take()
        if req is not None:
            last[0] = req
        return req

    rx.take_frame = take_frame  # type: ignore[method-assign]
    relay = bus.slaves[RELAY]

    def written(table: str, register: int, value: int) -> None:
        seen = time.monotonic()
        req = last[0]
        done = seen if req is None else req.end + bus.turnaround_s + relay.latency_s
        events.send((table, register, value, seen, done))

    relay.on_write = written
    park.start()
    cmd.send("ready")
    while True:
        try:
            msg = cmd.recv()
        except EOFError:
            break
        st = bus.stats
        cmd.send({"t": time.monotonic(), "requests": st.requests, "answered": st.answered,
                  "t35_violations": st.t35_violations, "collisions": st.collisions,
                  "per_slave": st.per_slave})
        if msg == "stop":
            break
    park.stop()


class Sim:
    """The simulator process and what it reports: the coils' writes, as they happen."""

    def __init__(self, config: Path) -> None:
        ctx = mp.get_context("spawn")
        self.cmd, child_cmd = ctx.Pipe()
        ev_in, ev_out = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=sim_main, args=(str(config), child_cmd, ev_out),
                                daemon=True, name="bench-sim")
        self.proc.start()
        child_cmd.close()
        ev_out.close()
        self.writes: list[tuple[str, int, int, float, float]] = []
        self.cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(ev_in,), daemon=True)
        self._reader.start()
        if not (self.cmd.poll(30) and self.cmd.recv() == "ready"):
            raise RuntimeError(f"simulator did not start (exit {self.proc.exitcode})")

    def _read(self, conn: Any) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                item = conn.recv()
                with self.cond:
                    self.writes.append(item)
                    self.cond.notify_all()

    def coil(self, register: int, value: int, after: float,
             timeout: float = WAIT_S) -> tuple[float, float] | None:
        """(seen, set) of the first write of `value` to coil `register` after `after`."""
        def hit() -> tuple[float, float] | None:
            return next(((seen, done) for table, reg, v, seen, done in self.writes
                         if table == "co" and reg == register and v == value and seen > after),
                        None)
        with self.cond:
            if not self.cond.wait_for(lambda: hit() is not None, timeout):
                return None
            return hit()

    def stats(self) -> dict[str, Any]:
        self.cmd.send("stats")
        return dict(self.cmd.recv())

    def stop(self) -> dict[str, Any] | None:
        try:
            self.cmd.send("stop")
            final = dict(self.cmd.recv()) if self.cmd.poll(10) else None
        except (OSError, EOFError):
            final = None
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
        return final


# --- the command center, the device and the robot ---------------------------------------------

class BenchRobot(DingTalkRobot):
    """The DingTalk stand-in (signature, timestamp and body checked as the vendor documents);
    each accepted message stamped.  Its 20-a-minute limit is lifted: this is about latency."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret, per_window=1_000_000)
        self.stamps: list[tuple[float, str]] = []

    def _accept(self, msg: dict[str, Any]) -> tuple[int, str]:
        self.stamps.append((time.monotonic(), str(msg["text"]["content"])))
        return super()._accept(msg)

    def message(self, alarm_id: str, state: str, timeout: float = WAIT_S) -> float | None:
        """When the first message telling `alarm_id` in `state` was accepted: one change alone
        (状态：`state`) or a line of a summary of several (（`state`）)."""
        def hit() -> float | None:
            return next((t for t, text in self.stamps if alarm_id in text
                         and (f"状态：{state}" in text or f"（{state}）" in text)), None)
        with self._lock:
            if not self._lock.wait_for(lambda: hit() is not None, timeout):
                return None
            return hit()


class Field:
    """A device that publishes like the wireless buttons (QoS 1) and a command-center client
    that stamps each event it receives (paho, TCP_NODELAY)."""

    def __init__(self, port: int, prefix: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from parkwatch.mqttlink.link import set_nodelay

        self.prefix = prefix
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.center = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-center",
                                  protocol=mqtt.MQTTv311)
        self.device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-button",
                                  protocol=mqtt.MQTTv311)
        for c in (self.center, self.device):
            c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
        self.center.on_message = self._on_message
        self.center.on_subscribe = lambda *_a: subscribed.set()
        self.center.connect("127.0.0.1", port)
        self.center.subscribe(f"{prefix}/events", qos=1)
        self.center.loop_start()
        self.device.connect("127.0.0.1", port)
        self.device.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("command-center subscription not acknowledged")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        t = time.monotonic()
        event = json.loads(msg.payload)
        with self.cond:
            self.events.append((t, event))
            self.cond.notify_all()

    def event(self, pred: Callable[[dict[str, Any]], bool], after: float,
              timeout: float = WAIT_S) -> tuple[float, dict[str, Any]] | None:
        def hit() -> tuple[float, dict[str, Any]] | None:
            return next(((t, e) for t, e in self.events if t > after and pred(e)), None)
        with self.cond:
            if not self.cond.wait_for(lambda: hit() is not None, timeout):
                return None
            return hit()

    def button(self, event: str) -> float:
        """Publish a button event; the moment just before."""
        t = time.monotonic()
        self.device.publish(f"devices/{BUTTON}/up", json.dumps({"event": event}).encode(), qos=1)
        return t

    def ack(self, alarm_id: str) -> None:
        self.device.publish(f"{self.prefix}/commands/ack", json.dumps(
            {"alarm_id": alarm_id, "by": OPERATOR}).encode(), qos=1)

    def stop(self) -> None:
        for c in (self.device, self.center):
            c.disconnect()
            c.loop_stop()


# --- the park ---------------------------------------------------------------------------------

def park_data(work: Path, port: int, api_port: int, robot_url: str, secret_file: Path,
              poll_interval_s: float) -> dict[str, Any]:
    """The example park on a bench, `BUS` polled back to back, the safety officers on the
    DingTalk robot."""
    import yaml

    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for b in data["brokers"].values():
        b.update(host="127.0.0.1", port=port)
    data["gateway"]["state_dir"] = str(work / "state")
    data["api"]["port"] = api_port
    for d in data["drivers"]:
        if "port" in d and d["type"] != "mqtt":
            d["port"] = str(work / f"tty-{d['id']}")
        if d["id"] == BUS:
            d["poll_interval_s"] = poll_interval_s
    # no rate limit of its own (a robot's default is 20 a minute, what is over folded into a
    # summary): this measures the path, not the shaping, which tests/test_notify_burst.py tests
    data["alarms"]["targets"][TARGET] = {"type": "dingtalk", "url": robot_url,
                                         "secret_file": str(secret_file),
                                         "at_mobiles": MOBILES, "rate_limit": []}
    officers = next(s for s in data["alarms"]["subscribers"] if s["id"] == "safety-officers")
    officers["target"] = TARGET
    return data


# --- the software part, from the daemon's log -------------------------------------------------

LOG_ON = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \S+\s+parkwatch\.outputs: output "
                    + re.escape(SOUNDER) + r" \(.*?\) ON\b.*?\((\w+)\)$")


def switched_at(log_text: str) -> dict[str, float]:
    """alarm id -> the second of the day (local time, ms) the daemon logged switching the
    sounder on for it: the linkage stage, right before the write is queued for the bus."""
    out: dict[str, float] = {}
    for line in log_text.splitlines():
        m = LOG_ON.match(line)
        if m:
            h, mi, s, ms, alarm = m.groups()
            out.setdefault(alarm, int(h) * 3600 + int(mi) * 60 + int(s) + int(ms) / 1000)
    return out


def second_of_day(monotonic: float, offset: float) -> float:
    wall = monotonic + offset
    lt = time.localtime(wall)
    return lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (wall % 1)


def clock_offset() -> float:
    """time.time() - time.monotonic(), the least of a few reads (the log has the wall clock)."""
    return min(time.time() - time.monotonic() for _ in range(5))


# --- one run ----------------------------------------------------------------------------------

def cycle(field: Field, sim: Sim, robot: BenchRobot, gap: float) -> dict[str, Any]:
    """Press, coil on, event and robot message; reset, coils at rest; ack, closed."""
    time.sleep(gap)
    c: dict[str, Any] = {"gap_s": round(gap, 4)}

    def need(what: str, got: Any) -> Any:
        if got is None:
            raise TimeoutError(f"no {what} within {WAIT_S:g} s")
        return got

    t0 = c["t_press"] = field.button("press")
    c["t_coil_seen"], c["t_coil_set"] = need(f"coil {SOUNDER} on", sim.coil(0, 1, t0))
    c["t_strobe_seen"], c["t_strobe_set"] = need(f"coil {STROBE} on", sim.coil(1, 1, t0))
    c["t_raised"], ev = need("raised event", field.event(
        lambda e: e["event"] == "raised" and e["sensor_id"] == BUTTON, t0))
    alarm = c["alarm_id"] = ev["alarm_id"]
    c["t_robot"] = need("robot message (raised)", robot.message(alarm, "告警"))
    t1 = field.button("reset")
    need("both coils at rest", sim.coil(0, 0, t1) and sim.coil(1, 0, t1))
    need("cleared event", field.event(
        lambda e: e["event"] == "cleared" and e["alarm_id"] == alarm, t1))
    t2 = time.monotonic()
    field.ack(alarm)
    need("acknowledged event", field.event(
        lambda e: e["event"] == "acknowledged" and e["alarm_id"] == alarm, t2))
    need("robot message (closed)", robot.message(alarm, "已关闭"))
    return c


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import yaml

    from parkwatch.devtools.localbroker import LocalMosquitto, free_port
    from parkwatch.schema import load_config

    rng = random.Random(args.seed)
    os.environ.pop("JOURNAL_STREAM", None)  # the daemon's log lines keep their times
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(LocalMosquitto(workdir=work))
        secret_file = work / "ding.secret"
        secret_file.write_text(SECRET + "\n", encoding="utf-8")
        robot = stack.enter_context(BenchRobot(SECRET))
        config = work / "park.yaml"
        data = park_data(work, broker.port, free_port(), robot.url, secret_file,
                         args.poll_interval)
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        cfg = load_config(config)
        out["line"] = floor(cfg)
        sim = Sim(config)
        stack.callback(lambda: out.__setitem__("sim_final", sim.stop()))
        log_file = work / "daemon.log"
        daemon = DaemonProcess(config, data["api"]["port"], log_file)
        stack.callback(daemon.stop)
        daemon.wait_ready(60)
        field = Field(broker.port, f"parkwatch/v1/{cfg.park.id}")
        stack.callback(field.stop)
        cycles: list[dict[str, Any]] = []
        error = None
        try:
            for _ in range(args.warmup):
                cycle(field, sim, robot, rng.uniform(*args.gap))
            s0 = sim.stats()
            for k in range(args.presses):
                cycles.append(cycle(field, sim, robot, rng.uniform(*args.gap)))
                if args.progress and (k + 1) % 20 == 0:
                    print(f"    {k + 1} presses", flush=True)
            s1 = sim.stats()
            with sim.cond:
                writes = sum(1 for w in sim.writes if s0["t"] < w[3] < s1["t"])
            out["bus"] = bus_load(s0, s1, out["line"], writes)
        except TimeoutError as exc:
            error = f"press {len(cycles) + 1}: {exc}"
            print(f"  stopped: {error}", flush=True)
        offset = clock_offset()
        daemon.stop()
        log_text = log_file.read_text(encoding="utf-8", errors="replace")
        out.update(cycles=cycles, error=error, clock_offset_s=offset, log_tail=None)
        out["switched"] = switched_at(log_text)
        if error:
            out["log_tail"] = log_text[-3000:]
        out["robot_refused"] = list(robot.refused)
        statuses: dict[str, int] = {}
        for _, text in robot.stamps:  # a change alone by its state, or a summary
            m = re.search(r"状态：(\S+)", text)
            key = "summary" if text.startswith("【告警汇总】") else m.group(1) if m else "?"
            statuses[key] = statuses.get(key, 0) + 1
        out["robot_messages"] = statuses
    return out


def bus_load(s0: dict[str, Any], s1: dict[str, Any], line: dict[str, Any],
             writes: int) -> dict[str, Any]:
    """What the simulated bus carried while the presses were measured, and how much of the
    time the line was busy by its timing: each transaction's characters and its two t3.5
    (the relay module's requests: `writes` writes of 8 + 8 characters, the rest read-backs
    of 8 + 6)."""
    secs = s1["t"] - s0["t"]
    answered = s1["answered"] - s0["answered"]
    per_slave = {str(k): s1["per_slave"].get(k, 0) - s0["per_slave"].get(k, 0)
                 for k in s1["per_slave"]}
    chars = dict(line["poll_chars_by_slave"])
    relay = per_slave.get(str(RELAY), 0)
    busy_chars = sum(n * chars.get(k, 0) for k, n in per_slave.items() if k != str(RELAY))
    busy_chars += writes * 2 * WRITE_CHARS + max(relay - writes, 0) * sum(CHECK_CHARS)
    busy_s = busy_chars * line["char_ms"] / 1e3 + answered * 2 * line["t35_ms"] / 1e3
    return {"seconds": round(secs, 2), "transactions_per_s": round(answered / secs, 2),
            "longest_transaction_per_s_max": line["poll_transactions_per_s_max"],
            "line_busy": round(busy_s / secs, 3),
            "requests_per_slave": per_slave, "relay_writes": writes,
            "t35_violations": s1["t35_violations"] - s0["t35_violations"],
            "collisions": s1["collisions"] - s0["collisions"]}


def figures(raw: dict[str, Any], presses: int) -> dict[str, Any]:
    cycles = raw["cycles"]
    line = raw["line"]

    def lat(key: str) -> dict[str, float]:
        return summary([c[key] - c["t_press"] for c in cycles])

    coil, seen = lat("t_coil_set"), lat("t_coil_seen")
    strobe = lat("t_strobe_set")
    uplink, robot = lat("t_raised"), lat("t_robot")
    switched = raw["switched"]
    for c in cycles:  # the press → switch part, where the daemon logged it (±1 ms)
        if c["alarm_id"] in switched:
            d = switched[c["alarm_id"]] - second_of_day(c["t_press"], raw["clock_offset_s"])
            c["switched_s"] = (d + 43200) % 86400 - 43200  # across midnight
    sw = [c["switched_s"] for c in cycles if "switched_s" in c]
    out: dict[str, Any] = {
        "presses": presses, "measured": len(cycles),
        "all_measured": len(cycles) == presses and raw["error"] is None,
        "coil": {**coil, "floor_ms": line["floor_ms"], "target_ratio": FLOOR_TARGET},
        "coil_seen": seen, "strobe": strobe,
        "press_to_switch": {**summary(sw), "logged_for": len(sw),
                            "resolution_ms": 1.0},
        "switch_to_coil": summary([c["t_coil_set"] - c["t_press"] - c["switched_s"]
                                   for c in cycles if "switched_s" in c]),
        "uplink_raised": uplink,
        "robot_after_uplink": summary([c["t_robot"] - c["t_raised"] for c in cycles]),
        "robot": {**robot, "target_ratio": ROBOT_TARGET},
    }
    if coil:
        out["coil"]["p99_over_floor"] = round(coil["p99_ms"] / line["floor_ms"], 3)
        out["coil"]["p99_over_issue_floor"] = round(coil["p99_ms"] / line["issue_floor_ms"], 3)
        out["coil"]["met"] = out["all_measured"] and \
            out["coil"]["p99_over_floor"] <= FLOOR_TARGET
    if robot and uplink:
        out["robot"]["p99_over_uplink_p99"] = round(robot["p99_ms"] / uplink["p99_ms"], 3)
        out["robot"]["met"] = out["all_measured"] and not raw["robot_refused"] and \
            out["robot"]["p99_over_uplink_p99"] <= ROBOT_TARGET
    return out


def report(res: dict[str, Any]) -> list[str]:
    f, line = res["figures"], res["line"]
    rows = [("press → coil set (slave acts)", f["coil"]),
            ("press → write seen by the simulator", f["coil_seen"]),
            ("press → strobe coil set (2nd write)", f["strobe"]),
            ("press → sounder switched (daemon log, ±1 ms)", f["press_to_switch"]),
            ("sounder switched → coil set (the bus part)", f["switch_to_coil"]),
            ("press → raised at the command center", f["uplink_raised"]),
            ("press → robot message accepted", f["robot"]),
            ("raised at the command center → robot", f["robot_after_uplink"])]
    out = [f"  {'':<46} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} ms   n"]
    for name, s in rows:
        if s.get("n"):
            out.append(f"  {name:<46} {s['p50_ms']:>7.2f} {s['p90_ms']:>7.2f} "
                       f"{s['p99_ms']:>7.2f} {s['max_ms']:>7.2f}   {s['n']}")
    bus = res.get("bus") or {}
    out.append(f"\n  line: {line['baudrate']} baud, {line['bits_per_char']}-bit characters, "
               f"t3.5 {line['t35_ms']:.2f} ms; longest transaction on {BUS}: "
               f"{line['longest_transaction']} ({line['longest_transaction_chars']} characters, "
               f"{line['longest_transaction_ms']:.2f} ms with its two t3.5)")
    if bus:
        out.append(f"  {BUS} carried {bus['transactions_per_s']:.1f} transactions/s (at most "
                   f"{bus['longest_transaction_per_s_max']:.1f}/s of the longest), the line "
                   f"busy {bus['line_busy']:.0%} of the time; t3.5 violations "
                   f"{bus['t35_violations']}, collisions {bus['collisions']}")
    c, r = f["coil"], f["robot"]
    if "p99_over_floor" in c:
        out.append(f"  {'PASS' if c['met'] else 'MISS'}: coil p99 {c['p99_ms']:.2f} ms = "
                   f"{c['p99_over_floor']:.2f} × the floor of {c['floor_ms']:.2f} ms (target "
                   f"≤ {FLOOR_TARGET:g}×); the issue's 'write transaction + the one in "
                   f"progress', {line['issue_floor_ms']:.2f} ms, would make it "
                   f"{c['p99_over_issue_floor']:.2f}×")
    if "p99_over_uplink_p99" in r:
        out.append(f"  {'PASS' if r['met'] else 'MISS'}: robot p99 {r['p99_ms']:.2f} ms = "
                   f"{r['p99_over_uplink_p99']:.2f} × the uplink event's p99 of "
                   f"{f['uplink_raised']['p99_ms']:.2f} ms (target ≤ {ROBOT_TARGET:g}×)")
    if not f["all_measured"]:
        out.append(f"  only {f['measured']} of {f['presses']} presses measured: {res['error']}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presses", type=int, default=100, help="press cycles measured")
    ap.add_argument("--warmup", type=int, default=3, help="press cycles before, not counted")
    ap.add_argument("--gap", type=float, nargs=2, default=(0.15, 0.35), metavar=("MIN", "MAX"),
                    help="random wait before each press, s")
    ap.add_argument("--poll-interval", type=float, default=0.001,
                    help=f"{BUS}'s poll_interval_s (the example's is 1 s)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    started = time.monotonic()
    import paho.mqtt

    info = bench_machine(paho_mqtt=paho.mqtt.__version__, mosquitto=mosquitto_version())
    print(f"parkwatch linkage benchmark: {info['nproc']} cores, load {info['loadavg']}, "
          f"speed probe {info['cpu_probe_ms']} ms; {args.warmup} + {args.presses} presses of "
          f"{BUTTON}, {BUS} polled every {args.poll_interval:g} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="parkwatch-linkage-bench-") as tmp:
        raw = run(args, Path(tmp))
    figs = figures(raw, args.presses)
    result = {
        "benchmark": "linkage", "command": command_line(argv), "machine": info,
        "settings": {"presses": args.presses, "warmup": args.warmup, "gap_s": list(args.gap),
                     "poll_interval_s": args.poll_interval, "seed": args.seed,
                     "button": BUTTON, "bus": BUS, "sounder": SOUNDER, "strobe": STROBE,
                     "relay_slave": RELAY, "target": TARGET,
                     "floor_target_ratio": FLOOR_TARGET, "robot_target_ratio": ROBOT_TARGET},
        "line": raw["line"], "bus": raw.get("bus"), "figures": figs, "error": raw["error"],
        "robot_refused": raw["robot_refused"], "robot_messages": raw["robot_messages"],
        "cycles": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in c.items()}
                   for c in raw["cycles"]],
        "runtime_s": round(time.monotonic() - started, 1)}
    if raw.get("log_tail"):
        result["daemon_log_tail"] = raw["log_tail"]
    print()
    print("\n".join(report(result)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"\nran {result['runtime_s']:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
