"""Rule state on disk: saved atomically, restored by id for sensors whose config is unchanged.

Every array of rule state is indexed by sensor (or group) first, so a snapshot is a set of
arrays plus the ids and a fingerprint of each sensor's effective config.  On restore a sensor
(or group) gets its old rows back only when its id and fingerprint match: a sensor whose limits
changed starts afresh rather than carrying a state that meant something else.  Clocks (the last
sign of life) are moved up to the start time: the gateway's own downtime is not the sensors'
silence.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import weakref
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.lib.format as npy
from pydantic import BaseModel

from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_KINDS
from parkwatch.statedir import private_opener

FORMAT = 2
#: formats this version restores: 1 kept each row's fingerprint as a string of its own
READS = (1, 2)
#: a fingerprint: the first 64 bits of a SHA-256, in hex
DIGEST_CHARS = 16


#: sensor config keys newer than the format: left out of a sensor's fingerprint while unset
ADDED_SENSOR_KEYS = ("range", "signal")


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


#: a park's fingerprints, computed once: every checkpoint writes them, and a park (its config)
#: never changes (a reload builds a new one); they cost about 15 ms per 1,000 sensors
_FINGERPRINTS: weakref.WeakKeyDictionary[ParkModel, dict[str, str]] = (
    weakref.WeakKeyDictionary())


def fingerprints(park: ParkModel) -> dict[str, str]:
    """Per space ("sensor", "group"): a digest of everything that shapes each one's rule state,
    row after row in one string (DIGEST_CHARS each: a string a row was 0.6 MB more with
    10,000 sensors)."""
    known = _FINGERPRINTS.get(park)
    if known is None:
        known = _FINGERPRINTS[park] = _fingerprints(park)
    return known


def plain_fields(model: BaseModel, exclude: str | None = None) -> dict[str, Any]:
    """``model.model_dump()``, read field by field: a dump would leave each compact config
    model with a ``__dict__`` of its own to keep (64 bytes a sensor; see config/compact.py)."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        if name != exclude:
            value = getattr(model, name)
            out[name] = plain_fields(value) if isinstance(value, BaseModel) else value
    return out


def _fingerprints(park: ParkModel) -> dict[str, str]:
    """Each sensor's config (its display name aside: renaming keeps the state), its report
    interval and what every registered rule kind says shapes its state (its fingerprinter);
    each group's members and capacity and what the kinds say of groups."""
    kinds = list(RULE_KINDS.values())
    parts = [kind.fingerprinter(park) for kind in kinds]
    sensors = []
    for info in park.sensors:
        fields = plain_fields(info.config, exclude="name")
        # keys added since format 2 leave the digest alone while unset, so an upgrade keeps
        # every sensor's state (the sensor_fault kind fingerprints the effective range)
        for key in ADDED_SENSOR_KEYS:
            if fields.get(key, 0) is None:
                del fields[key]
        shape: dict[str, Any] = {"sensor": fields,
                                 "interval": float(park.report_interval[info.index])}
        for part in parts:
            shape.update(part(info))
        sensors.append(_digest(shape))
    groups = []
    for g in park.groups:
        shape = {"id": g.id, "capacity": g.capacity_kn,
                 "members": [park.sensors[m].id for m in g.members]}
        for kind in kinds:
            shape.update(kind.group_fingerprint(park, g))
        groups.append(_digest(shape))
    return {"sensor": "".join(sensors), "group": "".join(groups)}


@dataclass
class Restored:
    """What a restore did, for the start-up log line and for reconciling open alarms."""

    kept_ids: list[str] = field(default_factory=list)  # state carried over
    reset: list[str] = field(default_factory=list)  # config changed: state starts afresh
    new: int = 0
    gone: list[str] = field(default_factory=list)  # in the snapshot, no longer in the config
    #: the alarm store cleared their alarms after the snapshot was taken: state starts afresh
    lagging: list[str] = field(default_factory=list)
    saved_at: float | None = None

    @property
    def kept(self) -> int:
        return len(self.kept_ids)


def save_state(engine: RuleEngine, path: Path, arrays: dict[str, np.ndarray] | None = None,
               now: float | None = None) -> None:
    """Write a snapshot atomically (temp file, fsync, rename).  `arrays` may be a copy taken
    earlier on the pipeline thread, so the write can happen elsewhere."""
    if arrays is None:
        arrays = snapshot_arrays(engine)
    meta = snapshot_meta(engine, now)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb", opener=private_opener) as f:  # 0600: the state directory's own
        # UTF-8 bytes: as a numpy str (format 1) it took 4 bytes a character, and twice that
        # while written (2.8 MB for 10,000 sensors, at every checkpoint)
        _write_npz(f, {"__meta__": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
                       **arrays})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_npz(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (an uncompressed zip of .npy files, read by ``np.load``), each
    array written from its own memory: savez copies every array to bytes on the way."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, a in arrays.items():
            a = a if a.flags.c_contiguous else a.copy(order="C")
            with z.open(f"{name}.npy", "w", force_zip64=True) as out:
                npy.write_array_header_1_0(out, npy.header_data_from_array_1_0(a))
                out.write(a.reshape(-1).view(np.uint8).data)  # a view of its bytes, not a copy


def snapshot_arrays(engine: RuleEngine) -> dict[str, np.ndarray]:
    """A copy of every state array, cheap enough to take between batches.

    The copies are views of one block (2 MB with 10,000 sensors): glibc maps a block that large
    on its own and gives it back whole once the checkpoint is written, where three dozen copies,
    most of them too small to be mapped, left 1.2 MB of holes in the heap
    (benchmarks/startup.py)."""
    state = {name: sa.array for name, sa in engine.state().items()}
    places, end = {}, 0
    for name, a in state.items():
        places[name] = end
        end += -(-a.nbytes // 16) * 16  # each copy starts 16-byte aligned
    block = np.empty(end, np.uint8)
    out = {}
    for name, a in state.items():
        at = places[name]
        copy = block[at:at + a.nbytes].view(a.dtype).reshape(a.shape)
        copy[...] = a
        out[name] = copy
    return out


def snapshot_meta(engine: RuleEngine, now: float | None = None) -> dict[str, Any]:
    """What a snapshot's arrays mean: the ids and config fingerprints of their rows."""
    park = engine.park
    return {"format": FORMAT, "saved_at": time.time() if now is None else now,
            "ids": {"sensor": [s.id for s in park.sensors], "group": [g.id for g in park.groups]},
            "fingerprints": fingerprints(park),
            "spaces": {name: sa.space for name, sa in engine.state().items()}}


def restore_state(engine: RuleEngine, path: Path,
                  changed_since: Callable[[float], Collection[str]] | None = None) -> Restored:
    """Load a snapshot into a freshly built engine.  A missing file restores nothing.

    `changed_since(t)` names the sources whose alarms the alarm store cleared after time `t`:
    a snapshot taken at `t` may hold them still in alarm, which would swallow the next
    crossing.  Those start afresh instead."""
    if not path.exists():
        out = Restored()
        out.new = engine.park.size
        return out
    with np.load(path, allow_pickle=False) as data:
        meta = _meta(data["__meta__"])
        if meta.get("format") not in READS:
            raise ValueError(f"{path}: snapshot format {meta.get('format')}, this parkwatch "
                             f"reads {', '.join(map(str, READS))}")
        saved = {k: data[k] for k in data.files if k != "__meta__"}
    lagging = set(changed_since(meta["saved_at"])) if changed_since is not None else set()
    return apply_snapshot(engine, meta, saved, clock_floor=engine.start, lagging=lagging)


def _meta(stored: np.ndarray) -> dict[str, Any]:
    """A snapshot's meta: UTF-8 bytes (format 2) or a numpy str (format 1)."""
    text = stored.tobytes().decode("utf-8") if stored.dtype == np.uint8 else str(stored)
    meta = json.loads(text)
    if not isinstance(meta, dict):
        raise ValueError("snapshot meta is not a JSON object")
    return meta


def apply_snapshot(engine: RuleEngine, meta: dict[str, Any], saved: dict[str, np.ndarray],
                   clock_floor: float | None, lagging: Collection[str] = ()) -> Restored:
    """Give each sensor (or group) of a freshly built engine its rows of a snapshot, when its
    id and config fingerprint match.  Clocks are raised to `clock_floor` (the start time after
    a restart, None for a reload: no time was lost)."""
    park = engine.park
    out = Restored()
    out.saved_at = meta["saved_at"]
    now_ids = {"sensor": [s.id for s in park.sensors], "group": [g.id for g in park.groups]}
    now_fps = fingerprints(park)
    maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for space in ("sensor", "group"):
        old_pos = {i: k for k, i in enumerate(meta["ids"][space])}
        was = meta["fingerprints"][space]
        if not isinstance(was, str):  # format 1: a string a row
            was = "".join(was)
        now, w = now_fps[space], DIGEST_CHARS
        new_idx, old_idx = [], []
        for k, ident in enumerate(now_ids[space]):
            j = old_pos.get(ident)
            if j is None:
                out.new += 1
            elif was[j * w:(j + 1) * w] != now[k * w:(k + 1) * w]:
                out.reset.append(ident)
            elif ident in lagging:
                out.lagging.append(ident)
            else:
                new_idx.append(k)
                old_idx.append(j)
                out.kept_ids.append(ident)
        now_set = set(now_ids[space])  # once: per id it cost O(n^2), seconds at 10k sensors
        out.gone += [i for i in meta["ids"][space] if i not in now_set]
        maps[space] = (np.array(new_idx, np.intp), np.array(old_idx, np.intp))
    for name, sa in engine.state().items():
        old = saved.get(name)
        if old is None or old.shape[1:] != sa.array.shape[1:] or old.dtype != sa.array.dtype:
            continue  # a kind new in this version, or one whose state changed shape
        kept_rows, saved_rows = maps[sa.space]
        sa.array[kept_rows] = old[saved_rows]
        if sa.clock and clock_floor is not None:
            np.maximum(sa.array, clock_floor, out=sa.array)
    engine.restored()
    return out
