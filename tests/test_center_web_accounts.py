"""The console's accounts: a logout, a new password and a removed user end the logins at once
(a copy of the cookie is worth nothing after), failed logins are throttled, and the
`parkwatch center-user passwd|remove|list` commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from center_web import PASSWORDS, Client, console  # noqa: F401  (console: the fixture)
from conftest import REPO
from parkwatch.center.config import load_center_config
from parkwatch.center.service import CenterService
from parkwatch.center.web.throttle import LoginThrottle
from parkwatch.config import ConfigError
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import center_yaml


def port_of(center: CenterService) -> int:
    assert center.web is not None
    return center.web.port


def copy_of(c: Client) -> Client:
    """Another browser holding a copy of ``c``'s cookie (stolen, or a second tab)."""
    other = Client(c.port)
    other.cookies = dict(c.cookies)
    return other


def user_cli(console: CenterService, *args: str,
             stdin: str = "") -> subprocess.CompletedProcess[str]:
    cfg = Path(console.cfg.http.state_file).parent / "center.yaml"
    return subprocess.run([sys.executable, "-m", "parkwatch", "center-user", *args, "--config",
                           str(cfg)], input=stdin, capture_output=True, text=True, cwd=REPO,
                          timeout=60)


def test_logging_out_ends_the_session_even_for_a_copy_of_the_cookie(
        console: CenterService) -> None:
    c = Client(port_of(console))
    assert c.login("王工").status == 303
    stolen = copy_of(c)
    assert stolen.get("/").status == 200
    board = c.get("/")
    assert c.post("/logout", {"csrf": board.csrf()}).status == 303
    assert c.get("/").status == 303
    r = stolen.get("/")
    assert r.status == 303 and r.headers["location"] == "/login"


def test_a_new_password_and_a_removed_user_end_every_login(console: CenterService) -> None:
    first, second = Client(port_of(console)), Client(port_of(console))
    assert first.login("王工").status == 303 and second.login("王工").status == 303
    listed = user_cli(console, "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:4] == ["王工", "operator", "*", "2"]  # scope *: every park
               for line in listed.stdout.splitlines())

    done = user_cli(console, "passwd", "王工", stdin="a-new-password\n")
    assert done.returncode == 0 and "所有登录已结束" in done.stdout, done.stderr
    assert first.get("/").status == 303 and second.get("/").status == 303
    assert first.login("王工").status == 401  # the old password
    assert first.login("王工", "a-new-password").status == 303

    gone = user_cli(console, "remove", "王工")
    assert gone.returncode == 0, gone.stderr
    assert first.get("/").status == 303
    assert first.login("王工", "a-new-password").status == 401
    names = [line.split()[0] for line in user_cli(console, "list").stdout.splitlines()[1:]]
    assert names == ["viewer"]
    again = user_cli(console, "remove", "王工")
    assert again.returncode == 1 and "没有用户" in again.stderr
    short = user_cli(console, "passwd", "viewer", stdin="short\n")
    assert short.returncode == 1 and "至少" in short.stderr


def test_failed_logins_are_throttled_and_the_right_password_waits_too(
        console: CenterService) -> None:
    """Behind the (trusted, loopback) reverse proxy each client is the address its
    X-Forwarded-For names: a guesser at 10.0.0.66 holds back only themselves, never the
    operator at the command center's desk."""
    guesser, desk = Client(port_of(console)), Client(port_of(console))
    guesser.headers = {"X-Forwarded-For": "10.0.0.66"}
    desk.headers = {"X-Forwarded-For": "10.0.0.7"}
    for _ in range(5):
        assert guesser.login("王工", "a-wrong-guess").status == 401
    r = guesser.login("王工")  # the right password, now refused without being checked
    assert r.status == 429 and "登录失败次数过多" in r.body and "15 分钟" in r.body
    assert desk.login("王工").status == 303  # the operator at their desk: not held
    assert "parkwatch_center_login_failures_total 5.0" in desk.get("/metrics").body
    for k in range(15):  # the guesser's address, whatever name it tries
        assert guesser.login(f"name-{k}", "a-wrong-guess").status == 401
    assert guesser.login("viewer").status == 429


def test_the_throttle_forgets_failures_that_left_the_window() -> None:
    now = [1000.0]
    t = LoginThrottle(per_name=3, per_address=5, window_s=60.0, clock=lambda: now[0])
    for _ in range(3):
        t.failed("王工", "10.0.0.7")
    assert t.wait_s("王工", "10.0.0.7") == 60.0
    assert t.wait_s("王工", "10.0.0.9") == 0.0  # the same name from elsewhere: free
    assert t.wait_s("viewer", "10.0.0.8") == 0.0
    now[0] += 30
    assert t.wait_s("王工", "10.0.0.7") == 30.0
    t.failed("李工", "10.0.0.7")
    t.failed("赵工", "10.0.0.7")  # the address's fifth failure
    assert t.wait_s("viewer", "10.0.0.7") == 30.0
    now[0] += 30.5
    assert t.wait_s("王工", "10.0.0.7") == 0.0
    t.failed("王工", "10.0.0.7")
    t.succeeded("王工", "10.0.0.7")
    assert t.wait_s("王工", "10.0.0.7") == 0.0


def test_a_trusted_proxy_that_is_no_address_is_a_config_error(
        broker: LocalMosquitto, tmp_path: Path) -> None:
    path = center_yaml(tmp_path / "center.yaml", broker, f"sqlite:///{tmp_path / 'c.db'}", "p")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["http"]["trusted_proxies"] = ["10.0.0.0/8", "proxy.example.cn"]
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_center_config(path)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "http.trusted_proxies" in text and "proxy.example.cn" in text and "center.yaml:" in text


def test_center_user_adds_the_ticket_roles_with_their_scope(console: CenterService) -> None:
    pw = "a-long-password\n"
    bad = user_cli(console, "add", "acme-safety", "--role", "tenant", "--park", "xinqiao",
                   stdin=pw)
    assert bad.returncode == 1 and "--tenant" in bad.stderr
    assert console.store.user("acme-safety") is None
    ok = user_cli(console, "add", "acme-safety", "--role", "tenant", "--park", "xinqiao",
                  "--tenant", "t-acme", stdin=pw)
    assert ok.returncode == 0, ok.stderr
    lord = user_cli(console, "add", "房东陈", "--role", "landlord", "--park", "xinqiao",
                    "--building", "B1", "--building", "B2", stdin=pw)
    assert lord.returncode == 0, lord.stderr
    tenant, landlord = console.store.user("acme-safety"), console.store.user("房东陈")
    assert tenant is not None and (tenant["role"], tenant["park"], tenant["tenant"]) == \
        ("tenant", "xinqiao", "t-acme")
    assert landlord is not None and landlord["buildings"] == ["B1", "B2"]
    listed = user_cli(console, "list").stdout
    assert any(line.split()[:3] == ["acme-safety", "tenant", "xinqiao/t-acme"]
               for line in listed.splitlines())
