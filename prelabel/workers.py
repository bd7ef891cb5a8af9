"""Worker processes: the one worker policy, explicit start methods, and forked workers that die with their parent.

The policy (:func:`wanted_workers`): ``workers`` (Python ``workers=N``, ``convert --workers N``) first, then
the old per-format switches (``voc_workers``, ``ls_workers``, ``cvat_workers``) kept as aliases, then the
environment (``PRELABEL_WORKERS``, then the old ``PRELABEL_CVAT_WORKERS``). Start methods are explicit
(:func:`start_method`): ``fork`` only when this process has one OS thread (Linux counts ``/proc/self/task``,
native BLAS threads included), else ``forkserver`` (or ``spawn`` where it does not exist). Every process is the
engine's (:mod:`prelabel.engine`: a pool of :func:`process_pool`); no reader forks one of its own.
A forkserver's workers start with prelabel, numpy and pandas already imported (:mod:`prelabel.preload`,
imported once by the forkserver, with numpy's and pyarrow's threads turned off there), and no worker runs the
program's main module (a script without a main guard is not run again in each worker).

A process forked by hand would go on working when its parent is killed; Linux can send it SIGKILL when its
parent ends (``PR_SET_PDEATHSIG``): ``die_with_parent(parent_pid_taken_before_the_fork)`` in the child right
after the fork (tests/test_workers.py). Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from importlib.machinery import ModuleSpec
from typing import Any

try:
    from multiprocessing import forkserver as _forkserver
except ImportError:  # a platform without it: spawn is used
    _forkserver = None  # type: ignore[assignment]

__all__ = ["WORKERS_ENV", "die_with_parent", "may_fork", "may_start_processes", "os_threads", "process_pool",
           "start_method", "usable_cores", "wanted_workers"]

WORKERS_ENV = "PRELABEL_WORKERS"
_OLD_ENV = ("PRELABEL_CVAT_WORKERS",)  # aliases of PRELABEL_WORKERS, kept for users' scripts


def _as_count(value: Any) -> int | None:
    """A worker count from a switch: an int >= 1 (anything else that is not empty counts as 1)."""
    if value is None or value == "":
        return None
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def wanted_workers(extra: Mapping[str, Any] | None, *aliases: str) -> int | None:
    """The worker count asked for, or None (let the reader decide by the input's size).

    ``extra["workers"]`` first, then the format's old switches named in ``aliases`` (``"voc_workers"``...),
    then ``PRELABEL_WORKERS``, then ``PRELABEL_CVAT_WORKERS``. 1 means one process, no worker at all.

    >>> wanted_workers({"voc_workers": 3}, "voc_workers")
    3
    >>> wanted_workers({"workers": 1, "voc_workers": 3}, "voc_workers")
    1
    """
    extra = extra or {}
    for key in ("workers", *aliases):
        got = _as_count(extra.get(key))
        if got is not None:
            return got
    for env in (WORKERS_ENV, *_OLD_ENV):
        got = _as_count(os.environ.get(env))
        if got is not None:
            return got
    return None


def os_threads() -> int:
    """The OS threads of this process: ``/proc/self/task`` on Linux (native BLAS threads count), else the
    Python threads (``threading.active_count``)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def may_fork() -> bool:
    """Whether this process may be forked: Linux, ``os.fork``, and one OS thread (a forked copy of a threaded
    process may inherit a lock held by a thread that does not exist in the copy)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and os_threads() == 1


def start_method() -> str:
    """``fork`` when :func:`may_fork`, else ``forkserver`` where it exists, else ``spawn``; never the platform
    default (which is ``forkserver`` from Python 3.14 on Linux, ``spawn`` on macOS and Windows)."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and may_fork():
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def may_start_processes() -> bool:
    """Whether this process may start worker processes: not a daemonic process (a pool's worker, the
    streaming reader's child), which cannot have children."""
    return not mp.current_process().daemon


def process_pool(workers: int, *, least: int = 2) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` processes started with :func:`start_method`, or None when fewer than ``least``
    are asked (1 is this process's own work, unless ``least=1``: one process reading ahead of this one) or no
    process can start here (a daemonic process, a sandbox, limits): the caller then does the work itself."""
    if workers < max(1, least) or not may_start_processes():
        return None
    method = start_method()
    if method == "forkserver":
        _preload()
    try:
        return _Pool(max_workers=workers, mp_context=mp.get_context(method))
    except (OSError, ValueError):
        return None


class _Pool(ProcessPoolExecutor):
    """A process pool whose workers never run the program's main module.

    A worker started by the forkserver or spawned imports ``__main__`` first (it runs the user's script again
    as ``__mp_main__``), so that functions defined there can be called in it. prelabel's workers only run
    prelabel's functions; a data-prep script without an ``if __name__ == "__main__":`` guard would otherwise
    run again, whole, in every worker: its conversions, and its uploads to a project. Each worker is started
    with ``__main__`` marked as a module named ``__main__``, which :mod:`multiprocessing` leaves alone."""

    def _spawn_process(self) -> None:  # the one place a worker is started (a private hook of the stdlib's pool)
        start = super()._spawn_process  # type: ignore[misc]
        main = sys.modules.get("__main__")
        if main is None:
            start()
            return
        spec = getattr(main, "__spec__", None)  # None for a script, the module's for ``python -m module``
        main.__spec__ = ModuleSpec("__main__", None)
        try:
            start()
        finally:
            main.__spec__ = spec


PRELOAD = "prelabel.preload"


def _preload() -> None:
    """Have the forkserver import prelabel's reading modules once (:mod:`prelabel.preload`), so that each
    worker forked from it starts with them: asked before the forkserver starts, and only when the program has
    not set a preload list of its own. The default list, ``['__main__']``, is replaced: the forkserver imports
    ``__main__`` before any other module of the list, and a main module that imports numpy or pandas would
    start threads in it before the preload could turn them off (and the workers do not import it either:
    :class:`_Pool`)."""
    server = getattr(_forkserver, "_forkserver", None)
    if getattr(server, "_preload_modules", None) == ["__main__"]:
        mp.get_context("forkserver").set_forkserver_preload([PRELOAD])


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
