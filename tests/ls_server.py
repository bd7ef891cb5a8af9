"""Start and stop a real Label Studio server on loopback for the integration tests.

Label Studio lives in its own venv, ``.ls/venv`` (``scripts/labelstudio.sh install``; it pins Django, numpy...
and must not constrain prelabel's venv). The first start of an empty data folder spends half a minute or more in
database migrations, so ``label-studio init`` runs once into ``.ls/template`` and every test session starts
from a copy of it, with a fresh API token written into the copy's database and a fresh Django secret key.

The server always binds 127.0.0.1 (``--internal-host``), on a free port, with the environment variables that
stop its outbound calls (version check, Sentry, analytics). It is stopped by its PID.

Command line (used by ``scripts/labelstudio.sh``)::

    .ls/venv/bin/python tests/ls_server.py template   # make .ls/template once (idempotent)
    .venv/bin/python tests/ls_server.py run           # start one, print its URL, wait for Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LS_VERSION = "1.23.2"
ROOT = Path(__file__).resolve().parents[1] / ".ls"
VENV = ROOT / "venv"
TEMPLATE = ROOT / "template"
LS_BIN = VENV / "bin" / "label-studio"
USERNAME = "admin@example.com"

_STARTED = re.compile(r"Starting development server at http://127\.0\.0\.1:(\d+)/")


class ServerError(RuntimeError):
    """Label Studio could not be installed, initialised or started; the message ends with the log tail."""


def ls_env(data_dir: Path) -> dict[str, str]:
    """The environment of a Label Studio process whose data lives in ``data_dir`` (no outbound calls)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(data_dir / "files"),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "fflag_feat_utc_210_prediction_validation_15082025": "true",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def installed() -> bool:
    return LS_BIN.is_file() and (VENV / f".installed-label-studio-{LS_VERSION}").is_file()


def ensure_template(*, timeout: float = 300.0) -> Path:
    """``.ls/template/data``: a migrated data folder with one user; made by ``label-studio init`` once."""
    stamp = TEMPLATE / "ready"
    if stamp.is_file() and stamp.read_text().strip() == LS_VERSION:
        return TEMPLATE / "data"
    if not installed():
        raise ServerError(f"Label Studio {LS_VERSION} is not installed in {VENV}: run scripts/labelstudio.sh install")
    ROOT.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(ROOT / "template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # two test sessions at once: one makes it, the other waits
        if stamp.is_file() and stamp.read_text().strip() == LS_VERSION:
            return TEMPLATE / "data"
        work = Path(tempfile.mkdtemp(prefix="template-", dir=ROOT))
        data = work / "data"
        (data / "files").mkdir(parents=True)
        log = work / "init.log"
        cmd = [str(LS_BIN), "init", "--no-browser", "--internal-host", "127.0.0.1",
               "--username", USERNAME, "--password", secrets.token_hex(16),
               "--user-token", secrets.token_hex(20), "--enable-legacy-api-token", "-q"]
        with open(log, "wb") as out:
            try:
                rc = subprocess.run(cmd, env=ls_env(data), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=timeout, check=False).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0 or not (data / "label_studio.sqlite3").is_file():
            raise ServerError(f"label-studio init failed (exit {rc}); log {log}:\n{_tail(log)}")
        (data / ".env").unlink(missing_ok=True)   # the secret key: each copy makes its own
        shutil.rmtree(TEMPLATE, ignore_errors=True)
        work.rename(TEMPLATE)
        stamp.write_text(LS_VERSION + "\n")
    return TEMPLATE / "data"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies without stopping it (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LabelStudioServer:
    """A running Label Studio: ``url``, legacy API ``token``, ``pid``; ``stop()`` ends it by its PID."""

    url: str
    token: str = field(repr=False)
    pid: int
    workdir: Path
    log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)

    def stop(self, *, keep: bool = False) -> None:
        """SIGTERM the server's process group (it is the group leader), SIGKILL after 15 s; remove its folder."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if not keep:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log, ROOT / "last-server.log")
            shutil.rmtree(self.workdir, ignore_errors=True)


def _whoami(url: str, token: str) -> bool:
    req = urllib.request.Request(url + "/api/current-user/whoami", headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310  (loopback URL we built)
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(*, timeout: float = 240.0) -> LabelStudioServer:
    """Copy the template, give it a fresh token, start Label Studio on a free loopback port, wait until ready.

    Raises ServerError with the tail of the server log when it cannot start.
    """
    t0 = time.monotonic()
    template = ensure_template()
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT))
    data = workdir / "data"
    shutil.copytree(template, data)
    token = secrets.token_hex(20)
    db = sqlite3.connect(data / "label_studio.sqlite3")
    try:
        with db:
            db.execute("UPDATE authtoken_token SET key = ?", (token,))
    finally:
        db.close()
    log = workdir / "server.log"
    port = free_port()
    cmd = [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--enable-legacy-api-token"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=ls_env(data), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=workdir,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    server = LabelStudioServer(url=f"http://127.0.0.1:{port}", token=token, pid=proc.pid, workdir=workdir,
                               log=log, proc=proc)
    while True:
        if proc.poll() is not None:
            tail = server.log_tail()
            server.stop(keep=True)
            raise ServerError(f"Label Studio exited with code {proc.returncode} before it was ready; "
                              f"log {log}:\n{tail}")
        m = _STARTED.search(log.read_text(errors="replace"))
        if m:                                     # it moves to port+1 silently when the port is taken
            server.url = f"http://127.0.0.1:{m.group(1)}"
            if _whoami(server.url, token):
                break
        if time.monotonic() - t0 > timeout:
            tail = server.log_tail()
            server.stop(keep=True)
            raise ServerError(f"Label Studio was not ready after {timeout:.0f} s; log {log}:\n{tail}")
        time.sleep(0.3)
    return server


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "run"
    if cmd == "template":
        t0 = time.monotonic()
        existed = (TEMPLATE / "ready").is_file()
        ensure_template()
        print(f"template {'already there' if existed else 'made'} in {time.monotonic() - t0:.1f} s: {TEMPLATE}")
        return 0
    if cmd == "run":
        def _interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _interrupt)
        t0 = time.monotonic()
        s = start()
        token_file = s.workdir / "token"
        token_file.touch(mode=0o600)
        token_file.write_text(s.token)
        print(f"Label Studio at {s.url} (pid {s.pid}) ready in {time.monotonic() - t0:.1f} s; API token in "
              f"{token_file}; Ctrl-C stops it", flush=True)
        try:
            s.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            s.stop()
        return 0
    print("usage: ls_server.py [template|run]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
