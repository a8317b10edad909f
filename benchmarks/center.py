"""Command-center ingest: alarm events stored per second from 100 simulated parks, against the
database's own bulk insert of the same rows, on PostgreSQL and on SQLite (issue 24, done-when
4).

For each backend, in the same run:

* **bulk**: the events' rows, as the center's ``events`` table holds them (primary key
  (alarm_id, seq), the event JSON), written the fastest way the database offers: PostgreSQL's
  binary COPY, SQLite's executemany in one transaction.  The database's own rate, the floor
  of the comparison.
* **ingest**: a real ``parkwatch center`` process (its own core, as in production).  Its
  persistent session is made first; then the 100 parks publish every event to the central
  Mosquitto, where they queue in that session; then the center starts and takes them.  The
  rate is counted from the first event stored to the last one (a process's start-up is not
  the ingest), by reading the database (with primary-key lookups, not a count every poll).
  The center does everything it does in production: MQTT receive, JSON decoding, the
  contract's checks, the idempotent write of the events, the alarms' states and their
  tenants, the acknowledgements after each commit.

Three rounds (``--rounds``), each measurement on a fresh database (on PostgreSQL, on a server
started for it); the median round is the result.

Target: the ingest keeps at least half the database's own bulk rate (≥ 50 %), on each backend.
Absolute figures move 1.5–2× between machines; the ratio is measured within one run.

    .venv/bin/python benchmarks/center.py            # ~1 min; benchmarks/results/center.json
    .venv/bin/python benchmarks/center.py --alarms 20 --parks 10   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchinfo import command_line  # noqa: E402
from benchinfo import machine as bench_machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "center.json"
TARGET = 0.5
PREFIX = "parkwatch/v1"


def events(parks: int, alarms: int) -> list[dict[str, Any]]:
    """Every park's alarms, each raised then cleared: contract events (docs/contract.md)."""
    from parkwatch.alarms.ids import new_alarm_id

    out = []
    for p in range(parks):
        park = f"park-{p:03d}"
        for _ in range(alarms):
            a = new_alarm_id(time.time())
            for seq, what in ((1, "raised"), (2, "cleared")):
                at = f"2026-12-05T10:00:{seq:02d}.000Z"
                out.append({
                    "schema": "parkwatch.alarm/1", "alarm_id": a, "seq": seq, "event": what,
                    "park": park, "building": "A", "floor": "2F", "zone": "east",
                    "tenants": ["huaxin", "yongsheng"], "sensor_id": "A-2F-LC1",
                    "sensor_kind": "load_cell", "rule": "high_threshold",
                    "severity": "warning", "active": seq == 1, "acknowledged": False,
                    "value": 8200.0, "threshold": 8000.0, "unit": "kg", "observed_at": at,
                    "raised_at": "2026-12-05T10:00:01.000Z", "changed_at": at,
                    "acked_by": None, "acked_at": None, "escalation_level": 0, "drill": False,
                    "message": "【楼层称重预警】A栋 二层 东区 当前 8200 kg，预警限值 8000 kg",
                    "gateway": f"{park}-gw1"})
    return out


# --- the database's own bulk insert ----------------------------------------------------------

def bulk_rate(url: str, evs: list[dict[str, Any]]) -> float:
    """Events per second the database itself takes of what the center stores for them: the
    same rows (each event, each alarm's state, its tenants), made ready beforehand, written
    into the center's own schema the fastest way the database offers, plain inserts with
    nothing to look up (PostgreSQL: binary COPY into each table, its fastest; SQLite:
    executemany in one transaction)."""
    from parkwatch.center import rows as R
    from parkwatch.center.store import open_store

    open_store(url).close()  # the center's schema, migrated
    ready = R.batch_of_dicts(evs, time.time())
    tables = (("events", R.EVENT_COLUMNS, ready.events),
              ("alarms", R.ALARM_COLUMNS, ready.alarms),
              ("alarm_tenants", ("alarm_id", "tenant"), ready.tenants))
    if url.startswith("sqlite:"):
        tables = (("events", R.EVENT_COLUMNS, R.as_text(ready.events, R.EVENT_BODY)),
                  ("alarms", R.ALARM_COLUMNS, R.as_text(ready.alarms, R.ALARM_BODY)),
                  tables[2])  # sqlite3 takes text only as str
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            db.execute("PRAGMA synchronous=FULL")  # as the center writes: durable commits
            t0 = time.perf_counter()
            with db:
                for table, cols, rows in tables:
                    db.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                   f"({', '.join('?' * len(cols))})", rows)
            return len(evs) / (time.perf_counter() - t0)
    import psycopg

    from parkwatch.center.pgstore import _TYPES as COLUMN_TYPES

    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for table, cols, rows in tables:
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN "
                              "(FORMAT BINARY)") as copy:
                    # the events' JSON as the UTF-8 it came in, as the center sends it
                    copy.set_types(["bytea" if type(v) is bytes else COLUMN_TYPES[c]
                                    for c, v in zip(cols, rows[0], strict=True)])
                    for row in rows:
                        copy.write_row(row)
        return len(evs) / (time.perf_counter() - t0)


# --- the center's ingest ---------------------------------------------------------------------

class Counter:
    """Reads how far the center is, on one connection of its own, with queries that cost the
    database next to nothing: on a 2-core machine the broker, the database and the center
    already share the cores, and a ``count(*)`` of the events table every few milliseconds
    took a sizeable part of one from the center being measured (it is asked once, at the end)."""

    def __init__(self, url: str, last: dict[str, Any]) -> None:
        if url.startswith("sqlite:"):
            self.db: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
            mark = "?"
        else:
            import psycopg

            self.db = psycopg.connect(url, autocommit=True)
            mark = "%s"
        self._last = (f"SELECT 1 FROM events WHERE alarm_id = {mark} AND seq = {mark}",
                      (last["alarm_id"], last["seq"]))

    def started(self) -> bool:
        """Some event is stored."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()[0])

    def last_stored(self) -> bool:
        """The last event published is stored (by its primary key)."""
        return self.db.execute(*self._last).fetchone() is not None

    def __call__(self) -> int:
        row = self.db.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.db.close()


def center_config(work: Path, broker_port: int, url: str, name: str) -> Path:
    import yaml

    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "instance": name, "database": url,
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "http": {"port": 0, "state_file": str(work / f"{name}.secret")},  # never a real port
        "ingest": {"share_group": None}}), encoding="utf-8")
    return path


def run_center(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "parkwatch", "center", "--config",
                                 str(cfg)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_log(log: Path, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(encoding="utf-8", errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {needle!r} in {log}: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def publish(port: int, evs: list[dict[str, Any]]) -> None:
    """Every park's events onto the central broker (QoS 1, each confirmed)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-parks",
                    protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for start in range(0, len(evs), 20000):  # paho holds at most 65,535 unconfirmed
        infos = [c.publish(f"{PREFIX}/{e['park']}/events",
                           json.dumps(e, ensure_ascii=False).encode(), qos=1)
                 for e in evs[start:start + 20000]]
        for info in infos:
            info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def end_session(port: int, client_id: str) -> None:
    """The broker forgets the center's session (a clean connect under its client id): else
    the next round's events would queue for it too, and the broker work for each round grow."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                    protocol=mqtt.MQTTv311)
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError(f"the broker did not answer {client_id}'s clean connect")
        c.disconnect()
    finally:
        c.loop_stop()


def ingest_rate(url: str, evs: list[dict[str, Any]], port: int, work: Path,
                name: str) -> dict[str, Any]:
    cfg = center_config(work, port, url, name)
    log = work / f"{name}.log"
    # the session first (its subscription at the broker), then the events queue in it
    proc = run_center(cfg, log)
    wait_log(log, "center: subscribed to", 60)
    stop(proc)
    publish(port, evs)
    proc = run_center(cfg, log)
    first = last = None
    deadline = time.monotonic() + 600
    count = Counter(url, evs[-1])  # the session made the schema: the table is there
    seen_none = time.perf_counter()  # the last poll that found nothing stored yet
    try:
        while time.monotonic() < deadline:
            now = time.perf_counter()
            if first is None:
                if count.started():  # counted from the poll before: a short run is one poll
                    first = seen_none
                else:
                    seen_none = now
            # the last event published is usually the last stored; the other write thread's
            # batch may commit just after it, so the count is checked then
            if first is not None and count.last_stored() and count() >= len(evs):
                last = time.perf_counter()
                break
            time.sleep(0.005)
    finally:
        stop(proc)
        stored = count()
        count.close()
        end_session(port, f"parkwatch-center-{name}")
    text = log.read_text(encoding="utf-8", errors="replace")
    if last is None or first is None or last <= first:
        raise RuntimeError(f"{name}: not every event was stored: {text[-2000:]}")
    return {"rate": len(evs) / (last - first), "seconds": round(last - first, 3),
            "stored": stored, "traceback": "Traceback" in text}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Each round measures each backend's bulk and ingest on fresh databases, and on
    PostgreSQL on a server of its own, started for that measurement: a server that has just
    taken the other measurement's rows is still writing them out of its buffers, and the
    second one measured would pay for the first."""
    from parkwatch.devtools.localbroker import LocalMosquitto
    from parkwatch.devtools.localpostgres import LocalPostgres

    evs = events(args.parks, args.alarms)
    rounds: dict[str, list[dict[str, Any]]] = {b: [] for b in args.backends}
    with LocalMosquitto(workdir=work / "broker") as broker:
        for n in range(args.rounds):
            for backend in args.backends:
                with contextlib.ExitStack() as servers:
                    if backend == "sqlite":
                        urls = (f"sqlite:///{work / f'bulk{n}.db'}",
                                f"sqlite:///{work / f'center{n}.db'}")
                    else:
                        urls = tuple(servers.enter_context(_server(LocalPostgres()))
                                     .create_database() for _ in range(2))
                        # (both started first: the second's start-up is not in the bulk's
                        # measurement)
                    bulk = bulk_rate(urls[0], evs)
                    got = ingest_rate(urls[1], evs, broker.port, work, f"bench-{backend}-{n}")
                rounds[backend].append({"bulk_per_s": round(bulk),
                                        "ingest_per_s": round(got["rate"]),
                                        "ingest_seconds": got["seconds"],
                                        "stored": got["stored"],
                                        "ratio": round(got["rate"] / bulk, 3),
                                        "traceback": got["traceback"]})
                print(f"  {backend:10s} round {n + 1}: bulk {bulk:9.0f} events/s   ingest "
                      f"{got['rate']:9.0f} events/s   ratio {got['rate'] / bulk:.2f}",
                      flush=True)
    out: dict[str, Any] = {}
    for backend, runs in rounds.items():
        mid = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]  # the median round
        out[backend] = {"events": len(evs), **{k: mid[k] for k in (
            "bulk_per_s", "ingest_per_s", "ingest_seconds", "ratio")},
            "stored": min(r["stored"] for r in runs), "target": TARGET,
            "ratios": [r["ratio"] for r in runs],
            "met": mid["ratio"] >= TARGET and all(r["stored"] == len(evs)
                                                  and not r["traceback"] for r in runs)}
        print(f"  {backend:10s} median of {len(runs)}: ratio {mid['ratio']:.2f} "
              f"(target ≥ {TARGET})", flush=True)
    return out


@contextlib.contextmanager
def _server(pg: Any) -> Any:
    pg.start()
    try:
        yield pg
    finally:
        pg.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parks", type=int, default=100)
    ap.add_argument("--alarms", type=int, default=250, help="alarms per park (2 events each)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measurements of each backend; the median round is the result")
    ap.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"],
                    choices=["postgresql", "sqlite"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    started = time.monotonic()
    import paho.mqtt
    import psycopg

    info = bench_machine(paho_mqtt=paho.mqtt.__version__, psycopg=psycopg.__version__,
                         sqlite=sqlite3.sqlite_version)
    print(f"parkwatch center ingest benchmark: {info['nproc']} cores, load {info['loadavg']}, "
          f"speed probe {info['cpu_probe_ms']} ms; {args.parks} parks × {args.alarms} alarms "
          f"× 2 events", flush=True)
    with tempfile.TemporaryDirectory(prefix="parkwatch-center-bench-") as tmp:
        backends = run(args, Path(tmp))
    result = {"benchmark": "center", "command": command_line(argv), "machine": info,
              "settings": {"parks": args.parks, "alarms_per_park": args.alarms,
                           "events": 2 * args.parks * args.alarms, "rounds": args.rounds,
                           "target_ratio": TARGET},
              "backends": backends, "runtime_s": round(time.monotonic() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"ran {result['runtime_s']:.0f} s; wrote "
          f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    os._exit(130)
