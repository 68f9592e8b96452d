"""Install, start and stop a local Label Studio server (its own venv, loopback only, known user and token).

Label Studio pins its own SDK and `opencv-python-headless`, which would clash with the project's
OpenCV, so it lives in a separate virtual environment (default `<project>/.labelstudio/venv`).
The token is passed through the child's environment only (never on the command line, where `ps`
shows it) and never written to detal's logs or error messages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from detal.errors import LabelStudioError

log = logging.getLogger(__name__)

LABEL_STUDIO_VERSION = "1.23.2"
HOST = "127.0.0.1"
STATE_FILE = "detal_server.json"  # in the data dir: how `stop` finds a server started by another process
# Only these variables reach the server: Label Studio also reads bare USERNAME/PASSWORD/PORT/HOST/DEBUG...
_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")


@dataclass(frozen=True)
class ServerInfo:
    url: str
    port: int
    pid: int
    data_dir: Path
    log_path: Path


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _executable(venv: Path) -> Path:
    return venv / ("Scripts/label-studio.exe" if os.name == "nt" else "bin/label-studio")


def installed_version(venv: Path) -> str | None:
    """Label Studio version installed in `venv`, or None when there is none (no import of Django)."""
    py = _venv_python(venv)
    if not py.exists() or not _executable(venv).exists():
        return None
    res = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
                         capture_output=True, text=True, check=False)
    return res.stdout.strip() or None if res.returncode == 0 else None


def install(venv: Path, *, version: str = LABEL_STUDIO_VERSION, python: str | None = None,
            log_path: Path | None = None) -> Path:
    """Create `venv` and pip-install label-studio==version into it (reused when already there).

    Returns the `label-studio` executable. Takes 2-3 minutes and about 1 GB the first time.
    """
    venv = Path(venv).resolve()
    if installed_version(venv) == version:
        return _executable(venv)
    log_path = Path(log_path or venv.parent / "install.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("installing label-studio==%s into %s (log: %s)", version, venv, log_path)
    with open(log_path, "ab") as out:
        steps = []
        if not _venv_python(venv).exists():
            steps.append([python or sys.executable, "-m", "venv", str(venv)])
        steps.append([str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check",
                      f"label-studio=={version}"])
        for cmd in steps:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise LabelStudioError(f"installing label-studio=={version} into {venv} failed; see {log_path}")
    return _executable(venv)


DEFAULT_PORT = 8080  # the config's default url; another free port when it is taken
DEFAULT_USER = "admin@detal.local"


def port_free(port: int, host: str = HOST) -> bool:
    """True when `port` can be listened on. SO_REUSEADDR like the server's own socket: a port left in
    TIME-WAIT by a server just stopped counts as free, so a restart comes back on the same port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Served:
    info: ServerInfo
    already_running: bool
    exports: tuple[str, ...]  # generated credentials as `export NAME=value` lines, to be shown ONCE


def serve(*, home: Path, document_root: Path, port: int = 0, username: str = DEFAULT_USER,
          api_key_env: str = "LABEL_STUDIO_API_KEY", password_env: str = "LABEL_STUDIO_UI_PASSWORD",
          venv: Path | None = None, timeout: float = 240.0, environ: dict | None = None,
          on_step=lambda msg: None) -> Served:
    """Install (own venv) and start a local server, or report the one already running on this home.

    Token and UI password come from the environment variables named; on the first start of a fresh data
    dir with them unset they are generated and returned as `export` lines. A later start needs the token
    it was first started with. Port: DEFAULT_PORT when free, else any free port.
    """
    import secrets

    environ = os.environ if environ is None else environ
    home = Path(home).expanduser().resolve()
    data_dir, venv = home / "data", Path(venv).resolve() if venv else home / "venv"
    running = read_state(data_dir)
    if running is not None and _pid_is_label_studio(running.pid):
        return Served(running, True, ())
    doc_root = Path(document_root).expanduser().resolve()
    doc_root.mkdir(parents=True, exist_ok=True)
    token, password = environ.get(api_key_env), environ.get(password_env)
    fresh = not is_initialised(data_dir)
    exports = []
    if not token:
        if not fresh:
            raise LabelStudioError(f"${api_key_env} is unset; export the token printed when {data_dir} was first "
                                   f"served (or delete {data_dir} to start over)")
        token = secrets.token_hex(20)
        exports.append(f"export {api_key_env}={token}")
    if not password:
        password = secrets.token_urlsafe(12)
        if fresh:
            exports.append(f"export {password_env}={password}")
    on_step(f"installing/checking label-studio in {venv} (first time: 2-3 min, log {home / 'install.log'})")
    install(venv, log_path=home / "install.log")
    port = port or (DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port())
    on_step(f"starting Label Studio on {HOST}:{port} (first boot 30-70 s)")
    info = start(data_dir=data_dir, document_root=doc_root, username=username, password=password, token=token,
                 venv=venv, port=port, timeout=timeout)
    return Served(info, False, tuple(exports))


def free_port(host: str = HOST) -> int:
    """A port free right now; Label Studio silently moves to another port when the one asked for is busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_env(*, data_dir: Path, document_root: Path, username: str, password: str, token: str,
               base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: an allowlist of the parent's plus the Label Studio settings."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in _ENV_ALLOWLIST if k in base}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def is_initialised(data_dir: Path) -> bool:
    """True once a server has booted on this data dir: user and token are then fixed."""
    return (Path(data_dir) / "label_studio.sqlite3").exists()


def _get(url: str, token: str | None = None, timeout: float = 5.0) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None, log_path: Path | None = None) -> None:
    """Poll GET /health until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _get(f"{url}/health", timeout=3.0) == 200:
            return
        if proc is not None and proc.poll() is not None:
            raise LabelStudioError(f"Label Studio exited with code {proc.returncode} during start; see {log_path}")
        time.sleep(0.5)
    raise LabelStudioError(f"Label Studio at {url} not healthy after {timeout:.0f} s; see {log_path}, "
                           "or raise the timeout (first boot runs migrations, 30-70 s on 2 cores)")


def start(*, data_dir: Path, document_root: Path, username: str, password: str, token: str,
          venv: Path, port: int | None = None, timeout: float = 240.0, log_path: Path | None = None) -> ServerInfo:
    """Start Label Studio in the background and return once /health answers and the token is accepted.

    User, password and token only take effect on the first boot of `data_dir`; a later start with
    another token fails with a LabelStudioError saying so.
    """
    if len(token) <= 5:
        raise LabelStudioError("Label Studio API token must be longer than 5 characters; set a longer LABEL_STUDIO_API_KEY")
    if "@" not in username:
        raise LabelStudioError(f"Label Studio username {username!r} must be an email address, e.g. detal@localhost.local")
    data_dir, document_root = Path(data_dir).resolve(), Path(document_root).resolve()
    if not document_root.is_dir():
        raise LabelStudioError(f"document root {document_root} is not a folder; point it at the dataset folder")
    exe = _executable(Path(venv))
    if not exe.exists():
        raise LabelStudioError(f"label-studio not installed in {venv}; run `detal labelstudio serve` (installs it)")
    running = read_state(data_dir)
    if running is not None and _pid_is_label_studio(running.pid):
        raise LabelStudioError(f"a Label Studio server (pid {running.pid}) already runs on {data_dir} at {running.url}; "
                               "stop it first with `detal labelstudio stop`")
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path or data_dir / "server.log")
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    env = server_env(data_dir=data_dir, document_root=document_root, username=username,
                     password=password, token=token)
    cmd = [str(exe), "start", "--no-browser", "--internal-host", HOST, "--port", str(port),
           "--data-dir", str(data_dir), "--log-level", "WARNING"]
    log.info("starting Label Studio at %s (data %s, log %s)", url, data_dir, log_path)
    with open(log_path, "ab") as out:
        # own session: stop() signals the whole group (label-studio may spawn workers)
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(data_dir), start_new_session=True)
    info = ServerInfo(url=url, port=port, pid=proc.pid, data_dir=data_dir, log_path=log_path)
    try:
        wait_healthy(url, timeout, proc, log_path)
        status = _get(f"{url}/api/projects?page_size=1", token=token, timeout=30.0)
        if status in (401, 403):
            raise LabelStudioError(f"Label Studio data dir {data_dir} was first started with another API token; "
                                   "use that token or delete the data dir to start over")
        if status != 200:
            raise LabelStudioError(f"Label Studio at {url} answered HTTP {status} to an API call; see {log_path}")
    except BaseException:
        _terminate(proc.pid)
        raise
    _write_state(info)
    return info


def _write_state(info: ServerInfo) -> None:
    doc = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(info).items()}
    (info.data_dir / STATE_FILE).write_text(json.dumps(doc), encoding="utf-8")


def read_state(data_dir: Path) -> ServerInfo | None:
    """The server recorded in `data_dir` by start(), or None."""
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return ServerInfo(url=d["url"], port=int(d["port"]), pid=int(d["pid"]),
                          data_dir=Path(d["data_dir"]), log_path=Path(d["log_path"]))
    except (ValueError, KeyError, TypeError):
        return None


def _pid_is_label_studio(pid: int) -> bool:
    """Guard against a recycled pid: only signal a process whose command line is label-studio."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if os.name == "nt":
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the state file
    return b"label-studio" in cmdline or b"label_studio" in cmdline


def _terminate(pid: int, timeout: float = 20.0) -> None:
    try:
        pgid = os.getpgid(pid)
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child (started by another detal process)
            if not _pid_alive(pid):
                return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and ") Z" in stat.read_text())


def stop(data_dir: Path, timeout: float = 20.0) -> bool:
    """Stop the server started on `data_dir`; False when none was running."""
    data_dir = Path(data_dir).resolve()
    info = read_state(data_dir)
    if info is None:
        return False
    stopped = False
    if _pid_is_label_studio(info.pid):
        log.info("stopping Label Studio pid %d at %s", info.pid, info.url)
        _terminate(info.pid, timeout)
        stopped = True
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped
