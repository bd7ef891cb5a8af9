"""What a forked worker process does first: die with the process that forked it.

The readers fork workers (a CVAT or Label Studio file parsed on both cores, the reading child of
:mod:`prelabel.prefetch`). When their parent is killed, a worker would go on parsing for nothing; Linux can
send it SIGKILL when its parent ends (``PR_SET_PDEATHSIG``). Elsewhere this does nothing. Use, in the worker
right after the fork: ``die_with_parent(parent_pid_taken_before_the_fork)`` (tests/test_workers.py).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent"]

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
