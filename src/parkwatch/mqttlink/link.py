"""One MQTT connection with the habits every parkwatch socket needs.

paho's client reading its socket in large chunks (:mod:`parkwatch.mqttlink.buffered`), TCP_NODELAY
on the socket (paho leaves Nagle on, which cost up to ~40 ms on small bursts),
TLS and credentials from the broker config, automatic reconnect with exponential backoff, no
client-side cap on queued QoS 1 messages, and the connection's loss and recovery each logged
once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from parkwatch.config.brokers import BrokerConfig
from parkwatch.mqttlink.buffered import BufferedClient
from parkwatch.mqttlink.manypublish import Message, publish_many

log = logging.getLogger("parkwatch.mqtt")  # the name log lines have always carried


def set_nodelay(sock: Any) -> None:
    # not every socket is TCP (unix socket, websocket wrapper): then there is nothing to set
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttLink:
    """A paho client kept connected in its own network thread."""

    def __init__(
        self,
        name: str,
        broker: BrokerConfig,
        client_id: str,
        *,
        clean_session: bool = False,
        will: tuple[str, bytes] | None = None,
        on_connected: Callable[[MqttLink], None] | None = None,
    ) -> None:
        self.name = name
        self.broker = broker
        self.on_connected = on_connected
        #: called with True/False on every connect and loss (e.g. to refresh a status)
        self.state_listeners: list[Callable[[bool], None]] = []
        self.connected = threading.Event()
        self._ever_connected = False
        self._lost_at: float | None = None
        self._stopping = False
        c = BufferedClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                           clean_session=clean_session, protocol=mqtt.MQTTv311)
        c.max_queued_messages_set(0)  # unlimited: an alarm is never dropped client-side
        # no client-side window: the couriers keep their own (a window here made paho scan
        # every message in flight for each PUBACK, and queued an express fire raise behind it)
        c.max_inflight_messages_set(0)
        # paho doubles the wait from min to max; it takes fractions of a second although its
        # signature says int (the waits are compared with time.monotonic())
        c.reconnect_delay_set(min_delay=broker.reconnect_min_s,  # type: ignore[arg-type]
                              max_delay=broker.reconnect_max_s)  # type: ignore[arg-type]
        c.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        if broker.username:
            c.username_pw_set(broker.username, broker.password())
        if broker.tls is not None:
            t = broker.tls
            c.tls_set(ca_certs=str(t.ca_file),
                      certfile=str(t.cert_file) if t.cert_file else None,
                      keyfile=str(t.key_file) if t.key_file else None,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            c.tls_insecure_set(not t.verify_hostname)
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        self.client = c

    @property
    def where(self) -> str:
        return f"{self.name} broker {self.broker.host}:{self.broker.port}"

    def start(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self.client.loop_start()

    @property
    def alive(self) -> bool:
        """The network thread runs (paho keeps it as `_thread`; it has no public handle)."""
        thread = getattr(self.client, "_thread", None)
        return thread is not None and thread.is_alive()

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_many(self, messages: Sequence[Message]) -> list[mqtt.MQTTMessageInfo]:
        """QoS 1 messages (topic, payload, retain), in order, handed to the network thread
        together (:mod:`parkwatch.mqttlink.manypublish`)."""
        return publish_many(self.client, messages)

    def write_now(self) -> None:
        """Write what was published to the broker's socket from this thread, if it can
        (:meth:`parkwatch.mqttlink.buffered.BufferedClient.write_now`)."""
        self.client.write_now()

    def wait_written(self, timeout: float) -> bool:
        """Wait (GIL released) until what was published is written to the broker's socket."""
        return self.client.wait_written(timeout)

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if reason.is_failure:
            self._note_failure(f"refused: {reason}")
            return
        if not self._ever_connected:
            log.info("connected to %s", self.where)
        elif self._lost_at is not None:
            log.warning("reconnected to %s after %.1f s", self.where,
                        time.monotonic() - self._lost_at)
        self._ever_connected = True
        self._lost_at = None
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected(self)
        for listener in self.state_listeners:
            listener(True)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any,
                       _props: Any) -> None:
        self.connected.clear()
        if self._stopping:
            return
        self._note_failure(f"connection lost ({reason})")
        for listener in self.state_listeners:
            listener(False)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        # paho calls this inside its `except OSError`: the error (refused, a TLS certificate
        # that does not verify, ...) is the exception being handled
        exc = sys.exc_info()[1]
        self._note_failure(f"cannot connect: {exc}" if exc is not None else "cannot connect")

    def _note_failure(self, why: str) -> None:
        if self._lost_at is None:  # once per outage, not per retry
            self._lost_at = time.monotonic()
            log.warning("%s: %s; retrying with backoff up to %.0f s", self.where, why,
                        self.broker.reconnect_max_s)
