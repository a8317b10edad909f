"""A simulated city fire remote monitoring center (GB/T 26875.3-2011), for the tests and for
field engineers bench-testing a gateway's uplink before the city's center is reachable.

It listens on TCP, takes the frames of any number of devices and checks each byte by byte:
start and end marks, the data length against the frame's size, the checksum, the command
byte (table 2), the protocol's main version (1), the addresses (the destination must be the
center's, the source the expected device's when one is set), the type flag (table 3) and the
data unit's length against its object count, and that each object decodes (time labels, GB
18030 descriptions).  A good frame is confirmed (command 3, same serial number); one whose
fields are wrong is denied (6); bytes that are no frame at all are dropped unanswered, as a
center cannot trust their serial number.  Every frame is recorded (:attr:`received`,
:attr:`rejected`).

To exercise retransmission it can be told to deny, drop (no answer) or delay its answer to the
next frames (:meth:`plan`).  It can also send the device a time sync (:meth:`sync_clock`).

    python -m parkwatch.firmware_sim.gb26875_center --port 9020 --address 0 --drop 1

prints one line per frame received.
"""

from __future__ import annotations

import argparse
import json
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from parkwatch.alarms.gb26875.codes import MAIN_VERSION, Command
from parkwatch.alarms.gb26875.frame import Frame, FrameError, decode, now_cst, split
from parkwatch.alarms.gb26875.objects import ClockSync, InfoObject, data_unit, parse_data_unit

log = logging.getLogger("parkwatch.firmware_sim.gb26875")
#: what the center does with the next frame: answer it, deny it, say nothing, or answer late
Action = str  # "confirm" | "deny" | "drop" | "delay:<seconds>"


@dataclass(frozen=True)
class Received:
    """A frame the center took: its fields, its data unit's type and objects, its bytes."""

    frame: Frame
    data_type: int | None
    objects: list[InfoObject | bytes]
    raw: bytes
    action: Action


class Center:
    """The simulated center: :meth:`start`, then read :attr:`received`; :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, address: int = 0,
                 device: int | None = None) -> None:
        self.address = address
        self.device = device
        self._server = socket.create_server((host, port))
        self._server.setblocking(False)
        self.port: int = self._server.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._buffers: dict[socket.socket, bytearray] = {}
        self._later: list[tuple[float, socket.socket, bytes]] = []
        self._plan: deque[Action] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gb26875-center", daemon=True)
        self._serial = 0
        self.received: list[Received] = []
        self.rejected: list[tuple[bytes, str]] = []
        #: the devices' answers (command byte by serial) to the center's own commands
        self.answers: dict[int, int] = {}
        self.connections = 0
        #: called with each frame taken (the CLI prints it)
        self.on_frame: Callable[[Received], None] | None = None

    def start(self) -> Center:
        self._sel.register(self._server, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in list(self._buffers):
            conn.close()
        self._server.close()
        self._sel.close()

    def plan(self, *actions: Action) -> None:
        """What to do with the next frames, one action each; after them, confirm."""
        with self._cond:
            self._plan.extend(actions)

    def wait(self, pred: Callable[[Center], bool], timeout: float = 10.0) -> bool:
        """Wait until `pred(self)` holds (checked on each frame); whether it did."""
        with self._cond:
            return self._cond.wait_for(lambda: pred(self), timeout)

    def sync_clock(self, at: datetime) -> int:
        """Send every connected device a time sync (control, type 90); its serial."""
        with self._cond:
            serial, self._serial = self._serial, (self._serial + 1) & 0xFFFF
            raw = Frame(serial, now_cst(), self.address, self.device or 0,
                        int(Command.CONTROL), data_unit([ClockSync(at)])).encode()
            self._later.extend((0.0, conn, raw) for conn in self._buffers)
        return serial

    # --- the server's thread -------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    self._accept()
                else:
                    self._read(sock)
            self._flush_later()

    def _accept(self) -> None:
        try:
            conn, _ = self._server.accept()
        except BlockingIOError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffers[conn] = bytearray()
        self._sel.register(conn, selectors.EVENT_READ)
        with self._cond:
            self.connections += 1
            self._cond.notify_all()

    def _close(self, conn: socket.socket) -> None:
        self._sel.unregister(conn)
        with self._cond:
            self._buffers.pop(conn, None)
            self._cond.notify_all()
        conn.close()

    @property
    def open_connections(self) -> int:
        """Devices connected now."""
        return len(self._buffers)

    def _read(self, conn: socket.socket) -> None:
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._close(conn)
            return
        buffer = self._buffers[conn]
        buffer += chunk
        while (raw := split(buffer)) is not None:
            self._take(conn, raw)

    def _flush_later(self) -> None:
        now = time.monotonic()
        with self._cond:
            due = [item for item in self._later if item[0] <= now]
            self._later = [item for item in self._later if item[0] > now]
        for _, conn, raw in due:
            if conn in self._buffers:
                try:
                    conn.sendall(raw)
                except OSError:
                    self._close(conn)

    def check(self, raw: bytes) -> tuple[Frame, int | None, list[InfoObject | bytes]]:
        """The frame's fields checked byte by byte; FrameError naming the first bad one."""
        frame = decode(raw)  # start, length, end, checksum, command byte
        if frame.main_version != MAIN_VERSION:
            raise FrameError(f"main version {frame.main_version}, not {MAIN_VERSION}")
        if frame.destination != self.address:
            raise FrameError(f"destination {frame.destination:012x} is not this center "
                             f"({self.address:012x})")
        if self.device is not None and frame.source != self.device:
            raise FrameError(f"source {frame.source:012x} is not the device "
                             f"{self.device:012x}")
        if frame.command in (Command.CONFIRM, Command.DENY) and not frame.data:
            return frame, None, []
        if frame.command != Command.SEND:
            raise FrameError(f"command {frame.command}: a device sends data (2) or answers")
        kind, objects = parse_data_unit(frame.data)
        return frame, kind, objects

    def _take(self, conn: socket.socket, raw: bytes) -> None:
        try:
            frame, kind, objects = self.check(raw)
        except FrameError as exc:
            self._refuse(conn, raw, str(exc))
            return
        if frame.command in (Command.CONFIRM, Command.DENY):
            with self._cond:
                self.answers[frame.serial] = frame.command
                self._cond.notify_all()
            return
        with self._cond:
            action = self._plan.popleft() if self._plan else "confirm"
        got = Received(frame, kind, objects, raw, action)
        with self._cond:  # recorded before it is answered: the device may look at once
            self.received.append(got)
            self._cond.notify_all()
        if action != "drop":
            command = Command.DENY if action == "deny" else Command.CONFIRM
            delay = float(action.split(":", 1)[1]) if action.startswith("delay:") else 0.0
            answer = frame.answer(command, now_cst()).encode()
            with self._cond:
                self._later.append((time.monotonic() + delay, conn, answer))
            self._flush_later()
        if self.on_frame is not None:
            self.on_frame(got)

    def _refuse(self, conn: socket.socket, raw: bytes, why: str) -> None:
        log.warning("frame refused (%s): %s", why, raw.hex())
        try:  # deny it if at least its frame is sound enough to name its serial number
            frame = decode(raw)
        except FrameError:
            frame = None
        if frame is not None:
            answer = Frame(frame.serial, now_cst(), self.address, frame.source,
                           int(Command.DENY)).encode()
            with self._cond:
                self._later.append((0.0, conn, answer))
        with self._cond:
            self.rejected.append((raw, why))
            self._cond.notify_all()


def _print(got: Received) -> None:
    f = got.frame
    print(json.dumps({"serial": f.serial, "time": f.at.isoformat(), "source": f.source,
                      "command": f.command, "type": got.data_type, "action": got.action,
                      "objects": [o.hex() if isinstance(o, bytes) else repr(o)
                                  for o in got.objects], "hex": got.raw.hex()},
                     ensure_ascii=False), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="A simulated GB/T 26875.3 monitoring center")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9020)
    ap.add_argument("--address", type=int, default=0, help="the center's address")
    ap.add_argument("--device", type=int, default=None, help="accept only this source")
    ap.add_argument("--deny", type=int, default=0, help="deny the first N frames")
    ap.add_argument("--drop", type=int, default=0, help="leave the next N unanswered")
    ap.add_argument("--delay", type=float, default=0.0, help="answer every frame this late")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    center = Center(args.host, args.port, args.address, args.device)
    center.plan(*(["deny"] * args.deny + ["drop"] * args.drop))
    if args.delay:
        center.plan(*([f"delay:{args.delay}"] * 100_000))
    center.on_frame = _print
    center.start()
    print(f"GB/T 26875.3 center listening on {args.host}:{center.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        center.stop()


if __name__ == "__main__":
    main()
