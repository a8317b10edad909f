"""The command center's storage, the same tests on SQLite and on a real PostgreSQL server
(Debian's, started once per test run in a temporary directory; a fresh database per test):
events stored once by (alarm_id, seq) whatever their order and repetition, an alarm's state is
its highest seq, schema migrations from nothing and from the previous version, a newer schema
refused, PostgreSQL going away and coming back, the console's orderings and filters."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from conftest import VALIDATOR
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.schemaversions import latest, migrations
from parkwatch.center.store import (
    BadEvent,
    CenterStore,
    SchemaTooNew,
    StoreUnavailable,
    open_store,
)
from parkwatch.devtools import localpostgres
from parkwatch.devtools.localpostgres import LocalPostgres, PostgresUnavailable

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
_EVENT_STATE = {  # what each kind of event says of the alarm (a simple lifecycle)
    "raised": (True, False), "escalated": (True, False), "severity_changed": (True, False),
    "acknowledged": (True, True), "cleared": (False, True), "closed": (False, True),
}


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def event(alarm_id: str, seq: int, kind: str = "raised", *, raised: datetime = T0,
          **fields: Any) -> dict[str, Any]:
    """A contract event (validated against the contract's JSON schema)."""
    active, acked = _EVENT_STATE[kind]
    changed = raised + timedelta(seconds=seq - 1)
    ev: dict[str, Any] = {
        "schema": "parkwatch.alarm/1", "alarm_id": alarm_id, "seq": seq, "event": kind,
        "park": "xinqiao", "building": "B1", "floor": "F1", "zone": None,
        "tenants": ["t-acme"], "sensor_id": "lc-1", "sensor_kind": "load_cell",
        "rule": "high_threshold", "severity": "warning", "active": active,
        "acknowledged": acked, "value": 812.5, "threshold": 800.0, "unit": "kg",
        "observed_at": rfc3339(changed), "raised_at": rfc3339(raised),
        "changed_at": rfc3339(changed), "acked_by": "王工" if acked else None,
        "acked_at": rfc3339(changed) if acked else None, "escalation_level": 0,
        "drill": False, "message": "B1 F1 荷载超限", "gateway": "xinqiao-gw1"}
    ev.update(fields)
    VALIDATOR.validate(ev)
    return ev


def lifecycle(alarm_id: str, **fields: Any) -> list[dict[str, Any]]:
    """raised, acknowledged, cleared, closed: seq 1 to 4."""
    return [event(alarm_id, i + 1, kind, **fields)
            for i, kind in enumerate(("raised", "acknowledged", "cleared", "closed"))]


# --- backends -------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/center.db"
    server: LocalPostgres = request.getfixturevalue("pg_server")
    if server.proc is None:  # a test that stopped it failed half-way
        server.start()
    return server.create_database()


@pytest.fixture
def store(url: str) -> Iterator[CenterStore]:
    s = open_store(url)
    yield s
    s.close()


def raw(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database directly, as another program (or an older release
    of the center) would."""
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(sql, params).fetchall()
    with psycopg.connect(url, autocommit=True) as pconn:
        cur = pconn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


# --- idempotence ----------------------------------------------------------------------------

def test_duplicated_reordered_and_replayed_events_are_stored_once(store: CenterStore) -> None:
    aid = new_alarm_id(T0.timestamp())
    raised, acked, cleared, closed = lifecycle(aid)

    # the cleared event overtakes the others; the raised one comes twice
    assert store.store_events([cleared, raised, raised], 100.0).__dict__ == \
        {"stored": 2, "duplicates": 1}
    state = store.alarm(aid)
    assert state is not None
    assert (state["seq"], state["last_event"], state["active"]) == (3, "cleared", False)
    assert state["acked_by"] == "王工" and state["event"] == cleared

    # the late acknowledgement (a lower seq) is kept in the timeline but changes no state
    assert store.store_events([acked], 101.0).__dict__ == {"stored": 1, "duplicates": 0}
    after = store.alarm(aid)
    assert after is not None and after["seq"] == 3 and after["event"] == cleared
    assert [e["event"] for e in after["events"]] == ["raised", "acknowledged", "cleared"]
    assert store.open_alarms() == [cleared]

    assert store.store_events([closed, acked], 102.0).__dict__ == \
        {"stored": 1, "duplicates": 1}
    final = store.alarm(aid)
    assert final is not None and final["last_event"] == "closed"
    assert store.open_alarms() == []

    # a replay of everything (a broker resending a session, one by one and all at once)
    for ev in reversed([raised, acked, cleared, closed]):
        assert store.store_events([ev], 200.0).__dict__ == {"stored": 0, "duplicates": 1}
    assert store.store_events([raised, acked, cleared, closed] * 2, 201.0).__dict__ == \
        {"stored": 0, "duplicates": 8}
    assert store.alarm(aid) == final
    assert [e["seq"] for e in final["events"]] == [1, 2, 3, 4]


def test_a_batch_of_new_alarms_changes_and_one_replayed_event_is_stored_right(
        store: CenterStore) -> None:
    """One batch as a busy park makes it: alarms raised in it (a bulk write of new rows),
    the next event of an alarm raised before, with a tenant it did not name then, and an event
    the broker sent again after a restart.  Nothing is lost, nothing doubled, each state is
    its highest seq."""
    old, fresh, other = (new_alarm_id(T0.timestamp()) for _ in range(3))
    o_raised, o_acked, o_cleared, _ = lifecycle(old)
    assert store.store_events([o_raised, o_acked], 1.0).__dict__ == \
        {"stored": 2, "duplicates": 0}
    f_raised, f_acked, _, _ = lifecycle(fresh)
    mixed = [f_raised, {**o_cleared, "tenants": ["t-acme", "t-bolt"]}, f_acked,
             event(other, 1), o_acked]
    assert store.store_events(mixed, 2.0).__dict__ == {"stored": 4, "duplicates": 1}
    assert store.store_events([event(other, 1)], 3.0).__dict__ == \
        {"stored": 0, "duplicates": 1}  # only a replay: stored before, changes nothing
    old_state, fresh_state = store.alarm(old), store.alarm(fresh)
    assert old_state is not None and fresh_state is not None
    assert (old_state["seq"], old_state["last_event"], old_state["tenants"]) == \
        (3, "cleared", ["t-acme", "t-bolt"])
    assert [e["seq"] for e in old_state["events"]] == [1, 2, 3]
    assert (fresh_state["seq"], fresh_state["last_event"], fresh_state["tenants"]) == \
        (2, "acknowledged", ["t-acme"])
    assert {e["alarm_id"] for e in store.open_alarms()} == {old, fresh, other}  # none closed

    # a raise that comes after its alarm's later event was stored, in a batch of its own
    late = new_alarm_id(T0.timestamp())
    l_raised, l_acked, _, _ = lifecycle(late)
    assert store.store_events([l_acked], 4.0).__dict__ == {"stored": 1, "duplicates": 0}
    assert store.store_events([l_raised, event(new_alarm_id(T0.timestamp()), 1)], 5.0) \
        .__dict__ == {"stored": 2, "duplicates": 0}
    late_state = store.alarm(late)
    assert late_state is not None and late_state["seq"] == 2
    assert [e["seq"] for e in late_state["events"]] == [1, 2]


def test_a_batch_of_many_alarms_is_one_write(store: CenterStore) -> None:
    ids = [new_alarm_id(T0.timestamp()) for _ in range(300)]
    batch = [ev for aid in ids for ev in lifecycle(aid)[:2]]
    assert store.store_events(batch, 1.0).__dict__ == {"stored": 600, "duplicates": 0}
    assert len(store.open_alarms()) == 300
    assert all(e["event"] == "acknowledged" for e in store.open_alarms())


def test_a_batch_with_an_unusable_event_stores_nothing(store: CenterStore) -> None:
    good = event(new_alarm_id(T0.timestamp()), 1)
    bad = {**event(new_alarm_id(T0.timestamp()), 1), "alarm_id": None}
    with pytest.raises(BadEvent, match="alarm_id"):
        store.store_events([good, bad], 1.0)
    assert store.open_alarms() == []


# --- schema versions ------------------------------------------------------------------------

def test_an_empty_database_is_migrated_to_the_latest_version(url: str) -> None:
    s = open_store(url)
    try:
        dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        assert s.migrate() == latest(dialect) >= 2
        recorded = raw(url, "SELECT version, name FROM schema_version ORDER BY version")
        assert recorded == [(m.version, m.name) for m in migrations(dialect)]
    finally:
        s.close()
    again = open_store(url)  # nothing to do the second time
    again.close()
    assert len(raw(url, "SELECT version FROM schema_version")) == latest(dialect)


def test_a_database_of_the_previous_version_is_migrated_and_keeps_its_data(url: str) -> None:
    old = open_store(url, migrate=False)
    assert old.migrate(upto=1) == 1
    old.close()
    # what the release with schema version 1 wrote: events and the alarm's state
    aid = new_alarm_id(T0.timestamp())
    first, second = lifecycle(aid, tenants=["t-acme", "t-bolt"])[:2]
    for ev in (first, second):
        raw(url, "INSERT INTO events (alarm_id, seq, park, event, changed_at, received_at, "
                 "body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (aid, ev["seq"], "xinqiao", ev["event"], 0.0, 5.0, orjson.dumps(ev).decode()))
    raw(url, "INSERT INTO alarms (alarm_id, park, building, floor, zone, sensor_id, "
             "sensor_kind, rule, severity, active, acknowledged, drill, raised_at, changed_at, "
             "acked_by, acked_at, last_event, event, seq) VALUES "
             "(?, 'xinqiao', 'B1', 'F1', NULL, 'lc-1', 'load_cell', 'high_threshold', "
             "'warning', ?, ?, ?, ?, ?, '王工', ?, 'acknowledged', ?, 2)",
        (aid, True, True, False, T0.timestamp(), T0.timestamp() + 1, T0.timestamp() + 1,
         orjson.dumps(second).decode()))

    s = open_store(url)  # the current release
    try:
        assert s.migrate() == latest("sqlite" if url.startswith("sqlite") else "postgresql")
        state = s.alarm(aid)
        assert state is not None
        assert state["tenants"] == ["t-acme", "t-bolt"]  # filled in from the stored events
        assert [e["seq"] for e in state["events"]] == [1, 2]
        assert s.history(tenant="t-bolt") == [second]
        assert s.store_events([first, second], 9.0).__dict__ == {"stored": 0, "duplicates": 2}
        third = lifecycle(aid, tenants=["t-acme", "t-bolt"])[2]
        assert s.store_events([third], 9.0).stored == 1
        assert s.open_alarms() == [third]
    finally:
        s.close()


def test_a_database_of_a_newer_release_is_refused(url: str) -> None:
    open_store(url).close()
    raw(url, "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
        (99, "from_the_future", 0.0))
    with pytest.raises(SchemaTooNew, match="99") as err:
        open_store(url)
    assert "请升级" in str(err.value) and "upgrade this center" in str(err.value)
    assert raw(url, "SELECT COUNT(*) FROM events") == [(0,)]


# --- PostgreSQL going away ------------------------------------------------------------------

def test_postgresql_down_raises_store_unavailable_and_back_works_again(
        pg_server: LocalPostgres) -> None:
    s = open_store(pg_server.create_database())
    try:
        aid = new_alarm_id(T0.timestamp())
        raised, acked, cleared, closed = lifecycle(aid)
        assert s.store_events([raised], 1.0).stored == 1
        pg_server.stop()
        with pytest.raises(StoreUnavailable, match="PostgreSQL"):
            s.store_events([acked], 2.0)  # the ingest keeps it and retries
        with pytest.raises(StoreUnavailable):
            s.open_alarms()
        assert s.ping() is False
        pg_server.start()
        assert s.ping() is True
        assert s.store_events([acked], 3.0).stored == 1  # the same store object
        # a restart between two calls is not even noticed by the caller
        pg_server.restart()
        assert s.store_events([cleared, closed], 4.0).stored == 2
        state = s.alarm(aid)
        assert state is not None and [e["seq"] for e in state["events"]] == [1, 2, 3, 4]
    finally:
        s.close()
        if pg_server.proc is None:
            pg_server.start()


def test_a_connection_left_in_pipeline_mode_is_dropped_and_the_write_runs_again(
        pg_server: LocalPostgres) -> None:
    """A server that shuts down while a batch's pipeline is in flight leaves the connection
    "busy" in pipeline mode, where every later query is refused: the store drops it and runs
    the write again on a new one instead of failing every batch after it (seen in CI: a
    PostgreSQL restart in the middle of a merge)."""
    import psycopg

    s = open_store(pg_server.create_database())
    calls: list[int] = []

    def write(tx: Any) -> int:
        calls.append(1)
        if len(calls) == 1:  # as the restart leaves it
            tx.conn.pgconn.enter_pipeline_mode()
            raise psycopg.OperationalError("cannot exit pipeline mode while busy")
        return int(tx.all("SELECT 41 + 1")[0][0])

    try:
        assert s._write(write) == 42 and len(calls) == 2  # type: ignore[attr-defined]
        aid = new_alarm_id(T0.timestamp())
        assert s.store_events(lifecycle(aid)[:1], 1.0).stored == 1  # and the store goes on
    finally:
        s.close()


def test_local_postgres_says_what_to_install_when_it_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localpostgres, "find_server_bin", lambda: None)
    server = LocalPostgres()
    try:
        with pytest.raises(PostgresUnavailable, match="apt-get install -y postgresql"):
            server.start()
    finally:
        server.close()
    assert not server.workdir.exists()


# --- the console's views --------------------------------------------------------------------

def test_open_alarms_are_most_severe_then_oldest_first(store: CenterStore) -> None:
    def alarm(minutes: int, severity: str, park: str = "xinqiao",
              kind: str = "raised") -> dict[str, Any]:
        raised = T0 + timedelta(minutes=minutes)
        return event(new_alarm_id(raised.timestamp()), 1 if kind == "raised" else 4, kind,
                     raised=raised, severity=severity, park=park)

    old_warning, new_critical, old_critical = alarm(0, "warning"), alarm(9, "critical"), \
        alarm(5, "critical")
    info, other_park = alarm(1, "info"), alarm(2, "critical", park="dongli")
    closed = alarm(-5, "critical", kind="closed")
    store.store_events([info, old_warning, closed, new_critical, other_park, old_critical], 1.0)
    assert store.open_alarms() == [other_park, old_critical, new_critical, old_warning, info]
    assert store.open_alarms("xinqiao") == [old_critical, new_critical, old_warning, info]
    assert store.open_alarms("nowhere") == []


def test_history_filters(store: CenterStore) -> None:
    def alarm(hours: int, **fields: Any) -> dict[str, Any]:
        raised = T0 + timedelta(hours=hours)
        return event(new_alarm_id(raised.timestamp()), 1, raised=raised, **fields)

    fire = alarm(0, rule="button_latch", severity="critical", sensor_kind="fire_button",
                 sensor_id="fb-1", tenants=["t-acme", "t-bolt"], value=1, threshold=None,
                 unit=None)
    flood = alarm(1, rule="high_threshold", sensor_kind="water_level", building="B2",
                  tenants=["t-bolt"], unit="cm")
    drill = alarm(2, rule="button_latch", severity="critical", sensor_kind="fire_button",
                  drill=True, tenants=["t-acme"])
    elsewhere = alarm(3, park="dongli", building="D1", tenants=["t-cargo"])
    store.store_events([fire, flood, drill, elsewhere], 1.0)

    assert store.history() == [elsewhere, drill, flood, fire]  # newest first
    assert store.history(park="xinqiao") == [drill, flood, fire]
    assert store.history(building="B2") == [flood]
    assert store.history(tenant="t-bolt") == [flood, fire]
    assert store.history(tenant="t-acme", drill=False) == [fire]
    assert store.history(rule="button_latch") == [drill, fire]
    assert store.history(kind="water_level") == [flood]
    assert store.history(severity="critical", drill=True) == [drill]
    assert store.history(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)) == \
        [drill, flood]
    assert store.history(since=(T0 + timedelta(hours=3)).timestamp()) == [elsewhere]
    assert store.history(limit=2) == [elsewhere, drill]
    assert store.history(park="xinqiao", tenant="t-cargo") == []


def test_park_places_are_the_places_and_sensors_that_had_alarms(store: CenterStore) -> None:
    def alarm(hours: int, seq: int, **fields: Any) -> list[dict[str, Any]]:
        raised = T0 + timedelta(hours=hours)
        a = new_alarm_id(raised.timestamp())
        return [event(a, i + 1, k, raised=raised, **fields)
                for i, k in enumerate(("raised", "acknowledged", "cleared", "closed")[:seq])]

    old = alarm(0, 4, building="B1", floor="F1", sensor_id="lc-1", tenants=["t-acme"])
    new = alarm(2, 1, building="B1", floor="F1", sensor_id="lc-1", tenants=["t-bolt"])
    fire = alarm(1, 1, building="B2", floor="F3", zone="Z1", sensor_id="fb-1",
                 sensor_kind="fire_button", rule="button_latch", severity="critical",
                 tenants=["t-acme", "t-cargo"])
    floor = alarm(3, 1, building="B2", floor="F3", zone=None, sensor_id=None, sensor_kind=None,
                  rule="floor_load", tenants=[])
    other = alarm(4, 1, park="dongli", building="D1", sensor_id="lc-9", tenants=["t-x"])
    store.store_events(old + new + fire + floor + other, 1.0)
    seen = store.park_places("xinqiao")
    by_place = {(e["building"], e["floor"], e["zone"], e["sensor_id"]): e
                for e in seen["sensors"]}
    assert by_place == {("B1", "F1", None, "lc-1"): new[-1],  # the latest raised alarm
                        ("B2", "F3", "Z1", "fb-1"): fire[-1],
                        ("B2", "F3", None, None): floor[-1]}
    assert sorted(seen["tenants"]) == [("B1", "F1", None, "t-acme"), ("B1", "F1", None, "t-bolt"),
                                       ("B2", "F3", "Z1", "t-acme"), ("B2", "F3", "Z1", "t-cargo")]
    assert store.park_places("nowhere") == {"sensors": [], "tenants": []}


def test_gateway_statuses(store: CenterStore) -> None:
    online = {"state": "online", "gateway": "xinqiao-gw1", "park": "xinqiao"}
    store.store_status("xinqiao", online, 10.0)
    store.store_status("dongli", {"state": "offline"}, 11.0)
    store.store_status("xinqiao", {"state": "offline"}, 9.0)  # older: arrived late
    assert store.gateways() == [
        {"park": "dongli", "status": {"state": "offline"}, "received_at": 11.0},
        {"park": "xinqiao", "status": online, "received_at": 10.0}]
    store.store_status("dongli", None, 12.0)  # retained status emptied
    assert store.gateways()[0] == {"park": "dongli", "status": None, "received_at": 12.0}
    assert store.ping() is True


def test_center_instances_starting_together_migrate_once(pg_server: LocalPostgres) -> None:
    url = pg_server.create_database()
    opened: list[CenterStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_store(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in opened:
        s.close()
    assert errors == [] and len(opened) == 4
    assert raw(url, "SELECT version FROM schema_version ORDER BY version") == \
        [(m.version,) for m in migrations("postgresql")]


def test_local_postgres_never_runs_the_server_as_root(pg_server: LocalPostgres) -> None:
    assert pg_server.proc is not None
    with open(f"/proc/{pg_server.proc.pid}/status", encoding="ascii") as f:
        uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    assert uid != 0 and (os.geteuid() != 0 or uid == pg_server.workdir.stat().st_uid)


def test_a_sqlite_file_held_by_another_writer_is_unavailable_until_released(
        tmp_path: Path) -> None:
    from parkwatch.center.sqlitestore import SqliteStore

    s = SqliteStore(tmp_path / "center.db", busy_s=0.2)
    other = sqlite3.connect(tmp_path / "center.db", isolation_level=None)
    try:
        s.migrate()
        ev = event(new_alarm_id(T0.timestamp()), 1)
        other.execute("BEGIN IMMEDIATE")  # a second center on the same file, mid-write
        with pytest.raises(StoreUnavailable, match="SQLite"):
            s.store_events([ev], 1.0)
        assert s.open_alarms() == []  # reading goes on meanwhile (WAL)
        other.execute("COMMIT")
        assert s.store_events([ev], 2.0).stored == 1
    finally:
        other.close()
        s.close()
