"""Dead TCP links noticed in seconds, not in the kernel's quarter of an hour: a 4G link or a
NAT that drops its state without a reset leaves a connection that takes writes and never
answers.  Shared by the drivers' TCP streams and the GB/T 26875 uplink."""

from __future__ import annotations

import contextlib
import socket

#: a connection whose data stays unacknowledged this long is given up at the least (a 4G link
#: or a DTU gone without a reset would otherwise leave it half open, every request timing out,
#: for the kernel's retransmission limit of about 15 minutes)
DEAD_AFTER_S = 20.0


def detect_dead_links(sock: socket.socket, dead_after_s: float) -> None:
    """Close the connection (the next read or write raises) when its peer stops acknowledging
    for `dead_after_s`: TCP_USER_TIMEOUT (Linux, RFC 5482) while data is on the way, and
    keepalive probes while it is idle (after 10 s, every 5 s, 3 unanswered)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_USER_TIMEOUT", int(dead_after_s * 1000)), ("TCP_KEEPIDLE", 10),
                        ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has each; elsewhere the kernel's defaults stay
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
