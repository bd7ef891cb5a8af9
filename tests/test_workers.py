"""A forked worker dies with the process that forked it (prelabel.workers.die_with_parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import os, sys, time
from prelabel.workers import die_with_parent
parent = os.getpid()
pid = os.fork()
if pid == 0:
    die_with_parent(parent)
    time.sleep(60)
    os._exit(0)
open(sys.argv[1], "w").write(str(pid))
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_worker_goes_when_its_parent_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "worker.pid"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(pidfile)])
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        os.kill(worker, 0)  # alive while its parent is
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        # the worker's parent was this test's child: once it is reaped by init the worker is gone too
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


# what a worker looks at: in a module of its own (a worker does not import the program's main module)
_PROBE = """
import os, sys

def look():
    server = os.getppid()
    return (server, sorted(open(f"/proc/{server}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{server}/task")),
            [m for m in ("prelabel.engine.run", "prelabel.adapters.yolo", "prelabel.adapters.labelme", "pandas")
             if m in sys.modules])
"""

_FORKSERVER = """
import os, sys
import numpy  # a thread for the math library: this process is not forked, its pools use the forkserver
from prelabel.workers import process_pool, start_method
from probe import look

if __name__ == "__main__":
    print(start_method())
    for _ in range(2):
        pool = process_pool(2)
        print(*pool.submit(look).result()[1:], sep="|")
        pool.shutdown()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_forkserver_workers_start_with_prelabel_imported_from_a_one_thread_server(tmp_path: Path) -> None:
    """A pool started from a process with threads uses the forkserver, which imports prelabel's reading modules
    once (prelabel.preload) with the math libraries' and jemalloc's threads off: it has one thread when it
    forks, and every worker forked from it has the engine, the adapters and pandas imported before it runs
    anything (a second pool's workers start at once)."""
    script = tmp_path / "pool.py"
    script.write_text(_FORKSERVER)
    (tmp_path / "probe.py").write_text(_PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    want = "['python']|['prelabel.engine.run', 'prelabel.adapters.yolo', 'prelabel.adapters.labelme', 'pandas']"
    assert out.stdout.splitlines() == ["forkserver", want, want]


# a user's data-prep script with no ``if __name__ == "__main__":`` guard, in a process with a thread (its pools
# use the forkserver): it says each time its body runs, then reads a folder in 2 worker processes
_UNGUARDED = """
import os, sys, threading
import prelabel
from prelabel.workers import start_method

threading.Thread(target=threading.Event().wait, daemon=True).start()
with open(sys.argv[1], "a") as log:
    log.write(f"{os.getpid()} {start_method()}\\n")
ds = prelabel.read(sys.argv[2], fmt="voc", workers=2)
print(len(ds.annotations), ds.report.input["format"])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forkserver is Linux's here")
@pytest.mark.parametrize("how", ["python prep.py", "python -m prep"])
def test_a_script_without_a_main_guard_runs_once(how: str, tmp_path: Path) -> None:
    """prelabel's workers never run the program's main module: a script with no main guard is not run again in
    each worker (its conversions and uploads with it), and the workers still read the parts."""
    from conftest import SAMPLE

    script = tmp_path / "prep.py"
    script.write_text(_UNGUARDED)
    log = tmp_path / "runs.log"
    run = [str(script)] if how == "python prep.py" else ["-m", "prep"]
    out = subprocess.run([sys.executable, *run, str(log), str(SAMPLE / "voc")], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = log.read_text().splitlines()
    assert [r.split()[1] for r in runs] == ["forkserver"], runs  # one run of the body, in the one process
    assert out.stdout.splitlines() == ["7 voc"]  # sample_data/voc: 7 objects in 5 files
