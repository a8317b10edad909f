"""paho's MQTT client, reading its socket in large chunks.

paho reads a packet with two or three ``recv()`` calls (the command byte, each byte of the
remaining length, then the rest), and its network loop goes back to ``select()`` after every
packet.  A flood of small sensor messages costs several system calls each, and that, not the
broker, limited how fast a paho subscriber drains.  ``benchmarks/mqttload.py``'s bare
subscriber on the 2-core bench machine drains 81,100 messages/s stock and 128,300/s with
``--buffered`` (this client).

:class:`BufferedClient` serves paho's small reads from one large ``recv()`` and lets a read event
handle every packet already buffered, since ``select()`` cannot see bytes that are no longer
in the socket.  Everything else is paho's own, so MQTT behaviour, TLS and reconnects are
unchanged.  The buffer belongs to one connection and is dropped with its socket.

Without topic-specific callbacks (``message_callback_add``; a sensor driver has none), a
message goes straight to ``on_message``: paho matched every message's topic against its empty
filter tree first, about 8 % of a driver thread's time under a flood.

A client given :attr:`BufferedClient.on_publish_batch` (a sensor driver) gets the QoS 0 and 1
PUBLISH packets that are already whole in the buffer as one list, parsed in a single loop
(MQTT 3.1.1 only), instead of paho building an ``MQTTMessage`` per packet through half a dozen
calls.  Any other packet, a partial one, QoS 2, or anything malformed stops the loop there and
is left to paho, which handles it as it always does.

A client that publishes QoS 1 (the uplink) has its PUBACKs confirmed the same way: with MQTT
3.1.1 or 3.1, every whole PUBACK already in the buffer is handled in one loop that does for each
what paho's ``_handle_pubackcomp`` and ``_do_on_publish`` do (the same locks, ``on_publish``
called with the same arguments, the message marked published and dropped, a queued message
sent into the freed in-flight slot by paho's ``_update_inflight``), without paho's three reads
per packet and its decoding: paho builds a ``ReasonCode`` and a ``Properties`` for every
PUBACK although an MQTT 3.1.1 PUBACK carries neither, and under an alarm storm that was most of
the uplink's network thread.  A PUBREC or PUBCOMP, MQTT 5, a partial or malformed packet, or a
mid the client does not know stops the loop there and is left to paho.  paho's ``loop_read``
reads on while messages are in flight, so ``_packet_read`` fills the buffer itself and hands a
PUBACK at its start back to :meth:`BufferedClient.loop_read`: the first PUBACK of a read is
taken too, and every one counts towards ``BURST``.  What a caller could tell apart: a VERSION2
``on_publish`` gets a success ``ReasonCode`` and an empty ``Properties`` of its own, but copied
from a template (:func:`_fresh`), not built; a subclass overriding ``_handle_pubackcomp`` or
``_packet_read`` does not see these PUBACKs; the time of the last bytes received is noted once
per loop, not per packet.

It also lets a publishing thread write its packets itself (:meth:`BufferedClient.write_now`)
and wait until they have left for the socket (:meth:`BufferedClient.wait_written`).  paho's
network thread writes what another thread publishes: it is woken through a socket pair, and it
needs the GIL to write; a publisher that goes on computing keeps the alarm in the queue for up
to a GIL switch interval at a time, and even an idle gateway paid a thread's wake-up for every
alarm.  On a plain TCP connection the publisher writes the queue itself, under the same lock
as the network thread's writes; paho's reconnect and disconnect take that lock too, so no
packet is written to a socket that is being replaced, or after the DISCONNECT.  A TLS
connection is only ever written by the network thread (one TLS connection must not be used
by two threads at once): there the publisher waits, GIL released, for it to write.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

#: (topic, payload, message id, QoS) of one PUBLISH packet
Publish = tuple[str, bytes, int, int]

#: bytes asked of the socket at a time (a TLS socket returns at most one record, 16 KiB)
CHUNK = 256 * 1024
#: buffered packets handled between two chances to write (QoS acks) and keep the link alive
BURST = 1000
#: how long a disconnect waits for the writer's lock (held through a reconnect's connect())
DISCONNECT_WAIT_S = 1.0

_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
#: what paho's decode_puback gives an MQTT 3.1.1 PUBACK (copied, never handed out: see _fresh)
_PUBACK_REASON = ReasonCode(PacketTypes.PUBACK)
#: an MQTT 3.1.1 PUBACK's fixed header (type 4, remaining length 2), before the message id
_PUBACK_HEAD = bytes((PacketTypes.PUBACK << 4, 2))
# paho's Properties has no annotations
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


def _fresh(template: Any) -> Any:
    """A new object equal to `template`, as its ``__init__`` left it, with its own top-level
    dicts and lists (a callback may change what it is given); the lists inside those (the
    packet types of each ``Properties.properties`` entry) are shared with the template."""
    obj = object.__new__(type(template))
    obj.__dict__.update({k: v.copy() if type(v) in (dict, list) else v
                         for k, v in template.__dict__.items()})
    return obj


def _remaining_length(buf: bytes, pos: int) -> tuple[int, int]:
    """An MQTT remaining length (7 bits a byte, at most 4 bytes) at `pos`: (length, where the
    packet's variable header starts), or (0, -1) if the buffer ends first or it is too long."""
    length = 0
    for k in range(4):
        if pos + k >= len(buf):
            return 0, -1
        byte = buf[pos + k]
        length |= (byte & 0x7F) << (7 * k)
        if not byte & 0x80:
            return length, pos + k + 1
    return 0, -1


class BufferedClient(mqtt.Client):
    _rbuf: bytes = b""
    _rpos: int = 0
    #: called on the network thread with the whole PUBLISH packets parsed from the buffer at
    #: once; the first packet of each read, and every packet the fast loop does not take,
    #: still goes to ``on_message``.  QoS 1 packets come here only with manual acks.
    on_publish_batch: Callable[[list[Publish]], None] | None = None
    #: PUBACKs confirmed by the fast loop, not by paho (tests and benchmarks read it)
    fast_pubacks: int = 0
    #: the next packet is paho's: the fast loops declined it (see _packet_read)
    _to_paho: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written = threading.Event()  # set whenever the network thread empties the queue
        #: held while packets are written, and while paho replaces or closes the socket
        self._write_lock = threading.RLock()
        #: the network thread is writing: paho pops a packet before its send() (GIL released)
        #: and puts back what did not fit, so an empty queue alone does not mean written
        self._writing = False
        self._filtered = False  # message_callback_add was called: paho's own dispatch

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        if self._filtered:
            super()._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:  # as paho: logged, and raised unless suppressed
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages received with manual acks, in this order, as one write
        of their PUBACKs (paho's ``ack`` queues a packet and wakes the network thread for
        each); the socket is written from this thread when it can (:meth:`write_now`)."""
        if not mids or not self._manual_ack:
            return
        self._packet_queue(PacketTypes.PUBACK << 4,
                           b"".join(_PUBACK_HEAD + m.to_bytes(2, "big") for m in mids), 0, 0)
        self.write_now()

    def wait_written(self, timeout: float) -> bool:
        """Write what is queued (:meth:`write_now`), or wait until every packet queued so far
        is handed to the socket, at most `timeout` seconds; False when some is still queued
        (not connected, the socket is full)."""
        self.write_now()
        deadline = time.monotonic() + timeout
        while self._out_packet or self._writing:
            self._written.clear()
            if not (self._out_packet or self._writing):  # written between check and clear
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self._written.wait(left):
                return False
        return True

    def write_now(self) -> None:
        """Write what is queued on this thread, now, if the connection is a plain TCP one, is
        up, and the network thread is not writing (it then writes these packets too); what
        the socket does not take now, and any error, is left to the network thread."""
        if not self._write_lock.acquire(blocking=False):
            return
        try:
            sock = self._sock
            if self.is_connected() and sock is not None and \
                    not isinstance(sock, ssl.SSLSocket) and self._out_packet:
                self._packet_write()
        finally:
            self._write_lock.release()

    def _packet_write(self) -> MQTTErrorCode:
        with self._write_lock:
            self._writing = True
            try:
                return super()._packet_write()
            finally:
                self._writing = False
                if not self._out_packet:
                    self._written.set()

    def reconnect(self) -> MQTTErrorCode:
        with self._write_lock:  # a publisher never writes to the socket being replaced
            return super().reconnect()

    def disconnect(self, *args: Any, **kwargs: Any) -> MQTTErrorCode:
        # no publisher writing when the DISCONNECT is queued (it must not handle it); a
        # reconnect holding the lock in a slow connect() keeps publishers out anyway
        held = self._write_lock.acquire(timeout=DISCONNECT_WAIT_S)
        try:
            return super().disconnect(*args, **kwargs)
        finally:
            if held:
                self._write_lock.release()

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(CHUNK)  # BlockingIOError etc. are paho's to handle
            pos = 0
            if not buf:  # the peer closed the connection
                self._rbuf, self._rpos = b"", 0
                return buf
        end = pos + bufsize
        self._rbuf, self._rpos = buf, end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        handled = 0
        while rc == _SUCCESS and self._rpos < len(self._rbuf):
            taken = 0
            if self._in_packet["command"] == 0:
                if self.on_publish_batch is not None:
                    taken = self._publish_batch(BURST - handled % BURST)
                if not taken:
                    taken, rc = self._puback_batch(BURST - handled % BURST)
                    if rc != _SUCCESS:  # as paho's loop_read: an error is handled, AGAIN ends
                        return self._loop_rc_handle(rc) if rc > 0 else _SUCCESS
            if taken:
                handled += taken
            else:
                handled += 1
                self._to_paho = True
                rc = super().loop_read(max_packets)
            if handled % BURST == 0:  # a flood must not hold back acknowledgements and pings
                if self.want_write():
                    self.loop_write()
                self.loop_misc()
        return rc

    def _packet_read(self) -> MQTTErrorCode:
        """paho's, except that a PUBACK at the start of a packet is left in the buffer for
        loop_read's fast loop (MQTT_ERR_AGAIN ends paho's loop_read, which otherwise reads on
        while messages are in flight); the buffer is filled first if it is empty, as paho's
        read of the command byte would (with its errors and log lines)."""
        if self._to_paho or self._in_packet["command"] != 0 or \
                self._protocol not in (mqtt.MQTTv311, mqtt.MQTTv31):
            self._to_paho = False
            return super()._packet_read()
        if self._rpos >= len(self._rbuf):
            try:
                buf = super()._sock_recv(CHUNK)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except TimeoutError as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "timeout on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            except OSError as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not buf:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._rbuf, self._rpos = buf, 0
        if self._rbuf[self._rpos] == 0x40:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        return super()._packet_read()

    def _puback_batch(self, limit: int) -> tuple[int, MQTTErrorCode]:
        """Confirm up to `limit` whole MQTT 3.1.1 PUBACKs from the buffer, each as paho's
        ``_handle_pubackcomp`` would; (how many were taken, the error that stopped them)."""
        if self._protocol not in (mqtt.MQTTv311, mqtt.MQTTv31):
            return 0, _SUCCESS  # MQTT 5 carries reason codes and properties: paho's
        buf, pos = self._rbuf, self._rpos
        end_buf = len(buf)
        out_messages, out_mutex = self._out_messages, self._out_message_mutex
        taken, rc = 0, _SUCCESS
        while taken < limit and pos + 4 <= end_buf and buf[pos] == 0x40 and buf[pos + 1] == 2:
            mid = (buf[pos + 2] << 8) | buf[pos + 3]
            if mid not in out_messages:
                break  # paho logs and ignores it
            pos += 4
            taken += 1
            self._rpos = pos  # read, as paho has read a packet before handling it
            if self._on_log is not None or self._logger is not None:
                self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", mid)
            with out_mutex:
                if mid in out_messages:
                    rc = self._confirm(mid)
            if rc != _SUCCESS or self._rbuf is not buf:  # an error; a callback closed the socket
                break
        if taken:
            self.fast_pubacks += taken
            now = mqtt.time_func()
            with self._msgtime_mutex:
                self._last_bytes_received = now
        return taken, rc

    def _confirm(self, mid: int) -> MQTTErrorCode:
        """paho's ``_do_on_publish`` for an MQTT 3.1.1 PUBACK, under ``_out_message_mutex``."""
        with self._callback_mutex:
            on_publish: Any = self._on_publish  # VERSION1's or VERSION2's signature
        if on_publish:
            with self._in_callback_mutex:
                try:
                    if self._callback_api_version == CallbackAPIVersion.VERSION1:
                        on_publish(self, self._userdata, mid)
                    elif self._callback_api_version == CallbackAPIVersion.VERSION2:
                        on_publish(self, self._userdata, mid,
                                   _fresh(_PUBACK_REASON), _fresh(_PUBACK_PROPERTIES))
                    else:
                        raise RuntimeError("Unsupported callback API version")
                except Exception as err:  # as paho: logged, and raised unless suppressed
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publish: %s", err)
                    if not self.suppress_exceptions:
                        raise
        msg = self._out_messages.pop(mid)
        msg.info._set_as_published()
        if msg.qos > 0:
            self._inflight_messages -= 1
            if self._max_inflight_messages > 0:
                return self._update_inflight()
        return _SUCCESS

    def _publish_batch(self, limit: int) -> int:
        """Parse up to `limit` whole QoS 0/1 PUBLISH packets from the buffer and hand them to
        :attr:`on_publish_batch`; how many were taken (0: the next packet is paho's)."""
        if self._protocol not in (mqtt.MQTTv311, mqtt.MQTTv31):
            return 0  # MQTT 5 carries properties: paho's to decode
        buf, pos = self._rbuf, self._rpos
        end_buf = len(buf)
        max_qos = 1 if self._manual_ack else 0  # an automatic puback is paho's to send
        out: list[Publish] = []
        append = out.append
        while pos < end_buf and len(out) < limit:
            command = buf[pos]
            qos = (command & 0x06) >> 1
            if command & 0xF0 != 0x30 or qos > max_qos or pos + 2 > end_buf:
                break
            length, start = buf[pos + 1], pos + 2  # the remaining length, 1 to 4 bytes
            if length & 0x80:
                length, start = _remaining_length(buf, pos + 1)
                if start < 0:
                    break  # cut short, or more than 4 bytes: paho's to read or refuse
            stop = start + length
            if stop > end_buf or length < 2:
                break
            topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
            body = topic_end + 2 if qos else topic_end
            if topic_end == start + 2 or body > stop:
                break  # an empty topic, or lengths that do not add up: paho refuses it
            mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
            append((buf[start + 2:topic_end].decode("utf-8", "replace"), buf[body:stop],
                    mid, qos))
            pos = stop
        if not out:
            return 0
        self._rpos = pos
        now = mqtt.time_func()
        with self._msgtime_mutex:
            self._last_bytes_received = now
        callback = self.on_publish_batch
        if callback is not None:
            with self._in_callback_mutex:
                try:
                    callback(out)
                except Exception as err:  # as paho's on_message
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publish_batch: "
                                   "%s", err)
                    if not self.suppress_exceptions:
                        raise
        return len(out)

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # never parse one connection's bytes on the next
        self._to_paho = False
        super()._sock_close()
