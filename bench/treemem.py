"""The memory a command really uses: the peak of the summed PSS of its whole process tree, sampled.

``ru_maxrss`` (wait4) is the peak of the largest single process, so a tool that forks workers or a reading
process looks smaller than it is. PSS (proportional set size, /proc/PID/smaps_rollup) splits the pages that
forked processes share, so summing it over the tree counts each page once. Linux only.
"""

from __future__ import annotations

import os
import threading


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreePeak:
    """Sample the summed PSS of ``pid``'s tree every ``interval`` seconds until :meth:`stop`; ``mib`` is the
    peak seen."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak_kb = max(self.peak_kb, sum(pss_kb(p) for p in tree(self.pid)))

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak_kb / 1024.0
