"""Node-RED for ``peers.py``: a pinned version from the npm registry, installed once into a cache
outside the repository, started headless with a settings file and a flow written here.

**Install.**  ``npm install --prefix <cache>/node-red-<version> node-red@<version>``, into a
temporary folder next to it that is renamed when npm succeeded, so a broken install is never
taken for a good one.  The cache is ``~/.cache/parkwatch-bench`` (``$XDG_CACHE_HOME`` is
honoured), or ``$PARKWATCH_BENCH_CACHE``; ``$PARKWATCH_BENCH_NODE_RED`` names the install
folder itself (e.g. a Node-RED installed some other way).  When the registry no longer serves
the pinned version, the newest 4.1.x it serves is taken and the JSON says which.  Node.js and
npm come from the system: when either is missing and we are root, ``apt-get install -y nodejs
npm``; otherwise :func:`prepare` returns the reason, and ``peers.py`` skips the column.

**The flow** (written by :func:`flow`, by hand, not exported from an editor): an ``mqtt in``
node on the sensor broker (``bench/sensors/+``, QoS 0, parsed JSON) → a ``function`` node that
keeps each sensor's alarm state in its context (raised when ``v >= limit``, cleared when
``v < limit - deadband``: the threshold and hysteresis of parkwatch's limit rule, with each
sensor's own limit and deadband from a table the node's *On Start* code puts in its context)
and passes on one alert per change → an ``mqtt out`` node on the uplink broker (QoS 1), the
alert ``{"sensor_id","event","value","ts"}``.

**Settings**: ``httpAdminRoot`` and ``httpNodeRoot`` off (headless: no editor, no HTTP port),
no credential secret (the flow has no credentials), memory context, no update checks, no
external modules, the user folder a temporary one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

VERSION = "4.1.15"
SERIES = "4.1"
CACHE_ENV = "PARKWATCH_BENCH_CACHE"
DIR_ENV = "PARKWATCH_BENCH_NODE_RED"
INSTALL_TIMEOUT_S = 600


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parkwatch-bench"


def install_dir(version: str) -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    return cache_root() / f"node-red-{version}"


def red_js(folder: Path) -> Path:
    return folder / "node_modules" / "node-red" / "red.js"


def installed_version(folder: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        pkg = folder / "node_modules" / "node-red" / "package.json"
        return str(json.loads(pkg.read_text(encoding="utf-8"))["version"])
    return None


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def tool_version(tool: str) -> str | None:
    exe = shutil.which(tool)
    if exe is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = _run([exe, "--version"], 30)
        return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None
    return None


def ensure_node(log: Any = print) -> str | None:
    """None when node and npm are there (installed with apt-get when missing and we are root);
    else what to install."""
    missing = [t for t in ("node", "npm") if shutil.which(t) is None]
    if not missing:
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"  {' and '.join(missing)} missing: apt-get install -y nodejs npm ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env,
                           stdin=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "nodejs", "npm"], capture_output=True,
                           timeout=900, env=env, stdin=subprocess.DEVNULL)
        missing = [t for t in ("node", "npm") if shutil.which(t) is None]
        if not missing:
            return None
    return (f"{' and '.join(missing)} not found: install Node.js 18 or later with npm (Debian "
            "and Ubuntu: `sudo apt-get install nodejs npm`), then run again")


def _served_version(npm: str) -> str | None:
    """The newest version of the pinned series the registry serves (None: it answered none)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = _run([npm, "view", f"node-red@{SERIES}.x", "version", "--json"], 120)
        if out.returncode == 0 and out.stdout.strip():
            got = json.loads(out.stdout)
            versions = got if isinstance(got, list) else [got]
            return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
    return None


def _npm_install(npm: str, version: str, folder: Path, log: Any) -> str | None:
    """Install node-red@version into folder (through a temporary sibling); None or the error."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"  npm install --prefix {folder} node-red@{version} ...")
    t = time.monotonic()
    try:
        out = _run([npm, "install", "--prefix", str(tmp), "--no-audit", "--no-fund",
                    "--omit=dev", "--loglevel=error", f"node-red@{version}"], INSTALL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return f"npm install failed: {exc}"
    if out.returncode != 0 or installed_version(tmp) is None:
        shutil.rmtree(tmp, ignore_errors=True)
        return "npm install failed: " + (out.stderr or out.stdout).strip()[-600:]
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log(f"  installed in {time.monotonic() - t:.0f} s")
    return None


def prepare(log: Any = print) -> dict[str, Any]:
    """Node-RED ready to start: {"dir", "version", "node", "npm", "installed_now"}, or
    {"skipped": reason}."""
    why = ensure_node(log)
    if why is not None:
        return {"skipped": why}
    info: dict[str, Any] = {"node": tool_version("node"), "npm": tool_version("npm"),
                            "pinned": VERSION, "installed_now": False}
    folder = install_dir(VERSION)
    if os.environ.get(DIR_ENV):
        if installed_version(folder) is None:
            return {**info, "skipped": f"${DIR_ENV}={folder} holds no node_modules/node-red"}
        return {**info, "dir": str(folder), "version": installed_version(folder)}
    # the pinned version, or one installed before as the nearest the registry served
    for cand in [folder, *sorted(cache_root().glob(f"node-red-{SERIES}.*"), reverse=True)]:
        v = installed_version(cand)
        if v == VERSION or (v is not None and cand != folder and (cand / ".nearest").exists()):
            return {**info, "dir": str(cand), "version": v}
    npm = shutil.which("npm")
    assert npm is not None
    err = _npm_install(npm, VERSION, folder, log)
    if err is None:
        return {**info, "dir": str(folder), "version": installed_version(folder),
                "installed_now": True}
    nearest = _served_version(npm)
    if nearest is None or nearest == VERSION:
        return {**info, "skipped": err}
    log(f"  node-red@{VERSION} not installable ({err.splitlines()[-1][:120]}); the registry "
        f"serves {nearest}")
    other = install_dir(nearest)
    err2 = _npm_install(npm, nearest, other, log)
    if err2 is not None:
        return {**info, "skipped": err2}
    (other / ".nearest").write_text(f"installed because {VERSION} was not served\n")
    return {**info, "dir": str(other), "version": installed_version(other),
            "installed_now": True, "note": f"{VERSION} was not served; {nearest} instead"}


# --- the flow and the settings --------------------------------------------------------------

FUNCTION = """\
const p = msg.payload;
const lim = context.get("limits")[p.id];
if (lim === undefined) {
    return null;
}
const raised = context.get("raised");
let event;
if (raised[p.id]) {
    if (p.v >= lim[0] - lim[1]) {
        return null;
    }
    raised[p.id] = false;
    event = "cleared";
} else {
    if (p.v < lim[0]) {
        return null;
    }
    raised[p.id] = true;
    event = "raised";
}
msg.payload = JSON.stringify({sensor_id: p.id, event: event, value: p.v, ts: p.ts});
return msg;
"""


def _broker(node_id: str, name: str, at: tuple[str, int]) -> dict[str, Any]:
    return {"id": node_id, "type": "mqtt-broker", "name": name, "broker": at[0],
            "port": str(at[1]), "clientid": "", "autoConnect": True, "usetls": False,
            "protocolVersion": "4", "keepalive": "60", "cleansession": True,
            "autoUnsubscribe": True, "birthTopic": "", "closeTopic": "", "willTopic": "",
            "userProps": "", "sessionExpiry": ""}


def flow(sensors_at: tuple[str, int], uplink_at: tuple[str, int], in_topic: str,
         out_topic: str, limits: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """MQTT in → function (threshold with hysteresis per sensor) → MQTT out."""
    init = (f"context.set(\"limits\", {json.dumps({k: list(v) for k, v in limits.items()})});\n"
            "context.set(\"raised\", {});\n")
    return [
        {"id": "pw-tab", "type": "tab", "label": "parkwatch peers benchmark", "disabled": False,
         "info": "written by benchmarks/nodered.py"},
        _broker("pw-sensors", "sensors", sensors_at),
        _broker("pw-uplink", "uplink", uplink_at),
        {"id": "pw-in", "type": "mqtt in", "z": "pw-tab", "name": "readings", "topic": in_topic,
         "qos": "0", "datatype": "json", "broker": "pw-sensors", "nl": False, "rap": True,
         "rh": 0, "inputs": 0, "x": 120, "y": 80, "wires": [["pw-fn"]]},
        {"id": "pw-fn", "type": "function", "z": "pw-tab", "name": "threshold + hysteresis",
         "func": FUNCTION, "outputs": 1, "timeout": 0, "noerr": 0, "initialize": init,
         "finalize": "", "libs": [], "x": 320, "y": 80, "wires": [["pw-out"]]},
        {"id": "pw-out", "type": "mqtt out", "z": "pw-tab", "name": "alerts", "topic": out_topic,
         "qos": "1", "retain": "false", "respTopic": "", "contentType": "", "userProps": "",
         "correl": "", "expiry": "", "broker": "pw-uplink", "x": 520, "y": 80, "wires": []},
    ]


SETTINGS = """\
// written by benchmarks/nodered.py: headless, no editor, no HTTP port, nothing from the network
module.exports = {
    userDir: %(user_dir)s,
    flowFile: "flows.json",
    flowFilePretty: false,
    credentialSecret: false,
    uiHost: "127.0.0.1",
    uiPort: 0,
    httpAdminRoot: false,
    httpNodeRoot: false,
    logging: {console: {level: "info", metrics: false, audit: false}},
    contextStorage: {default: {module: "memory"}},
    functionExternalModules: false,
    externalModules: {autoInstall: false, palette: {allowInstall: false}},
    diagnostics: {enabled: false},
    runtimeState: {enabled: false},
    telemetry: {enabled: false},
};
"""


class NodeRedProcess:
    """`node red.js --settings FILE --userDir DIR` with the flow above; its output in a log."""

    def __init__(self, folder: Path, user_dir: Path, flow_nodes: list[dict[str, Any]],
                 log_file: Path) -> None:
        user_dir.mkdir(parents=True, exist_ok=True)
        (user_dir / "flows.json").write_text(json.dumps(flow_nodes, indent=1), encoding="utf-8")
        settings = user_dir / "settings.js"
        settings.write_text(SETTINGS % {"user_dir": json.dumps(str(user_dir))}, encoding="utf-8")
        self.log_file = log_file
        node = shutil.which("node") or "node"
        self.argv = [node, str(red_js(folder)), "--settings", str(settings), "--userDir",
                     str(user_dir)]
        with open(log_file, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=user_dir)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until the log says the flows started and both brokers are connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Node-RED exited ({self.proc.returncode}):\n"
                                   f"{self.log()[-2000:]}")
            text = self.log()
            if "Started flows" in text and text.count("Connected to broker") >= 2:
                return
            time.sleep(0.1)
        raise RuntimeError(f"Node-RED did not start within {timeout:g} s:\n{self.log()[-2000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
