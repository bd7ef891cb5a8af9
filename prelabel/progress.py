"""A small progress facade: rich bars on a terminal, a plain line every few seconds in logs, nothing when quiet.

``progress(total, desc=..., enabled=...)`` is a context manager whose ``.advance(n)`` counts work done:

- ``enabled=False`` (the CLI's ``--quiet``): prints nothing at all;
- stderr is a terminal: a transient rich progress bar;
- stderr is not a terminal (CI logs, a pipe): a plain line ``"reading 500/2000 files"`` at most every
  ``interval`` seconds (2 s), plus a last line at the end when an earlier line was printed, so short runs
  stay silent and long ones show they are alive.

Adapters and steps call it with the work they know the size of; the caller decides ``enabled``.

Example:
    >>> import io
    >>> from prelabel.progress import progress
    >>> out = io.StringIO()
    >>> with progress(3, desc="reading", unit="files", stream=out, interval=0.0) as bar:
    ...     bar.advance()
    ...     bar.advance(2)
    >>> print(out.getvalue(), end="")
    reading 1/3 files
    reading 3/3 files
    >>> with progress(3, desc="reading", enabled=False) as bar:
    ...     bar.advance(3)
    >>> bar.done
    3
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

__all__ = ["Progress", "progress"]


class Progress:
    """Counts work done and shows it (see the module docstring). Use through :func:`progress`."""

    def __init__(self, total: int | None, *, desc: str, unit: str = "", enabled: bool = True,
                 stream: IO[str] | None = None, interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = None if total is None else max(0, int(total))
        self.desc = desc
        self.unit = unit
        self.done = 0
        self._stream = stream
        self._interval = float(interval)
        self._clock = clock
        self._enabled = enabled
        self._mode = "off"
        self._rich: Any = None
        self._task: Any = None
        self._last = 0.0
        self._printed = False
        self._printed_done = -1

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Progress:
        if not self._enabled:
            return self
        stream = self._stream if self._stream is not None else sys.stderr
        self._stream = stream
        if _is_terminal(stream):
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
                from rich.progress import Progress as RichProgress
            except ImportError:  # pragma: no cover - rich is a dependency
                self._mode = "plain"
            else:
                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TextColumn(self.unit), TimeRemainingColumn(),
                                          console=Console(file=stream), transient=True)
                self._rich.start()
                self._task = self._rich.add_task(self.desc, total=self.total)
                self._mode = "rich"
                return self
        self._mode = "plain"
        self._last = self._clock()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._mode == "rich":
            self._rich.stop()
        elif self._mode == "plain" and self._printed and exc_type is None and self._printed_done != self.done:
            self._line()
        self._mode = "off"

    # ------------------------------------------------------------------ counting
    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of work done."""
        self.done += int(n)
        if self._mode == "rich":
            self._rich.update(self._task, completed=self.done)
        elif self._mode == "plain":
            now = self._clock()
            if now - self._last >= self._interval:
                self._last = now
                self._line()

    def _line(self) -> None:
        if self._stream is None:  # pragma: no cover - set in __enter__
            return
        of = f"/{self.total}" if self.total is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        self._stream.write(f"{self.desc} {self.done}{of}{unit}\n")
        self._stream.flush()
        self._printed = True
        self._printed_done = self.done


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(total: int | None, *, desc: str, unit: str = "", enabled: bool = True,
             stream: IO[str] | None = None, interval: float = 2.0,
             clock: Callable[[], float] = time.monotonic) -> Progress:
    """A progress context manager for ``total`` units of work (None: unknown); call ``.advance(n)``.

    ``stream`` defaults to stderr; ``interval`` is the least time between two plain lines; ``clock`` is the
    time source (tests pass a fake one).
    """
    return Progress(total, desc=desc, unit=unit, enabled=enabled, stream=stream, interval=interval, clock=clock)
