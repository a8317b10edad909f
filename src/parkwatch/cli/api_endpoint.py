"""Where the running daemon's local API is and the bearer token it takes, from the park config
(or the command line's overrides) — for `parkwatch alarms`, `ack`, `reset` and `status`.

The API's address comes from the config's ``api:`` section, its token from
``api.secret_file``/``api.secret_env`` or else from ``{state_dir}/api.token``, which the daemon
creates on its first start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parkwatch.cli import configpath
from parkwatch.cli.exits import EXIT_CONFIG, Failure


@dataclass(frozen=True)
class Endpoint:
    """The daemon's API: where it is and the token to send."""

    url: str                # http://host:port, no trailing slash
    token: str
    token_source: str       # where the token came from, for the 401 message


def _host_for_url(listen: str) -> str:
    """The address to connect to for a listen address (a wildcard means this host)."""
    if listen in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen == "::":
        return "[::1]"
    return f"[{listen}]" if ":" in listen else listen


def _read_token_file(path: Path, hint: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise Failure(f"no API token at {path}: {hint}") from None
    except PermissionError:
        raise Failure(f"cannot read the API token {path}: permission denied (run this as the "
                      "daemon's user or as root)") from None
    except OSError as exc:
        raise Failure(f"cannot read the API token {path}: {exc.strerror}") from None
    if not token:
        raise Failure(f"the API token file {path} is empty")
    return token


def endpoint(config: str, state_dir: str | None = None, url: str | None = None,
             token_file: str | None = None, token_required: bool = True) -> Endpoint:
    """The API's URL and token from the config (and the overrides); raises Failure.

    With ``token_required=False`` a token that cannot be read is no failure: the endpoint
    comes with an empty token and the reason as its ``token_source`` (for ``parkwatch
    status``, whose health check needs no token)."""
    token: str | None = None
    source = ""
    if token_file is not None:
        try:
            token, source = _read_token_file(Path(token_file), "no such file"), token_file
        except Failure as exc:
            if token_required:
                raise
            token, source = "", exc.message
    if url is not None and token is not None:
        return Endpoint(url.rstrip("/"), token, source)

    from parkwatch.config import ConfigError
    from parkwatch.schema import load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        lines = [str(p) for p in exc.problems]
        explicit = config != configpath.DEFAULT_CONFIG
        lines.append(configpath.missing_config_hint(config, exc, explicit=explicit)
                     or f"{config}: {len(exc.problems)} problem(s); not valid")
        raise Failure("\n".join(lines), EXIT_CONFIG) from None
    api = cfg.api
    if api is None:
        raise Failure(f"{config}: the local API is off: add `api:` to the config (and restart "
                      "the daemon)", EXIT_CONFIG)
    if url is None:
        if api.port == 0:
            raise Failure(f"{config}: api.port is 0 (the daemon picks a free port): set a fixed "
                          "port, or give --url", EXIT_CONFIG)
        url = f"http://{_host_for_url(api.listen)}:{api.port}"
    if token is None:
        try:
            token = api.secret()
        except OSError as exc:
            raise Failure(f"{config}: api.secret_file: cannot read {api.secret_file}: "
                          f"{exc.strerror}", EXIT_CONFIG) from None
        except KeyError:
            raise Failure(f"{config}: api.secret_env: environment variable {api.secret_env} "
                          "is not set", EXIT_CONFIG) from None
        if token is not None:
            source = f"api.secret_{'file' if api.secret_file is not None else 'env'}"
        else:
            from parkwatch.daemon.httpapi import TOKEN_FILE

            state = Path(state_dir) if state_dir else cfg.gateway.state_dir
            path = state / TOKEN_FILE
            try:
                token = _read_token_file(path, "the daemon creates it on its first start; has "
                                         "it run with this state directory (gateway.state_dir "
                                         "or --state-dir)?")
                source = str(path)
            except Failure as exc:
                if token_required:
                    raise
                token, source = "", exc.message
    return Endpoint(url.rstrip("/"), token, source)
