"""`parkwatch watch`: the loop that connects the broker, the board, the keyboard and the screen.

paho's network thread only queues each message and pokes a wake-up pipe; the main thread
waits on the keyboard and that pipe together (so a fire alarm is drawn at once, not at the
next tick), feeds the queued messages to the :class:`~parkwatch.console.board.Board`, rings the
bell for new fire alarms and redraws with rich's ``Live`` when something changed, or every
second for the ages.  After every (re)subscription the board is resynchronised with the
retained alarm states (an alarm that closed meanwhile is dropped).  Acknowledgements are
published QoS 1 on the alarm's park's ``commands/ack`` topic and shown as pending until the
gateway's ``acknowledged`` event arrives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import IO, Any

import paho.mqtt.client as mqtt
from rich.console import Console
from rich.live import Live

from parkwatch.commandsig import sign
from parkwatch.console.board import AckResult, Board
from parkwatch.console.keys import KeyReader
from parkwatch.console.render import Frame, render
from parkwatch.console.settings import WatchOptions
from parkwatch.mqttlink.link import MqttLink

REDRAW_EVERY_S = 1.0  # ages and staleness move with time alone
#: after a (re)subscription, alarms whose retained state has not come within this are gone
RESYNC_S = 3.0
SUBSCRIBED = "\0subscribed"  # the inbox's marker: the broker acknowledged the subscription
PAGE = 10
MOVES = {"up": -1, "k": -1, "down": 1, "j": 1, "pageup": -PAGE, "pagedown": PAGE,
         "home": -1_000_000, "g": -1_000_000, "end": 1_000_000, "G": 1_000_000}
QUIT = {"q", "Q", "eof"}


class WakePipe:
    """A self-pipe: any thread pokes it, the main loop's select() wakes up."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full pipe: it is awake anyway
            os.write(self.write_fd, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.read_fd, 4096):
                pass

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class Connection:
    """The console's MQTT connection: subscribes to every park's alarms, events and gateway
    status (QoS 1) and queues what arrives; publishes acknowledgements."""

    def __init__(self, opts: WatchOptions, wake: WakePipe) -> None:
        self.opts = opts
        self.wake = wake
        self.inbox: queue.SimpleQueue[tuple[str, bytes, bool]] = queue.SimpleQueue()
        self.topics = [f"{opts.prefix}/+/alarms/+", f"{opts.prefix}/+/events",
                       f"{opts.prefix}/+/gateway"]
        self.ever_connected = False
        host = re.sub(r"[^A-Za-z0-9_.\-]", "", socket.gethostname())[:20] or "host"
        # a fresh id each run: two consoles never kick each other off the broker
        client_id = f"parkwatch-watch-{host}-{os.getpid()}-{secrets.token_hex(3)}"
        self.link = MqttLink("command-center", opts.broker, client_id, clean_session=True,
                             on_connected=self._subscribe)
        self.link.client.on_message = self._on_message
        self.link.client.on_subscribe = self._on_subscribe
        self.link.state_listeners.append(lambda _up: wake.poke())

    @property
    def where(self) -> str:
        return f"{self.opts.broker.host}:{self.opts.broker.port}"

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def _subscribe(self, link: MqttLink) -> None:
        self.ever_connected = True
        link.client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, *_args: Any) -> None:
        # in the inbox, so that it comes before the retained messages that follow the SUBACK
        self.inbox.put((SUBSCRIBED, b"", False))
        self.wake.poke()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # a received payload is bytes already (bytes() returns it as is); the stub's
        # bytearray is for outgoing messages
        self.inbox.put((msg.topic, bytes(msg.payload), bool(msg.retain)))
        self.wake.poke()

    def state(self) -> tuple[bool, str]:
        """(connected, words for the footer)."""
        if self.link.connected.is_set():
            return True, "connected"
        return False, "disconnected, retrying" if self.ever_connected else "connecting…"

    def publish_ack(self, park: str, alarm_id: str, by: str, note: str | None) -> str | None:
        """Send one acknowledgement (QoS 1); None when handed to the broker connection, else
        why not.  An ack is not queued while disconnected: it might be applied much later."""
        if not self.link.connected.is_set():
            return f"not connected to the broker {self.where}"
        key = self.opts.sign_key
        command = (sign(key, "ack", park, alarm_id, by, note) if key is not None
                   else {"alarm_id": alarm_id, "by": by, "note": note})
        payload = json.dumps(command, ensure_ascii=False).encode("utf-8")
        info = self.link.publish(f"{self.opts.prefix}/{park}/commands/ack", payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return mqtt.error_string(info.rc)
        return None


class LastWarning(logging.Handler):
    """Keeps the latest warning of parkwatch's loggers for the footer: while the board is on
    screen nothing may write to the terminal behind rich's back."""

    def __init__(self, wake: WakePipe) -> None:
        super().__init__(logging.WARNING)
        self.wake = wake
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.text = record.getMessage()
            self.wake.poke()


@contextlib.contextmanager
def _quiet_logging(handler: logging.Handler) -> Iterator[None]:
    """parkwatch's log records go to `handler` only (not to stderr) while the board is up."""
    log = logging.getLogger("parkwatch")
    propagate, level = log.propagate, log.level
    log.addHandler(handler)
    log.propagate = False
    if level == logging.NOTSET or level > logging.WARNING:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
        log.setLevel(level)


@contextlib.contextmanager
def _signals_exit(wake: WakePipe) -> Iterator[None]:
    """SIGTERM and SIGHUP end the console like `q` (the terminal is restored on the way out);
    SIGWINCH redraws at once.  Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, _f: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    saved = {signal.SIGTERM: signal.signal(signal.SIGTERM, leave),
             signal.SIGHUP: signal.signal(signal.SIGHUP, leave),
             signal.SIGWINCH: signal.signal(signal.SIGWINCH, lambda *_: wake.poke())}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


class WatchApp:
    """One console session: the board, its connection, and the operator's keys."""

    def __init__(self, opts: WatchOptions, console: Console | None = None,
                 stdin: IO[str] | None = None) -> None:
        self.opts = opts
        self.console = console or Console()
        self.board = Board(opts.prefix, stale_after_s=opts.stale_after_s)
        self.wake = WakePipe()
        self.keys = KeyReader(stdin if stdin is not None else sys.stdin)
        self.connection = Connection(opts, self.wake)
        self.warnings = LastWarning(self.wake)
        self.running = True
        self.resync_until: float | None = None

    def frame(self) -> Frame:
        connected, words = self.connection.state()
        return Frame(operator=self.opts.operator, broker=self.connection.where,
                     connected=connected, connection=words, keys=self.keys.interactive,
                     notice=self.warnings.text)

    def draw(self, now: float) -> Any:
        return render(self.board, now, self.frame(), self.console.size.height)

    def on_key(self, key: str, now: float) -> bool:
        """Act on one key; True when the board changed."""
        if key in QUIT:
            self.running = False
            return False
        if key in MOVES:
            return self.board.move(MOVES[key])
        if key in ("a", "A"):
            return self.acknowledge(now)
        return False

    def acknowledge(self, now: float) -> bool:
        if self.opts.operator is None:
            self.board.last_ack = AckResult(False, "read-only: start parkwatch watch with "
                                            "--operator NAME to acknowledge")
            return True
        alarm = self.board.begin_ack(self.opts.operator, now)
        if alarm is not None:
            why = self.connection.publish_ack(alarm.park, alarm.alarm_id, self.opts.operator,
                                              self.opts.note)
            if why is not None:
                self.board.ack_failed(alarm.key, why)
        return True

    def step(self, now: float) -> bool:
        """Take the queued messages and expire unanswered acks; True when the board changed."""
        changed = False
        while True:
            try:
                topic, payload, retained = self.connection.inbox.get_nowait()
            except queue.Empty:
                break
            if topic == SUBSCRIBED:
                self.board.begin_resync()
                self.resync_until = now + RESYNC_S
            else:
                changed |= self.board.feed(topic, payload, retained, now)
        if self.resync_until is not None and now >= self.resync_until:
            self.resync_until = None
            changed |= self.board.end_resync()
        changed |= self.board.tick(now)
        if self.board.take_new_fires():
            self.console.bell()
        return changed

    def run(self) -> int:
        """Until `q` (or Ctrl-C, SIGTERM, SIGHUP); the terminal is restored in every case."""
        try:
            self.connection.start()
            with (_quiet_logging(self.warnings), _signals_exit(self.wake), self.keys,
                  Live(self.draw(time.time()), console=self.console, screen=True,
                       auto_refresh=False, redirect_stdout=False,
                       redirect_stderr=False) as live):
                drawn_at, last_frame = 0.0, None
                while self.running:
                    keys = self.keys.wait(REDRAW_EVERY_S, self.wake.read_fd)
                    self.wake.drain()
                    now = time.time()
                    changed = False
                    for key in keys:
                        changed |= self.on_key(key, now)
                    changed |= self.step(now)
                    frame = self.frame()
                    if changed or frame != last_frame or now - drawn_at >= REDRAW_EVERY_S:
                        live.update(self.draw(now), refresh=True)
                        drawn_at, last_frame = now, frame
        finally:
            self.connection.stop()
            self.wake.close()
        return 0


def run_watch(opts: WatchOptions) -> int:
    """`parkwatch watch` with its settings: the exit code (1 when there is no terminal)."""
    # the real thing, not rich's is_terminal (which FORCE_COLOR or TTY_COMPATIBLE can force)
    isatty = getattr(sys.stdout, "isatty", None)
    if isatty is None or not isatty():
        print("parkwatch watch: the board needs a terminal (standard output is not one); for a "
              "listing use parkwatch alarms", file=sys.stderr)
        return 1
    try:
        app = WatchApp(opts)
    except (ssl.SSLError, OSError, ValueError) as exc:  # e.g. a CA file that is not PEM
        print(f"parkwatch watch: cannot use the broker's TLS settings or credentials: {exc}",
              file=sys.stderr)
        return 2
    return app.run()
