"""Local stand-ins for the chat robots' endpoints, for tests: each checks what its vendor
documents and answers as the vendor does (HTTP 200 with the vendor's JSON either way).

* DingTalk (钉钉) custom robot (open.dingtalk.com, "自定义机器人安全设置",
  "自定义机器人发送群消息"):
  加签 ``timestamp`` (ms) within an hour and ``sign`` = URL-encoded base64 of HMAC-SHA256
  keyed with the secret over ``"{timestamp}\\n{secret}"`` (else errcode 310000); ``msgtype``
  "text" with ``text.content`` and ``at.atMobiles``; 20 a minute (else 130101).
* WeCom (企业微信) group robot (developer.work.weixin.qq.com/document/path/91770): the ``key``
  in the URL (else errcode 93000); ``msgtype`` "text", ``text.content`` at most 2,048 bytes
  of UTF-8 (else 40058), ``text.mentioned_mobile_list``; 20 a minute (else 45009).
* Feishu (飞书) custom bot (open.feishu.cn, "自定义机器人使用指南"): ``timestamp`` (s) within
  an hour and ``sign`` = base64 of HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"`` over
  nothing (else code 19021); ``msg_type`` "text" with ``content.text``; a body of at most
  20 KB (else 9499); 100 a minute.

* Alibaba Cloud SMS (Dysmsapi SendSms, "RPC 风格签名机制"): a GET whose ``Signature`` is
  base64 of HMAC-SHA1 keyed with ``secret + "&"`` over ``GET&%2F&`` + the percent-encoded
  sorted query (else HTTP 400 ``SignatureDoesNotMatch``), a ``Timestamp`` within 15 minutes, a
  ``SignatureNonce`` never used before (else ``SignatureNonceUsed``), the known AccessKey id,
  signature name and template, and ``TemplateParam`` JSON.
* A generic SMS gateway (:class:`SmsGateway`), in the two shapes the smaller Chinese gateways
  take: md5(account + password + timestamp) in a JSON body, or an HMAC-SHA256 in a header.

Only the standard library; one background thread on a free loopback port each.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit


def dingtalk_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def feishu_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class Robot:
    """What every stand-in shares: the server, what it accepted and refused, the rate."""

    PER_MINUTE = 20
    CODE = "errcode"

    def __init__(self, secret: str, token: str = "test-access-token",
                 per_window: int | None = None, window_s: float = 60.0) -> None:
        self.secret = secret
        self.token = token
        #: the rate it takes: `per_window` messages in any `window_s` (a test may scale the
        #: vendor's minute down to run fast)
        self.per_window = self.PER_MINUTE if per_window is None else per_window
        self.window_s = window_s
        #: seconds each answer takes (a slow vendor)
        self.delay_s = 0.0
        #: when each message that passed the checks arrived (monotonic), refused for rate or not
        self.times: list[float] = []
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self._sent: deque[float] = deque()
        self._lock = threading.Condition()
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_GET(self) -> None:
                with robot._lock:
                    status, answer = robot._get(self.path)
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if robot.delay_s:
                    time.sleep(robot.delay_s)
                with robot._lock:
                    code, msg = robot._check(self.path, data)
                out = json.dumps({robot.CODE: code, "msg" if robot.CODE == "code"
                                  else "errmsg": msg}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _check(self, path: str, data: bytes) -> tuple[int, str]:
        raise NotImplementedError

    def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        return 405, {}

    def _rate(self, code: int) -> tuple[int, str] | None:
        """The vendor's refusal when this message would exceed its rate, else None (counted)."""
        now = time.monotonic()
        self.times.append(now)
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()
        if len(self._sent) >= self.per_window:
            return self._refuse(code, "send too fast")
        self._sent.append(now)
        return None

    def most_in_window(self, window_s: float | None = None) -> int:
        """The most messages that arrived within any sliding window of `window_s` (the
        robot's own by default)."""
        span = self.window_s if window_s is None else window_s
        with self._lock:
            times = sorted(self.times)
        most, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= span:
                first += 1
            most = max(most, last - first + 1)
        return most

    def per_window_counts(self) -> list[int]:
        """Messages per window of `window_s` from the first one (a minute's count, scaled)."""
        with self._lock:
            times = sorted(self.times)
        counts: list[int] = []
        for t in times:
            slot = int((t - times[0]) // self.window_s)
            counts += [0] * (slot + 1 - len(counts))
            counts[slot] += 1
        return counts

    def _accept(self, msg: dict[str, Any]) -> tuple[int, str]:
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


class DingTalkRobot(Robot):
    @property
    def url(self) -> str:
        return f"{self.base}/robot/send?access_token={self.token}"

    def _check(self, path: str, data: bytes) -> tuple[int, str]:
        query = parse_qs(urlsplit(path).query)
        ts, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        if query.get("access_token", [""])[0] != self.token:
            return self._refuse(300005, "token is not exist")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3_600_000:
            return self._refuse(310000, "invalid timestamp")
        # parse_qs has already undone the URL encoding the sender applied
        if not hmac.compare_digest(sign, dingtalk_sign(self.secret, ts)):
            return self._refuse(310000, "sign not match")
        try:
            msg = json.loads(data)
            content = msg["text"]["content"]
            mobiles = msg.get("at", {}).get("atMobiles", [])
            assert msg["msgtype"] == "text" and isinstance(content, str) and content
            assert isinstance(mobiles, list) and all(isinstance(m, str) for m in mobiles)
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._refuse(300001, "param error")
        return self._rate(130101) or self._accept(msg)


class WeComRobot(Robot):
    @property
    def url(self) -> str:
        return f"{self.base}/cgi-bin/webhook/send?key={self.token}"

    def _check(self, path: str, data: bytes) -> tuple[int, str]:
        if parse_qs(urlsplit(path).query).get("key", [""])[0] != self.token:
            return self._refuse(93000, "invalid webhook url")
        try:
            msg = json.loads(data)
            content = msg["text"]["content"]
            mobiles = msg["text"].get("mentioned_mobile_list", [])
            assert msg["msgtype"] == "text" and isinstance(content, str) and content
            assert isinstance(mobiles, list) and all(isinstance(m, str) for m in mobiles)
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._refuse(40008, "invalid message type")
        if len(content.encode("utf-8")) > 2048:
            return self._refuse(40058, "content exceed max length 2048")
        return self._rate(45009) or self._accept(msg)


class FeishuBot(Robot):
    PER_MINUTE = 100
    CODE = "code"

    @property
    def url(self) -> str:
        return f"{self.base}/open-apis/bot/v2/hook/{self.token}"

    def _check(self, path: str, data: bytes) -> tuple[int, str]:
        if urlsplit(path).path != f"/open-apis/bot/v2/hook/{self.token}":
            return self._refuse(19001, "param invalid: incoming webhook access token invalid")
        if len(data) > 20 * 1024:
            return self._refuse(9499, "request body too large")
        try:
            msg = json.loads(data)
            ts, sign = str(msg["timestamp"]), str(msg["sign"])
            assert msg["msg_type"] == "text" and isinstance(msg["content"]["text"], str)
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._refuse(19021, "sign match fail or timestamp is not within one hour "
                                "from current time")
        if not ts.isdigit() or abs(time.time() - int(ts)) > 3600 \
                or not hmac.compare_digest(sign, feishu_sign(self.secret, ts)):
            return self._refuse(19021, "sign match fail or timestamp is not within one hour "
                                "from current time")
        return self._rate(11232) or self._accept(msg)


def aliyun_percent(text: str) -> str:
    return quote(text, safe="~")


class AliyunSms(Robot):
    """``secret`` is the AccessKey secret, ``token`` the AccessKey id.  The service's flow
    control per phone number (set in its console) is not modelled."""

    PER_MINUTE = 1000

    def __init__(self, secret: str, token: str = "LTAI-test-key-id", sign_name: str = "新桥园区",
                 template: str = "SMS_123456789") -> None:
        super().__init__(secret, token)
        self.sign_name = sign_name
        self.template = template
        self.nonces: set[str] = set()

    @property
    def url(self) -> str:
        return f"{self.base}/"

    def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query,
                                              keep_blank_values=True).items()}
        signature = query.pop("Signature", "")
        canonical = "&".join(f"{aliyun_percent(k)}={aliyun_percent(v)}"
                             for k, v in sorted(query.items()))
        to_sign = f"GET&%2F&{aliyun_percent(canonical)}"
        expected = base64.b64encode(hmac.new(f"{self.secret}&".encode(), to_sign.encode(),
                                             hashlib.sha1).digest()).decode()

        def refuse(status: int, code: str) -> tuple[int, dict[str, Any]]:
            self._refuse(status, code)
            return status, {"Code": code, "Message": code, "RequestId": "test"}

        if query.get("AccessKeyId") != self.token:
            return refuse(404, "InvalidAccessKeyId.NotFound")
        if not hmac.compare_digest(signature, expected):
            return refuse(400, "SignatureDoesNotMatch")
        try:
            when = calendar.timegm(time.strptime(query["Timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        except (KeyError, ValueError):
            return refuse(400, "InvalidTimeStamp.Format")
        if abs(time.time() - when) > 900:
            return refuse(400, "InvalidTimeStamp.Expired")
        if query.get("SignatureNonce", "") in self.nonces:
            return refuse(400, "SignatureNonceUsed")
        self.nonces.add(query.get("SignatureNonce", ""))
        fixed = {"Action": "SendSms", "Version": "2017-05-25", "SignatureMethod": "HMAC-SHA1",
                 "SignatureVersion": "1.0", "SignName": self.sign_name,
                 "TemplateCode": self.template}
        if any(query.get(k) != v for k, v in fixed.items()):
            return refuse(400, "isv.INVALID_PARAMETERS")
        try:
            params = json.loads(query["TemplateParam"])
            assert isinstance(params, dict) and query["PhoneNumbers"]
        except (KeyError, ValueError, AssertionError):
            return refuse(400, "isv.INVALID_JSON_PARAM")
        limited = self._rate(0)
        if limited is not None:
            return 200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "too fast"}
        self._accept({"phones": query["PhoneNumbers"].split(","), "params": params})
        return 200, {"Code": "OK", "Message": "OK", "BizId": "test", "RequestId": "test"}


class SmsGateway:
    """A generic SMS gateway (短信网关) as the many smaller Chinese services run one, in either of
    the two shapes parkwatch's ``http_sms`` target is tested with:

    * ``"md5"``: ``POST /sms/send`` with a JSON body ``{"account", "mobile", "content",
      "timestamp", "sign"}``, where ``timestamp`` is ``yyyyMMddHHmmss`` in China Standard Time
      (within 5 minutes) and ``sign`` is the lower-case hex md5 of account + password +
      timestamp; the answer is HTTP 200 with ``{"code": 0}``, or ``{"code": 1002}`` for a wrong
      sign, ``1003`` for a stale timestamp, ``1004`` for a content over 70 characters or not
      starting with the approved signature, ``1005`` for a number that is not a mobile;
    * ``"hmac"``: ``GET /v2/sms?mobile=…&content=…&ts=…&nonce=…`` with the headers ``X-App-Id``
      and ``X-Signature`` = base64 of HMAC-SHA256, keyed with the password, of
      ``"{ts}\\n{nonce}\\n{mobile}"``; a wrong signature or a used nonce is HTTP 401, success
      ``{"result": {"status": "OK"}}``;
    * ``"gbk"``: ``POST /sms/gbk`` with a form body in GBK (``userid``, ``mobile``, ``content``,
      ``timestamp`` as ``MMddHHmmss`` in China Standard Time, ``sign`` = the upper-case hex md5
      of the GBK bytes of userid + password + timestamp), as older gateways take it; the answer
      is ``{"ret": "0"}`` (a string), ``"-2"`` for a wrong sign.

    Every field is checked byte for byte as the gateway would; with ``fail_after`` set, the
    gateway takes that many more SMS and then refuses one with HTTP 503 (a brief outage)."""

    def __init__(self, password: str, shape: str = "md5", account: str = "parkwatch",
                 signature: str = "【新桥园区】") -> None:
        self.password, self.shape, self.account, self.signature = (password, shape, account,
                                                                   signature)
        self.accepted: list[dict[str, str]] = []
        self.refused: list[str] = []
        self.fail_after: int | None = None
        self.nonces: set[str] = set()
        self._lock = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                with gateway._lock:
                    self._answer(*gateway._hmac(self.path, dict(self.headers)))

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with gateway._lock:
                    check = gateway._gbk if gateway.shape == "gbk" else gateway._md5
                    self._answer(*check(self.path, self.headers.get("Content-Type"), data))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self.httpd.server_address[1]
        return f"http://127.0.0.1:{port}" + {"md5": "/sms/send", "hmac": "/v2/sms",
                                              "gbk": "/sms/gbk"}[self.shape]

    def _refuse(self, status: int, answer: dict[str, Any], why: str) -> tuple[int, dict[str, Any]]:
        self.refused.append(why)
        self._lock.notify_all()
        return status, answer

    def _take(self, mobile: str, content: str) -> str | None:
        """Why the SMS itself is refused, else None (taken)."""
        if not re.fullmatch(r"1[3-9]\d{9}", mobile):
            return "mobile"
        if len(content) > 70 or not content.startswith(self.signature):
            return "content"
        if self.fail_after == 0:
            self.fail_after = None
            return "outage"
        if self.fail_after is not None:
            self.fail_after -= 1
        self.accepted.append({"mobile": mobile, "content": content})
        self._lock.notify_all()
        return None

    def _md5(self, path: str, content_type: str | None,
             data: bytes) -> tuple[int, dict[str, Any]]:
        if self.shape != "md5" or path != "/sms/send":
            return self._refuse(404, {}, "path")
        if content_type != "application/json; charset=utf-8":
            return self._refuse(415, {}, "content type")
        try:
            msg = json.loads(data)
            assert set(msg) == {"account", "mobile", "content", "timestamp", "sign"}
            assert all(isinstance(v, str) for v in msg.values())
            when = calendar.timegm(time.strptime(msg["timestamp"], "%Y%m%d%H%M%S")) - 8 * 3600
        except (ValueError, AssertionError):
            return self._refuse(200, {"code": 1001, "msg": "参数错误"}, "body")
        expected = hashlib.md5((self.account + self.password + msg["timestamp"]).encode())
        if msg["account"] != self.account or not hmac.compare_digest(msg["sign"],
                                                                     expected.hexdigest()):
            return self._refuse(200, {"code": 1002, "msg": "签名错误"}, "sign")
        if abs(time.time() - when) > 300:
            return self._refuse(200, {"code": 1003, "msg": "时间戳过期"}, "timestamp")
        why = self._take(msg["mobile"], msg["content"])
        if why == "outage":
            return self._refuse(503, {}, why)
        if why is not None:
            return self._refuse(200, {"code": 1004 if why == "content" else 1005,
                                      "msg": why}, why)
        return 200, {"code": 0, "msg": "提交成功", "msgid": str(len(self.accepted))}

    def _gbk(self, path: str, content_type: str | None,
             data: bytes) -> tuple[int, dict[str, Any]]:
        if path != "/sms/gbk" or content_type != "application/x-www-form-urlencoded; charset=gbk":
            return self._refuse(404, {}, "path or content type")
        try:
            form = {k: v[0] for k, v in parse_qs(data.decode("ascii"), strict_parsing=True,
                                                 encoding="gbk", errors="strict").items()}
            assert set(form) == {"userid", "mobile", "content", "timestamp", "sign"}
            stamp = time.strptime(time.strftime("%Y", time.gmtime(time.time() + 8 * 3600))
                                  + form["timestamp"], "%Y%m%d%H%M%S")
        except (ValueError, AssertionError):
            return self._refuse(200, {"ret": "-1"}, "body")
        expected = hashlib.md5((self.account + self.password + form["timestamp"])
                               .encode("gbk")).hexdigest().upper()
        if form["userid"] != self.account or not hmac.compare_digest(form["sign"], expected):
            return self._refuse(200, {"ret": "-2"}, "sign")
        if abs(time.time() - (calendar.timegm(stamp) - 8 * 3600)) > 300:
            return self._refuse(200, {"ret": "-3"}, "timestamp")
        why = self._take(form["mobile"], form["content"])
        if why is not None:
            return self._refuse(200, {"ret": "-4"}, why)
        return 200, {"ret": "0"}

    def _hmac(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        url = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if self.shape != "hmac" or url.path != "/v2/sms":
            return self._refuse(404, {}, "path")
        if set(query) != {"mobile", "content", "ts", "nonce"}:
            return self._refuse(400, {"error": "bad query"}, "query")
        to_sign = f"{query['ts']}\n{query['nonce']}\n{query['mobile']}".encode()
        expected = base64.b64encode(hmac.new(self.password.encode(), to_sign,
                                             hashlib.sha256).digest()).decode()
        if headers.get("X-App-Id") != self.account or not hmac.compare_digest(
                headers.get("X-Signature", ""), expected):
            return self._refuse(401, {"error": "signature"}, "sign")
        if query["nonce"] in self.nonces or not query["ts"].isdigit() \
                or abs(time.time() - int(query["ts"])) > 300:
            return self._refuse(401, {"error": "replay"}, "replay")
        self.nonces.add(query["nonce"])
        why = self._take(query["mobile"], query["content"])
        if why is not None:
            return self._refuse(200, {"result": {"status": "REJECTED", "reason": why}}, why)
        return 200, {"result": {"status": "OK"}}

    def wait_for(self, pred: Callable[[list[dict[str, str]]], bool],
                 timeout: float = 10.0) -> list[dict[str, str]]:
        with self._lock:
            if not self._lock.wait_for(lambda: pred(self.accepted), timeout):
                raise AssertionError(f"timed out; accepted {self.accepted}, refused "
                                     f"{self.refused}")
            return list(self.accepted)

    def __enter__(self) -> SmsGateway:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
