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

It also tells a publishing thread when its packets have left for the socket
(:meth:`BufferedClient.wait_written`).  paho's network thread writes what another thread
publishes, and it needs the GIL to do so; a publisher that goes on computing keeps the alarm
in the queue for up to a GIL switch interval at a time.  Waiting (GIL released) until the
queue is written lets the network thread write at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

#: (topic, payload, message id, QoS) of one PUBLISH packet
Publish = tuple[str, bytes, int, int]

#: bytes asked of the socket at a time (a TLS socket returns at most one record, 16 KiB)
CHUNK = 256 * 1024
#: buffered packets handled between two chances to write (QoS acks) and keep the link alive
BURST = 1000


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written = threading.Event()  # set whenever the network thread empties the queue
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

    def wait_written(self, timeout: float) -> bool:
        """Wait until every packet queued so far is handed to the socket, at most `timeout`
        seconds; False when some is still queued (not connected, the socket is full)."""
        deadline = time.monotonic() + timeout
        while self._out_packet or self._writing:
            self._written.clear()
            if not (self._out_packet or self._writing):  # written between check and clear
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self._written.wait(left):
                return False
        return True

    def _packet_write(self) -> MQTTErrorCode:
        self._writing = True
        try:
            return super()._packet_write()
        finally:
            self._writing = False
            if not self._out_packet:
                self._written.set()

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
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf):
            taken = 0
            if self.on_publish_batch is not None and self._in_packet["command"] == 0:
                taken = self._publish_batch(BURST - handled % BURST)
            if taken:
                handled += taken
            else:
                handled += 1
                rc = super().loop_read(max_packets)
            if handled % BURST == 0:  # a flood must not hold back acknowledgements and pings
                if self.want_write():
                    self.loop_write()
                self.loop_misc()
        return rc

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
        super()._sock_close()
