"""Forked workers: started with a shared memory block, dying with the process that forked them.

The readers fork workers (a CVAT or Label Studio file parsed on both cores, the reading child of
:mod:`prelabel.prefetch`). When their parent is killed, a worker would go on parsing for nothing; Linux can
send it SIGKILL when its parent ends (``PR_SET_PDEATHSIG``). Elsewhere this does nothing. Use, in the worker
right after the fork: ``die_with_parent(parent_pid_taken_before_the_fork)`` (tests/test_workers.py).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
import warnings
from collections.abc import Callable

__all__ = ["die_with_parent", "fork_worker", "stop_worker"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent ends; exit at once if ``parent`` already ended."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def fork_worker(shm_size: int, work: Callable[[mmap.mmap], None]) -> tuple[int, mmap.mmap] | None:
    """Fork a worker that runs ``work(shm)`` on an anonymous shared memory block of ``shm_size`` bytes and exits
    (code 0, or 1 on any exception: the caller then does that part itself). Returns (pid, shm), or None when
    the memory or the process cannot be had. The worker dies with this process and cleans nothing up."""
    try:
        shm = mmap.mmap(-1, shm_size)  # pages are used as they are written
    except (OSError, ValueError):
        return None
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns of native (idle BLAS) threads: the worker uses none
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
            parent = os.getpid()
            pid = os.fork()
    except OSError:
        shm.close()
        return None
    if pid == 0:  # the worker: never returns
        code = 1
        try:
            die_with_parent(parent)
            work(shm)
            code = 0
        finally:
            os._exit(code)  # no clean-up: the parent owns everything (and freeing the objects takes time)
    return pid, shm


def stop_worker(pid: int) -> None:
    """Kill a worker and reap it (nothing happens when it is already gone)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
