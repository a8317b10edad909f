"""A local stand-in for DingTalk's custom robot endpoint, for tests: it checks what the vendor
documents and answers as the vendor does (open.dingtalk.com, "自定义机器人安全设置" and
"自定义机器人发送群消息"):

* 加签: ``timestamp`` (ms) within an hour of now, ``sign`` = URL-encoded base64 of
  HMAC-SHA256 keyed with the secret over ``"{timestamp}\\n{secret}"``; otherwise errcode
  310000;
* the body: ``msgtype`` "text" with a non-empty ``text.content``, ``at.atMobiles`` a list of
  strings; otherwise errcode 300001 (our stand-in's code for a malformed body);
* at most 20 messages a minute per robot; otherwise errcode 130101;
* HTTP 200 with ``{"errcode": ..., "errmsg": ...}`` either way.

Only the standard library; one background thread on a free loopback port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PER_MINUTE = 20


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class DingTalkRobot:
    def __init__(self, secret: str, token: str = "test-access-token") -> None:
        self.secret = secret
        self.token = token
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self._sent: deque[float] = deque()
        self._lock = threading.Condition()
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, msg = robot._check(self.path, data)
                out = json.dumps({"errcode": code, "errmsg": msg}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/robot/send?access_token=" \
               f"{self.token}"

    def _check(self, path: str, data: bytes) -> tuple[int, str]:
        query = parse_qs(urlsplit(path).query)
        ts, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        with self._lock:
            if query.get("access_token", [""])[0] != self.token:
                return self._refuse(300005, "token is not exist")
            if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3_600_000:
                return self._refuse(310000, "invalid timestamp")
            # parse_qs has already undone the URL encoding the sender applied
            if not hmac.compare_digest(sign, expected_sign(self.secret, ts)):
                return self._refuse(310000, "sign not match")
            try:
                msg = json.loads(data)
                content = msg["text"]["content"]
                mobiles = msg.get("at", {}).get("atMobiles", [])
                assert msg["msgtype"] == "text" and isinstance(content, str) and content
                assert isinstance(mobiles, list) and all(isinstance(m, str) for m in mobiles)
            except (ValueError, KeyError, TypeError, AssertionError):
                return self._refuse(300001, "param error")
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= 60:
                self._sent.popleft()
            if len(self._sent) >= PER_MINUTE:
                return self._refuse(130101, "send too fast")
            self._sent.append(now)
            self.accepted.append(msg)
            self._lock.notify_all()
            return 0, "ok"

    def _refuse(self, code: int, msg: str) -> tuple[int, str]:
        self.refused.append((code, msg))
        self._lock.notify_all()
        return code, msg

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._lock:
            if not self._lock.wait_for(lambda: pred(self.accepted), timeout):
                raise AssertionError(f"timed out; accepted {self.accepted}, refused "
                                     f"{self.refused}")
            return list(self.accepted)

    def __enter__(self) -> DingTalkRobot:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
