"""The console's users: roles, password hashes, and ``parkwatch center-user add``.

Passwords are kept as argon2id hashes (argon2-cffi, the reference implementation's binding,
with its default parameters, which follow RFC 9106's recommendation); the clear password is
never stored nor logged.
"""

from __future__ import annotations

import getpass
import re
import sys
import time
from typing import Any, TextIO

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from parkwatch.center import tickets as K
from parkwatch.center.config import load_center_config
from parkwatch.center.store import CenterStore, StoreError, open_store
from parkwatch.config import ConfigError
from parkwatch.config.base import ID_PATTERN

#: who may do what: docs/center.md ("Users and roles"); the tickets' rules:
#: parkwatch.center.tickets
ROLES = K.ROLES
MIN_PASSWORD = 8
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(store: CenterStore, name: str, password: str) -> dict[str, str] | None:
    """The user when ``password`` is theirs, else None (an unknown name costs one hash too,
    so the answer's time does not tell which names exist)."""
    user = store.user(name)
    if user is None:
        _HASHER.hash(password)
        return None
    try:
        _HASHER.verify(user["password_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    if _HASHER.check_needs_rehash(user["password_hash"]):
        store.set_password(name, hash_password(password))
    return {k: user[k] for k in ("name", "role", "park", "tenant", "buildings")}


def add_user(store: CenterStore, name: str, role: str, password: str, *,
             park: str | None = None, tenant: str | None = None,
             buildings: tuple[str, ...] = ()) -> str | None:
    """A new user; the problem (in Chinese and English) when it cannot be added.  An
    inspector may be given the one ``park`` they work in; a tenant's safety officer needs
    their ``park`` and ``tenant``; a landlord their ``park`` and ``buildings``."""
    if role not in ROLES:
        return (f"角色只能是 {'、'.join(ROLES)} 之一 (role must be one of "
                f"{', '.join(ROLES)}): {role}")
    if not re.match(ID_PATTERN, name):
        # the name is the ack's `by`: the gateway checks it against alarms.operators[].id
        return (f"用户名须像园区配置里的 id：1 到 64 个字母、数字、汉字、_ . -，不含空格 "
                f"(a user name is an id as in the park config: letters, digits, Chinese, "
                f"_ . -, no spaces, at most 64): {name!r}")
    scope = _scope_problem(role, park, tenant, buildings)
    if scope is not None:
        return scope
    if len(password) < MIN_PASSWORD:
        return (f"密码至少 {MIN_PASSWORD} 个字符 (the password needs at least {MIN_PASSWORD} "
                "characters)")
    if not store.add_user(name, hash_password(password), role, time.time(), park=park,
                          tenant=tenant, buildings=buildings):
        return f"用户 {name} 已存在 (user {name} exists already)"
    return None


def _scope_problem(role: str, park: str | None, tenant: str | None,
                   buildings: tuple[str, ...]) -> str | None:
    """What is missing or out of place in a user's scope, for their role."""
    for label, value in (("--park", park), ("--tenant", tenant),
                         *(("--building", b) for b in buildings if b != "*")):
        if value is not None and not re.match(ID_PATTERN, value):
            return f"{label} 须是园区配置里的 id ({label} must be an id of the park config): " \
                   f"{value!r}"
    if role in ("operator", "viewer") and (park or tenant or buildings):
        return (f"{role} 看所有园区，不带 --park/--tenant/--building ({role} sees every park: "
                f"no --park, --tenant or --building)")
    if role == "tenant" and not (park and tenant):
        return ("租户安全员需要 --park 和 --tenant (a tenant's safety officer needs --park and "
                "--tenant)")
    if role == "landlord" and not (park and buildings):
        return ("房东需要 --park 和 --building（可多个，* 表示全部楼栋） (a landlord needs --park "
                "and --building, one or more; * for every building)")
    if role != "tenant" and tenant:
        return "只有租户安全员带 --tenant (only a tenant's safety officer has --tenant)"
    if role != "landlord" and buildings:
        return "只有房东带 --building (only a landlord has --building)"
    return None


def read_password(stdin: TextIO) -> str:
    """The password from the terminal (asked twice, not shown) or the first line of stdin."""
    if stdin.isatty():
        first = getpass.getpass("密码 (password): ")
        if getpass.getpass("再输入一次 (again): ") != first:
            raise ValueError("两次输入的密码不一致 (the two passwords differ)")
        return first
    return stdin.readline().rstrip("\r\n")


def user_command(action: str, config: str, name: str | None = None, role: str | None = None,
                 stdin: TextIO = sys.stdin, *, park: str | None = None,
                 tenant: str | None = None, buildings: tuple[str, ...] = ()) -> int:
    """``parkwatch center-user add|passwd|remove|list``: 0 when done, 1 when refused, 2 for a
    bad config."""
    try:
        cfg = load_center_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    password = ""
    if action in ("add", "passwd"):
        try:
            password = read_password(stdin)
        except (ValueError, EOFError, KeyboardInterrupt) as exc:
            print(f"parkwatch center-user: {exc}", file=sys.stderr)
            return 1
    try:
        store = open_store(cfg.database)
    except StoreError as exc:
        print(f"parkwatch center-user: {exc}", file=sys.stderr)
        return 1
    try:
        done, refused = _act(store, action, name or "", role or "", password,
                             time.time() - cfg.http.session_max_age_s,
                             (park, tenant, buildings))
    finally:
        store.close()
    if refused is not None:
        print(f"parkwatch center-user: {refused}", file=sys.stderr)
        return 1
    print(done)
    return 0


def _scope_text(user: dict[str, Any]) -> str:
    park: str | None = user.get("park")
    if park is None:
        return "*"
    return park + (f"/{user['tenant']}" if user.get("tenant") else "")


def _act(store: CenterStore, action: str, name: str, role: str, password: str,
         live_since: float,
         scope: tuple[str | None, str | None, tuple[str, ...]] = (None, None, ())
         ) -> tuple[str, str | None]:
    """(what was done, or the refusal) of one action."""
    if action == "add":
        park, tenant, buildings = scope
        refused = add_user(store, name, role, password, park=park, tenant=tenant,
                           buildings=buildings)
        return f"已添加用户 {name}（{role}） (user {name} added as {role})", refused
    if action == "passwd":
        if len(password) < MIN_PASSWORD:
            return "", (f"密码至少 {MIN_PASSWORD} 个字符 (the password needs at least "
                        f"{MIN_PASSWORD} characters)")
        if not store.set_password(name, hash_password(password), end_sessions=True):
            return "", f"没有用户 {name} (no user {name})"
        return (f"已更改用户 {name} 的密码，其所有登录已结束 (password of {name} changed; "
                f"every login of theirs ended)"), None
    if action == "remove":
        if not store.remove_user(name):
            return "", f"没有用户 {name} (no user {name})"
        return (f"已删除用户 {name}，其所有登录已结束；其操作记录保留 (user {name} removed, "
                f"their logins ended; their recorded commands stay)"), None
    users = store.users(live_since)  # logins not expired yet
    if not users:
        return "还没有用户 (no users yet): parkwatch center-user add NAME --role operator", None
    rows = [f"{'用户 (user)':<24} {'角色 (role)':<14} {'范围 (scope)':<28} 登录中 (logged in)"]
    rows += [f"{u['name']:<24} {u['role']:<14} {_scope_text(u):<28} {u['sessions']}"
             for u in users]
    return "\n".join(rows), None
