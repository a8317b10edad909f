"""Every output's wanted and observed state: the writes, their supervision and the faults.

The bank lasts as long as the daemon.  The linkage stage tells it what each output should be
(:meth:`OutputBank.apply`, on the pipeline thread); it writes only what changed, through the
port of the output's driver (:mod:`parkwatch.outputs.port`), which reads every write back.
Every ``linkage.check_interval_s`` each output is read back again (:meth:`check_all`).  A write
or a check that disagrees is written again at once; when that disagrees too, the output is in
fault: logged once, and ``report(source, False)`` raises its `output_fault` alarm; the first
agreement after that is logged once and clears it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parkwatch.drivers.registry import DRIVER_KINDS
from parkwatch.outputs.port import OutputPort
from parkwatch.park import OutputInfo, ParkModel

log = logging.getLogger("parkwatch.outputs")

#: (alarm source of the output, agrees, when): to the output_fault rule, on the pipeline thread
Report = Callable[[int, bool, float], None]
#: disagreeing answers in a row that make a fault: the first is followed by a second write at
#: once (a frame lost to line noise is not a dead sounder), a second is a fault
MISSES = 2


class OutputBank:
    def __init__(self, park: ParkModel, drivers: Callable[[], list[Any]],
                 report: Report, state_dir: Path | None = None) -> None:
        self.drivers = drivers
        #: where the silenced alarms are kept (None: not kept, tests)
        self.state_dir = state_dir
        self.report = report
        self._lock = threading.Lock()
        self._ports: dict[str, tuple[Any, OutputPort]] = {}
        #: the daemon is stopping: answers of writes its buses drop are no faults
        self.closing = False
        self.bind(park)

    def bind(self, park: ParkModel) -> None:
        """Take the outputs of a config (at start, and at a reload that changed them)."""
        self.park = park
        self.outputs: list[OutputInfo] = park.outputs
        n = len(self.outputs)
        #: what each output should be (None: not written yet), and whether for a drill only
        self.wanted: list[bool | None] = [None] * n
        self.drill = [False] * n
        #: the last answer: agrees, what was seen, when (monotonic)
        self.agrees: list[bool | None] = [None] * n
        self.seen = [""] * n
        self.fault = [False] * n
        #: disagreeing answers in a row (a fault after MISSES of them)
        self.misses = [0] * n
        self.writes = 0
        self.failures = 0
        self.last_write_s: float | None = None

    # --- the pipeline thread --------------------------------------------------------------
    def apply(self, on: list[bool], drill: list[bool], why: str = "") -> int:
        """Write the outputs whose wanted state changed; how many."""
        n = 0
        for k, want in enumerate(on):
            self.drill[k] = drill[k]
            if self.wanted[k] is not want:
                self.wanted[k] = want
                n += 1
                o = self.outputs[k]
                log.info("output %s (%s, %s) %s%s%s", o.config.id, o.config.kind, o.place,
                            "ON" if want else "to rest", " [演练 drill]" if drill[k] else "",
                            f": {why}" if why else "")
                self._write(k, want)
        return n

    def reassert(self, on: list[bool], drill: list[bool]) -> None:
        """Write every output as the open alarms demand (after a start or a restart): an
        output is never assumed to have kept its state."""
        for k in range(len(self.outputs)):
            self.wanted[k], self.drill[k] = on[k], drill[k]
            self._write(k, on[k])
        sounding = [self.outputs[k].config.id for k in range(len(on)) if on[k]]
        if sounding:
            log.warning("outputs re-asserted for the open alarms: %s on", ", ".join(sounding))

    def check_all(self) -> None:
        """Read every written output back (the periodic supervision); one in fault is
        written again, so that it follows its command the moment it is freed."""
        for k, want in enumerate(self.wanted):
            if want is None:
                continue
            port = self._port(k)
            if port is None:
                self._answer(want)(k, False, "its driver is not running")
            elif self.fault[k]:
                port.write(k, want, self._answer(want))
            else:
                port.check(k, want, self._answer(want))

    # --- writes and answers ---------------------------------------------------------------
    def _write(self, k: int, on: bool) -> None:
        self.writes += 1
        self.last_write_s = time.monotonic()
        port = self._port(k)
        if port is None:
            self._answer(on)(k, False, "its driver is not running")
            return
        port.write(k, on, self._answer(on))

    def _answer(self, on: bool) -> Callable[[int, bool, str], None]:
        def done(k: int, agrees: bool, seen: str) -> None:
            with self._lock:
                if self.closing or k >= len(self.wanted) or self.wanted[k] is not on:
                    return  # an answer for a state no longer wanted: the next one decides
                self.agrees[k], self.seen[k] = agrees, seen
                self.misses[k] = 0 if agrees else self.misses[k] + 1
                if agrees == (not self.fault[k]):
                    return
                retry = not agrees and self.misses[k] < MISSES
                if not retry:
                    self.fault[k] = not agrees
                o = self.outputs[k]
            if retry:  # one lost answer on a busy bus is no fault: write it again at once
                port = self._port(k)
                if port is not None:
                    port.write(k, on, self._answer(on))
                    return
                with self._lock:
                    self.fault[k] = True
            if agrees:
                log.warning("output %s (%s) agrees again with its command: %s", o.config.id,
                            o.place, seen)
            else:
                self.failures += 1
                log.error("output %s (%s) does not follow its command (%s): %s; raising "
                          "output_fault", o.config.id, o.place, "ON" if on else "rest", seen)
            self.report(o.index, agrees, time.time())
        return done

    def _port(self, k: int) -> OutputPort | None:
        """The port of output k's driver, built for the driver object running now (a reload
        may have replaced it)."""
        o = self.outputs[k]
        driver = next((d for d in self.drivers() if d.id == o.config.driver), None)
        if driver is None:
            return None
        held = self._ports.get(o.config.driver)
        if held is not None and held[0] is driver:
            return held[1]
        if held is not None:
            held[1].stop()
        dcfg = next(d for d in self.park.cfg.drivers if d.id == o.config.driver)
        mine = [x for x in self.outputs if x.config.driver == o.config.driver]
        port: OutputPort = DRIVER_KINDS[dcfg.type].output_port()(driver, dcfg, mine,
                                                                   self.park.cfg)
        port.start()
        self._ports[o.config.driver] = (driver, port)
        return port

    def stop(self) -> None:
        for _driver, port in self._ports.values():
            port.stop()
        self._ports.clear()

    # --- views ----------------------------------------------------------------------------
    def view(self) -> list[dict[str, Any]]:
        """Each output as the API and the status show it."""
        out = []
        for k, o in enumerate(self.outputs):
            c = o.config
            out.append({"id": c.id, "name": c.name, "kind": c.kind, "building": c.building,
                        "floor": c.floor, "zone": c.zone, "driver": c.driver,
                        "wanted": ("on" if self.wanted[k] else "rest")
                        if self.wanted[k] is not None else None,
                        "drill": self.drill[k], "agrees": self.agrees[k],
                        "seen": self.seen[k], "fault": self.fault[k]})
        return out
