"""MQTT load for the benchmarks: a raw-socket publisher that is never the bottleneck, a bare
paho subscriber, and an uplink listener, each in a spawned process of its own.

**Publisher** (:class:`LoadProcess`).  It connects to the broker with a plain TCP socket
(``TCP_NODELAY``), sends an MQTT 3.1.1 CONNECT (clean session, keep-alive off) and waits for
the CONNACK.  Before the clock starts it builds every QoS 0 PUBLISH packet of the run into one
buffer.  Message ``i`` goes to sensor ``i % S`` (round ``i // S``): one reading per message,
the payload ``{"value":1234.5,"ts":1763800000123}``.  ``ts`` is the run's base time plus the
round in ms, so every reading of a sensor has its own millisecond: VictoriaMetrics, like
InfluxDB, keeps one point per series and timestamp.  Then it writes the buffer in chunks of
many packets per ``sendall``, each chunk due at ``t0 + first_message / rate``, so the rate is
met every ``chunk_s`` (2 ms) and not only on average; rate 0 means flat out.  It reports what
it sent, when, how far it fell behind its schedule, and its CPU seconds.

**Bare subscriber** (:func:`bare_drain`).  A paho client that subscribes and, in
``on_message``, only counts and notes the time: the most a Python subscriber can take from
the broker, the baseline of ``ingest.py``.  TCP_NODELAY is set in ``on_socket_open``.

**Relay** (:class:`RelayProcess`).  A bare paho relay: each probe message on the sensor
broker is published as an event on the uplink from ``on_message``, with no rules and no store.
``latency.py`` measures it first, as the floor that paho and the two brokers set.

The **threshold relay** (``RelayProcess(..., limits=...)``, :func:`threshold_relay_main`) is
``peers.py``'s floor: the same paho in and out, with a threshold and hysteresis per sensor in
``on_message`` and one alert per change of state.

**Listener** (:class:`ListenerProcess`).  A command-center client on the uplink broker that
notes the arrival (``time.monotonic()``) of every alarm event, and a raw-socket "probe device"
on the sensor broker whose publishes are timed with the same clock (``CLOCK_MONOTONIC`` is
one clock for the whole machine on Linux), for ``latency.py``.  With ``raw=True`` it keeps
each message's payload as it came, for ``peers.py``'s checker, which reads several formats.

Readings of the form ``{"id":"WL0001","v":123.4,"ts":1763800000123}`` (``peers.py``): a plan
with ``ids`` and ``values`` (one value per message, in tenths); ``send(..., times=True)``
also returns when each chunk was written, so a reading's send time is known.

Used by ``ingest.py``, ``latency.py`` and ``peers.py``; on its own it measures the bare
subscriber::

    .venv/bin/python benchmarks/mqttload.py --messages 300000
    .venv/bin/python benchmarks/mqttload.py --messages 300000 --buffered   # parkwatch's client
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHUNK_S = 0.002  # a paced chunk covers this much time
FLAT_CHUNK = 2000  # packets per sendall when flat out


# --- MQTT 3.1.1 packets ---------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def connect_packet(client_id: str, keepalive: int = 0) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, no will, no credentials."""
    body = _str(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive)
    body += _str(client_id.encode())
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """PUBLISH, QoS 0, not retained."""
    body = _str(topic) + payload
    return b"\x30" + _varint(len(body)) + body


DISCONNECT = b"\xe0\x00"


def set_nodelay(sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def raw_connect(host: str, port: int, client_id: str, timeout: float = 10.0) -> socket.socket:
    """A TCP socket with TCP_NODELAY, MQTT-connected (CONNACK checked)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    set_nodelay(sock)
    sock.sendall(connect_packet(client_id))
    ack = b""
    while len(ack) < 4:
        more = sock.recv(4 - len(ack))
        if not more:
            raise ConnectionError("broker closed the connection before CONNACK")
        ack += more
    if ack[0] != 0x20 or ack[3] != 0:
        raise ConnectionError(f"broker refused the connection: CONNACK {ack.hex()}")
    sock.settimeout(None)
    return sock


# --- the publisher --------------------------------------------------------------------------


def reading_payload(value: float, ts_ms: int | None) -> bytes:
    if ts_ms is None:
        return b'{"value":%.1f}' % value
    return b'{"value":%.1f,"ts":%d}' % (value, ts_ms)


def base_value(sensor: int) -> float:
    """A normal load-cell reading: 1000-1499.9 kg, below every limit the benchmarks set."""
    return 1000.0 + (sensor * 7919 % 5000) / 10.0


def build(plan: dict[str, Any]) -> tuple[bytes, list[int]]:
    """Every packet of a plan in one buffer, with the offset of each packet (and the end).

    With ``ids`` (one per topic) and ``values`` (one per message, in tenths of the unit) the
    payloads are ``{"id":...,"v":...,"ts":...}``; ``ts_base_ms`` is required then."""
    topics = [t.encode() for t in plan["topics"]]
    s_count = len(topics)
    n = int(plan["messages"])
    ts_base = plan.get("ts_base_ms")
    if plan.get("ids") is not None:
        return _build_idv(topics, [i.encode() for i in plan["ids"]], plan["values"], n,
                          int(ts_base))
    # sensor -> [(first round, end round, value)]: readings that differ from the normal level
    overrides: dict[int, list[tuple[int, int, float]]] = {}
    for s, r0, r1, v in plan.get("overrides", ()):
        overrides.setdefault(int(s), []).append((int(r0), int(r1), float(v)))
    heads = [struct.pack("!H", len(t)) + t for t in topics]
    packets: list[bytes] = []
    append = packets.append
    for i in range(n):
        s, r = i % s_count, i // s_count
        value = base_value(s)
        if s in overrides:
            for r0, r1, v in overrides[s]:
                if r0 <= r < r1:
                    value = v
        payload = reading_payload(value, None if ts_base is None else ts_base + r)
        body = heads[s] + payload
        append(b"\x30" + _varint(len(body)) + body)
    offsets = [0]
    total = 0
    for p in packets:
        total += len(p)
        offsets.append(total)
    return b"".join(packets), offsets


def _build_idv(topics: list[bytes], ids: list[bytes], values: Any, n: int,
               ts_base: int) -> tuple[bytes, list[int]]:
    """`build` for ``{"id","v","ts"}`` payloads: message i is sensor i % S, round i // S, its
    value ``values[i] / 10`` (integer tenths: the text is exact, and so is what a parser makes
    of it)."""
    s_count = len(topics)
    tenths = values.tolist() if hasattr(values, "tolist") else list(values)
    heads = [struct.pack("!H", len(t)) + t + b'{"id":"' + i + b'","v":'
             for t, i in zip(topics, ids, strict=True)]
    packets: list[bytes] = []
    append = packets.append
    offsets = [0]
    total = 0
    for k in range(n):
        s, r = k % s_count, k // s_count
        v = int(tenths[k])
        sign, v = ("-", -v) if v < 0 else ("", v)
        body = heads[s] + b'%s%d.%d,"ts":%d}' % (sign.encode(), v // 10, v % 10, ts_base + r)
        packet = b"\x30" + _varint(len(body)) + body
        append(packet)
        total += len(packet)
        offsets.append(total)
    return b"".join(packets), offsets


def send_paced(sock: socket.socket, buf: bytes, offsets: list[int], rate: float,
               stop: Any, start_at: float | None = None,
               chunk_s: float = CHUNK_S, times: bool = False) -> dict[str, Any]:
    """Write the packets at `rate` messages/s (0: flat out) in chunks; what was sent, when.
    With `times`, also ``chunk_times``: (index of the chunk's first packet, monotonic time just
    before it was written) for every chunk."""
    n = len(offsets) - 1
    view = memoryview(buf)
    chunk = FLAT_CHUNK if rate <= 0 else max(1, round(rate * chunk_s))
    if start_at is not None:
        while (left := start_at - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
    cpu0 = time.process_time()
    t0 = time.monotonic()
    behind_max = 0.0
    sent = 0
    waits = 0
    stopped = False
    chunk_times: list[tuple[int, float]] = []
    while sent < n:
        if stop is not None and stop.is_set():
            stopped = True
            break
        if rate > 0:
            due = t0 + sent / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
                waits += 1
            else:
                behind_max = max(behind_max, now - due)
        end = min(n, sent + chunk)
        if times:
            chunk_times.append((sent, time.monotonic()))
        sock.sendall(view[offsets[sent]:offsets[end]])
        sent = end
    t_end = time.monotonic()
    return {"sent": sent, "planned": n, "rate": rate, "t0": t0, "t_end": t_end,
            "seconds": t_end - t0,
            "achieved_rate": sent / (t_end - t0) if t_end > t0 else 0.0,
            "behind_max_s": behind_max, "chunk": chunk, "sleeps": waits,
            "bytes": offsets[sent], "cpu_s": time.process_time() - cpu0, "stopped": stopped,
            **({"chunk_times": chunk_times} if times else {})}


def load_main(host: str, port: int, client_id: str, conn: Any, stop: Any) -> None:
    """The publisher process: one raw MQTT connection; builds and sends plans on request."""
    sock = raw_connect(host, port, client_id)
    try:
        conn.send("ready")
        while True:
            req = conn.recv()
            if req[0] == "close":
                break
            if req[0] == "build":
                t = time.monotonic()
                cpu = time.process_time()
                built = build(req[1])
                conn.send({"built_s": time.monotonic() - t, "build_cpu_s":
                           time.process_time() - cpu, "messages": len(built[1]) - 1,
                           "bytes": len(built[0])})
            elif req[0] == "send":
                buf, offsets = built
                result = send_paced(sock, buf, offsets, req[1], stop, req[2],
                                    times=len(req) > 3 and bool(req[3]))
                del built, buf, offsets
                conn.send(result)
    finally:
        with contextlib.suppress(OSError):
            sock.sendall(DISCONNECT)
        sock.close()
        conn.close()


class LoadProcess:
    """A publisher in a spawned process.  `build(plan)` prepares the packets (not timed);
    `send(rate)` writes them and returns what was sent; `stop()` asks a running send to end
    early (from any thread)."""

    def __init__(self, host: str, port: int, client_id: str = "bench-load") -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.stop_event = ctx.Event()
        self.proc = ctx.Process(target=load_main, args=(host, port, client_id, child,
                                                        self.stop_event),
                                name="parkwatch-bench-load", daemon=True)
        self.proc.start()
        child.close()
        self.lock = threading.Lock()
        if not (self.conn.poll(30) and self.conn.recv() == "ready"):
            self.close()
            raise RuntimeError(f"load process did not start (exit {self.proc.exitcode})")

    def _ask(self, *req: Any, timeout: float = 300.0) -> Any:
        with self.lock:
            self.conn.send(req)
            if not self.conn.poll(timeout):
                raise TimeoutError(f"load process did not answer {req[0]}")
            return self.conn.recv()

    def build(self, plan: dict[str, Any]) -> dict[str, Any]:
        return dict(self._ask("build", plan))

    def send(self, rate: float, start_at: float | None = None,
             times: bool = False) -> dict[str, Any]:
        self.stop_event.clear()
        return dict(self._ask("send", rate, start_at, times))

    def send_async(self, rate: float, start_at: float | None = None, times: bool = False) -> Any:
        """Start a send; returns a function that waits for its result."""
        self.stop_event.clear()
        self.lock.acquire()
        self.conn.send(("send", rate, start_at, times))

        def result(timeout: float = 300.0) -> dict[str, Any]:
            try:
                if not self.conn.poll(timeout):
                    raise TimeoutError("load process did not finish its send")
                return dict(self.conn.recv())
            finally:
                self.lock.release()
        return result

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(("close",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


# --- the bare subscriber --------------------------------------------------------------------


def _paho_client(client_id: str, buffered: bool = False) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    cls = mqtt.Client
    if buffered:  # parkwatch's own links' client (src/parkwatch/mqttlink/buffered.py)
        sys.path.insert(0, str(ROOT / "src"))
        from parkwatch.mqttlink.buffered import BufferedClient as cls
    c = cls(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.on_socket_open = lambda _c, _u, s: set_nodelay(s)
    c.max_queued_messages_set(0)
    return c


def bare_main(host: str, port: int, topic: str, qos: int, conn: Any,
              buffered: bool = False) -> None:
    """The bare subscriber: count, first and last arrival, nothing else."""
    state = {"n": 0, "first": 0.0, "last": 0.0}
    subscribed = threading.Event()
    mono = time.monotonic

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        t = mono()
        if not state["n"]:
            state["first"] = t
        state["n"] += 1
        state["last"] = t

    c = _paho_client("bench-bare", buffered)
    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(host, port, keepalive=60)
    c.subscribe(topic, qos=qos)
    c.loop_start()
    try:
        conn.send("ready" if subscribed.wait(10) else "not subscribed")
        while True:
            req = conn.recv()
            if req[0] == "close":
                break
            if req[0] == "wait":  # until `count` arrived or nothing came for `idle` s
                count, idle, limit = req[1], req[2], time.monotonic() + req[3]
                seen, since = -1, time.monotonic()
                while state["n"] < count and time.monotonic() < limit:
                    time.sleep(0.02)
                    if state["n"] != seen:
                        seen, since = state["n"], time.monotonic()
                    elif time.monotonic() - since > idle:
                        break
                cpu = time.process_time()
                conn.send({**state, "cpu_s": cpu})
            elif req[0] == "reset":
                state.update(n=0, first=0.0, last=0.0)
                conn.send("ok")
    finally:
        c.disconnect()
        c.loop_stop()
        conn.close()


def bare_drain(host: str, port: int, topic: str, messages: int, *, qos: int = 1,
               idle_s: float = 2.0, limit_s: float = 60.0,
               client_id: str = "bench-bare-load", buffered: bool = False) -> dict[str, Any]:
    """Publish `messages` readings flat out to 1,000 templated topics while a bare paho
    subscriber (spawned process) drains them; its rate = (received - 1) / (last - first)."""
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=bare_main, args=(host, port, topic, qos, child, buffered),
                       name="parkwatch-bench-bare", daemon=True)
    proc.start()
    child.close()
    load = None
    try:
        if not (conn.poll(30) and conn.recv() == "ready"):
            raise RuntimeError("bare subscriber did not subscribe")
        load = LoadProcess(host, port, client_id)
        topics = [topic.replace("+", sensor_id(s)) for s in range(1000)]
        built = load.build({"topics": topics, "messages": messages,
                            "ts_base_ms": int(time.time() * 1000)})
        sent = load.send(0)
        conn.send(("wait", messages, idle_s, limit_s))
        got = conn.recv()
        conn.send(("close",))
    finally:
        if load is not None:
            load.close()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        conn.close()
    span = got["last"] - got["first"]
    return {"sent": sent["sent"], "received": got["n"], "lost": sent["sent"] - got["n"],
            "publisher_rate": sent["achieved_rate"], "publisher_s": sent["seconds"],
            "publisher_cpu_s": sent["cpu_s"], "build_s": built["built_s"],
            "first_after_publish_s": got["first"] - sent["t0"] if got["n"] else None,
            "drain_s": span,
            "rate": (got["n"] - 1) / span if span > 0 else 0.0,
            "subscriber_cpu_s": got["cpu_s"]}


def sensor_id(s: int) -> str:
    """The benchmarks' generated sensor ids: LC0000 ... LC0999."""
    return f"LC{s:04d}"


# --- the bare relay: the latency floor ------------------------------------------------------


def relay_main(sensors_at: tuple[str, int], uplink_at: tuple[str, int], events_topic: str,
               alarm_value: float, conn: Any) -> None:
    """Each probe message (sensor ids starting with P) on the sensor broker becomes an event
    on the uplink, published QoS 1 from ``on_message``: paho in, paho out, no rules, no store,
    no thread hand-over.  The latency of a daemon that did no work at all."""
    seq: dict[str, int] = {}
    subscribed = threading.Event()
    relayed = [0]
    up = _paho_client("bench-relay-up")
    up.connect(uplink_at[0], uplink_at[1], keepalive=60)
    up.loop_start()

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        sid = m.topic.split("/")[1]
        if not sid.startswith("P"):
            return
        p = json.loads(m.payload)
        raised = p.get("event") == "press" or p.get("value", 0.0) >= alarm_value
        seq[sid] = seq.get(sid, 0) + 1
        relayed[0] += 1
        up.publish(events_topic, json.dumps({
            "sensor_id": sid, "event": "raised" if raised else "cleared", "alarm_id": sid,
            "seq": seq[sid]}).encode(), qos=1)

    c = _paho_client("bench-relay-in")
    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(sensors_at[0], sensors_at[1], keepalive=60)
    c.subscribe("devices/+/up", qos=1)
    c.loop_start()
    try:
        conn.send("ready" if subscribed.wait(10) else "not subscribed")
        while conn.recv()[0] != "close":
            conn.send(relayed[0])  # "count"
    finally:
        for client in (c, up):
            client.disconnect()
            client.loop_stop()
        conn.close()


def threshold_relay_main(sensors_at: tuple[str, int], uplink_at: tuple[str, int],
                         in_topic: str, out_topic: str, limits: dict[str, tuple[float, float]],
                         conn: Any) -> None:
    """The floor of ``peers.py``: readings ``{"id","v","ts"}`` (QoS 0 on `in_topic`) go
    through a threshold with hysteresis per sensor in paho's ``on_message`` (raised when
    ``v >= limit``, cleared when ``v < limit - deadband``), and each change is published at
    once as ``{"sensor_id","event","value","ts"}`` (QoS 1 on `out_topic`): no store, no
    thread hand-over, no batching."""
    raised: set[str] = set()
    subscribed = threading.Event()
    readings = [0]
    up = _paho_client("bench-floor-up")
    up.connect(uplink_at[0], uplink_at[1], keepalive=60)
    up.loop_start()
    loads, dumps, publish = json.loads, json.dumps, up.publish

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        readings[0] += 1
        p = loads(m.payload)
        sid, v = p["id"], p["v"]
        lim = limits.get(sid)
        if lim is None:
            return
        if sid in raised:
            if v >= lim[0] - lim[1]:
                return
            raised.discard(sid)
            event = "cleared"
        else:
            if v < lim[0]:
                return
            raised.add(sid)
            event = "raised"
        publish(out_topic, dumps({"sensor_id": sid, "event": event, "value": v,
                                  "ts": p["ts"]}).encode(), qos=1)

    c = _paho_client("bench-floor-in")
    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(sensors_at[0], sensors_at[1], keepalive=60)
    c.subscribe(in_topic, qos=0)
    c.loop_start()
    try:
        conn.send("ready" if subscribed.wait(10) else "not subscribed")
        while conn.recv()[0] != "close":
            conn.send(readings[0])  # "count"
    finally:
        for client in (c, up):
            client.disconnect()
            client.loop_stop()
        conn.close()


class RelayProcess:
    """:func:`relay_main` in a spawned process; stands in for the daemon in ``latency.py``.
    With `limits` (sensor id -> (limit, deadband)) it is :func:`threshold_relay_main` instead,
    reading `in_topic`: ``peers.py``'s floor."""

    def __init__(self, sensors_at: tuple[str, int], uplink_at: tuple[str, int],
                 events_topic: str, alarm_value: float = 0.0, *,
                 limits: dict[str, tuple[float, float]] | None = None,
                 in_topic: str = "bench/sensors/+") -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        target, args = (relay_main, (sensors_at, uplink_at, events_topic, alarm_value, child)) \
            if limits is None else \
            (threshold_relay_main, (sensors_at, uplink_at, in_topic, events_topic, limits, child))
        self.proc = ctx.Process(target=target, args=args, name="parkwatch-bench-relay",
                                daemon=True)
        self.proc.start()
        child.close()
        if not (self.conn.poll(30) and self.conn.recv() == "ready"):
            self.stop()
            raise RuntimeError("relay did not subscribe")

    @property
    def pid(self) -> int:
        return self.proc.pid or 0

    def accepted(self) -> int:
        self.conn.send(("count",))
        return int(self.conn.recv()) if self.conn.poll(10) else 0

    def stop(self) -> int | None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(("close",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()
        return self.proc.exitcode


# --- the listener: uplink events and timed probes -------------------------------------------


def subscribe_packet(topic: bytes, qos: int, packet_id: int = 1) -> bytes:
    """SUBSCRIBE to one topic filter."""
    body = struct.pack("!H", packet_id) + _str(topic) + bytes([qos])
    return b"\x82" + _varint(len(body)) + body


def split_packets(buf: bytearray | bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The complete packets at the start of `buf`, as (first byte, rest after the length),
    and how many bytes they take."""
    out: list[tuple[int, bytes]] = []
    pos, n = 0, len(buf)
    while pos + 2 <= n:
        length, mult, i = 0, 1, pos + 1
        while True:
            if i >= n:
                return out, pos
            b = buf[i]
            i += 1
            length += (b & 0x7F) * mult
            if not b & 0x80:
                break
            mult *= 128
        if i + length > n:
            return out, pos
        out.append((buf[pos], bytes(buf[i:i + length])))
        pos = i + length
    return out, pos


def _receive(sock: socket.socket, got: list[tuple[float, bytes]], lock: threading.Lock,
             subscribed: threading.Event) -> None:
    """Read the subscription's messages until the connection ends: each noted with the time
    its bytes came out of the socket, acknowledged (QoS 1) a read at a time."""
    buf = bytearray()
    while True:
        try:
            data = sock.recv(1 << 20)
        except OSError:
            return
        if not data:
            return
        t = time.monotonic()
        buf += data
        packets, used = split_packets(buf)
        del buf[:used]
        messages: list[tuple[float, bytes]] = []
        acks: list[bytes] = []
        for first, body in packets:
            kind = first >> 4
            if kind == 3:  # PUBLISH
                qos = (first >> 1) & 3
                at = 2 + ((body[0] << 8) | body[1])
                if qos:
                    acks.append(b"\x40\x02" + body[at:at + 2])
                    at += 2
                messages.append((t, body[at:]))
            elif kind == 9 and body[2:3] != b"\x80":  # SUBACK, granted
                subscribed.set()
        if acks:
            with contextlib.suppress(OSError):
                sock.sendall(b"".join(acks))
        if messages:
            with lock:
                got += messages


def listener_main(up: tuple[str, int], sensors_at: tuple[str, int], events_topic: str,
                  conn: Any, raw: bool = False) -> None:
    """Records every alarm event on the uplink (arrival, sensor, event, alarm id, seq; with
    `raw`: arrival and payload as it came) and publishes probe readings on the sensor broker
    on request, timed with the same clock.

    The subscriber reads the socket itself (MQTT 3.1.1, QoS 1, its acknowledgements sent a
    read at a time) and notes only when and what came; the events are decoded when asked for.
    A paho client decoding each event as it came fell behind the broker in a burst of
    thousands, on the same two cores as the system measured, and its own lag was counted as
    the system's (benchmarks/README.md, the burst)."""
    got: list[tuple[float, bytes]] = []
    events: list[Any] = []  # decoded from `got`, as far as asked for
    lock = threading.Lock()
    subscribed = threading.Event()
    sock = raw_connect(up[0], up[1], "bench-center")
    sock.sendall(subscribe_packet(events_topic.encode(), 1))
    reader = threading.Thread(target=_receive, args=(sock, got, lock, subscribed),
                              name="bench-center", daemon=True)
    reader.start()
    probe = raw_connect(sensors_at[0], sensors_at[1], "bench-probe")

    def decoded(since: int) -> list[Any]:
        with lock:
            new = got[len(events):]
        for t, payload in new:
            if raw:
                events.append((t, payload))
            else:
                e = json.loads(payload)
                events.append((t, e["sensor_id"], e["event"], e["alarm_id"], e["seq"]))
        return events[since:]

    try:
        conn.send("ready" if subscribed.wait(10) else "not subscribed")
        while True:
            req = conn.recv()
            if req[0] == "close":
                break
            if req[0] == "events":  # every event from index req[1] on
                conn.send(decoded(req[1]))
            elif req[0] == "count":
                with lock:
                    conn.send(len(got))
            elif req[0] == "probes":
                conn.send(run_probes(probe, *req[1:]))
    finally:
        for s in (probe, sock):
            with contextlib.suppress(OSError):
                s.sendall(DISCONNECT)
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        reader.join(5)
        conn.close()


def run_probes(sock: socket.socket, schedule: Sequence[tuple[str, bytes]], rate: float,
               start_at: float) -> list[float]:
    """Publish each (topic, payload) of `schedule` at `rate`/s from `start_at` on; the
    monotonic time taken just before each packet was written."""
    packets = [publish_packet(t.encode(), p) for t, p in schedule]
    times: list[float] = []
    for k, packet in enumerate(packets):
        due = start_at + k / rate
        while (left := due - time.monotonic()) > 0:
            time.sleep(left)
        t = time.monotonic()
        sock.sendall(packet)
        times.append(t)
    return times


class ListenerProcess:
    def __init__(self, uplink: tuple[str, int], sensors_at: tuple[str, int],
                 events_topic: str, raw: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=listener_main,
                                args=(uplink, sensors_at, events_topic, child, raw),
                                name="parkwatch-bench-listener", daemon=True)
        self.proc.start()
        child.close()
        if not (self.conn.poll(30) and self.conn.recv() == "ready"):
            self.close()
            raise RuntimeError("listener did not subscribe")

    def ask(self, *req: Any, timeout: float = 300.0) -> Any:
        self.conn.send(req)
        if not self.conn.poll(timeout):
            raise TimeoutError(f"listener did not answer {req[0]}")
        return self.conn.recv()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(("close",))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="bare paho subscriber drain rate on a private "
                                 "Mosquitto")
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--buffered", action="store_true",
                    help="paho as parkwatch's links use it: reading 256 KiB at a time")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from parkwatch.devtools.localbroker import LocalMosquitto

    with LocalMosquitto() as broker:
        r = bare_drain(broker.host, broker.port, "devices/+/up", args.messages,
                       buffered=args.buffered)
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
