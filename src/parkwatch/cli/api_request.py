"""One call to the running daemon's local API: the request, its JSON answer, and the operator's
words for a call that failed."""

from __future__ import annotations

import json
from http.client import HTTPException
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from parkwatch.cli.api_endpoint import Endpoint
from parkwatch.cli.exits import Failure

TIMEOUT_S = 10.0  # the daemon answers a command within 5 s or gives up


def request(ep: Endpoint, method: str, path: str, body: dict[str, Any] | None = None,
            auth: bool = True) -> tuple[int, Any]:
    """(status, JSON body) of one API call; raises Failure when there is no HTTP answer.
    ``auth=False`` sends no token (``/healthz`` needs none)."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    req = Request(ep.url + path, data=data, method=method, headers={
        "Accept": "application/json",
        **({"Authorization": f"Bearer {ep.token}"} if auth else {}),
        **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urlopen(req, timeout=TIMEOUT_S) as resp:
            status, raw = resp.status, resp.read()
    except HTTPError as exc:
        status, raw = exc.code, exc.read()
        exc.close()
    except URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused — is the daemon running?"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {TIMEOUT_S:.0f} s"
        else:
            why = getattr(reason, "strerror", None) or str(reason)
        raise Failure(f"cannot reach the parkwatch API at {ep.url}: {why}") from None
    except TimeoutError:
        raise Failure(f"the parkwatch API at {ep.url} did not answer within "
                      f"{TIMEOUT_S:.0f} s") from None
    except (HTTPException, OSError) as exc:
        raise Failure(f"cannot reach the parkwatch API at {ep.url}: {exc}") from None
    try:
        return status, json.loads(raw) if raw else {}
    except ValueError:
        text = raw[:200].decode("utf-8", "replace")
        raise Failure(f"the parkwatch API at {ep.url} answered {status} with something that "
                      f"is not JSON: {text!r} (is that port the parkwatch daemon?)") from None


def http_failure(ep: Endpoint, status: int, body: Any) -> Failure:
    """The plain message for a failed call that no command-specific rule explains."""
    error = body.get("error") if isinstance(body, dict) else None
    if status == 401:
        return Failure(f"refused: the daemon did not accept the API token from {ep.token_source}"
                       " (was the token changed after the daemon started? restart it, or check "
                       "--config / --state-dir)")
    return Failure(f"the parkwatch API answered {status}" + (f": {error}" if error else ""))
