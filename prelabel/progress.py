"""A small progress facade: rich bars on a terminal, a plain line every few seconds in logs, nothing when quiet.

``progress(total, desc=..., enabled=...)`` is a context manager whose ``.advance(n)`` counts work done and whose
``.update(...)`` changes what it shows (total, description, unit, a note such as ``12 annotations applied``, an
ETA in seconds):

- ``enabled=False`` (the CLI's ``--quiet``): prints nothing at all;
- stderr is a terminal: a transient rich progress bar;
- stderr is not a terminal (CI logs, a pipe): a plain line ``"reading 500/2000 files"`` at most every
  ``interval`` seconds (2 s), plus a last line at the end when an earlier line was printed, so short runs
  stay silent and long ones show they are alive.

The environment can force the choice (the CLI's users, and tests, set it; an argument wins over it):

- ``PRELABEL_PROGRESS``: ``auto`` (the default: rich on a terminal, plain lines otherwise), ``rich``, ``plain``
  or ``off``;
- ``PRELABEL_PROGRESS_INTERVAL``: the least seconds between two plain lines (default 2; 0 prints every step).

:class:`Stages` is a ``hook(stage, done, total)`` callable over one line, for work made of named steps
(``convert: reading 120/500 files``, then ``convert: clipping``): :func:`prelabel.pipeline.convert` takes it as
its ``progress`` argument. Adapters and steps call it with the work they know the size of; the caller decides
``enabled``.

Example:
    >>> import io
    >>> from prelabel.progress import Stages, progress
    >>> out = io.StringIO()
    >>> with progress(3, desc="reading", unit="files", stream=out, interval=0.0, mode="plain") as bar:
    ...     bar.advance()
    ...     bar.advance(2)
    >>> print(out.getvalue(), end="")
    reading 1/3 files
    reading 3/3 files
    >>> out = io.StringIO()
    >>> with progress(3, desc="upload:", unit="shards", stream=out, interval=0.0, mode="plain") as bar:
    ...     bar.update(completed=1, note="12 annotations applied", eta=2.4)
    >>> print(out.getvalue(), end="")
    upload: 1/3 shards, 12 annotations applied, ETA 0:00:02
    >>> out = io.StringIO()
    >>> with Stages("convert", stream=out, interval=0.0, mode="plain") as hook:
    ...     hook("reading", 0, 2)
    ...     hook("reading", 2, 2)
    ...     hook("clipping")
    >>> print(out.getvalue(), end="")
    convert: reading 0/2 files
    convert: reading 2/2 files
    convert: clipping
    >>> with progress(3, desc="reading", enabled=False) as bar:
    ...     bar.advance(3)
    >>> bar.done
    3
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable, Mapping
from types import EllipsisType, TracebackType
from typing import IO, Any

__all__ = ["ENV_INTERVAL", "ENV_MODE", "MODES", "Progress", "Stages", "active", "format_eta", "progress"]

ENV_MODE = "PRELABEL_PROGRESS"
ENV_INTERVAL = "PRELABEL_PROGRESS_INTERVAL"
MODES = ("auto", "rich", "plain", "off")
DEFAULT_INTERVAL = 2.0


def _env_mode() -> str:
    m = os.environ.get(ENV_MODE, "").strip().lower()
    return m if m in MODES else "auto"


def _env_interval() -> float:
    raw = os.environ.get(ENV_INTERVAL, "").strip()
    try:
        v = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return v if v >= 0 else DEFAULT_INTERVAL


def active(enabled: bool = True, *, mode: str | None = None) -> bool:
    """Whether a progress display would show anything: ``enabled`` and the mode (argument, else
    ``PRELABEL_PROGRESS``) is not ``off``. Callers use it to pass no hook at all (zero cost) when it is off.

    >>> active(False), active(True, mode="off"), active(True, mode="plain")
    (False, False, True)
    """
    return bool(enabled) and (mode if mode is not None else _env_mode()) != "off"


def format_eta(seconds: float) -> str:
    """``h:mm:ss``, rounded to the second.

    >>> format_eta(2.4), format_eta(3725)
    ('0:00:02', '1:02:05')
    """
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class Progress:
    """Counts work done and shows it (see the module docstring). Use through :func:`progress`."""

    def __init__(self, total: int | None, *, desc: str, unit: str = "", enabled: bool = True,
                 stream: IO[str] | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, mode: str | None = None) -> None:
        self.total = None if total is None else max(0, int(total))
        self.desc = desc
        self.unit = unit
        self.note = ""
        self.eta: float | None = None
        self.done = 0
        self._stream = stream
        self._interval = float(interval) if interval is not None else _env_interval()
        self._clock = clock
        self._want = mode if mode is not None else _env_mode()
        if self._want not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {self._want!r}")
        self._enabled = enabled and self._want != "off"
        self._explicit_eta = False
        self._mode = "off"
        self._rich: Any = None
        self._task: Any = None
        self._last = 0.0
        self._printed = False
        self._last_line: str | None = None

    @property
    def mode(self) -> str:
        """What is showing now: ``rich``, ``plain`` or ``off`` (outside the ``with`` block: ``off``)."""
        return self._mode

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Progress:
        if not self._enabled:
            return self
        stream = self._stream if self._stream is not None else sys.stderr
        self._stream = stream
        if self._want == "rich" or (self._want == "auto" and _is_terminal(stream)):
            if self._start_rich(stream, force=self._want == "rich"):
                return self
        self._mode = "plain"
        self._last = self._clock()
        return self

    def _start_rich(self, stream: IO[str], *, force: bool) -> bool:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress
        except ImportError:  # pragma: no cover - rich is a dependency
            return False
        self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[note]}"),
                                  _eta_column(), console=Console(file=stream, force_terminal=force or None),
                                  transient=True)
        self._rich.start()
        self._task = self._rich.add_task(self.desc, total=self.total, completed=self.done, **self._fields())
        self._mode = "rich"
        return True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._mode == "rich":
            self._rich.stop()
        elif self._mode == "plain" and self._printed and exc_type is None and self._last_line != self.text():
            self._line()
        self._mode = "off"

    # ------------------------------------------------------------------ counting
    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of work done."""
        self.done += int(n)
        self._show()

    def update(self, *, completed: int | None = None, total: int | None | EllipsisType = ...,
               desc: str | None = None, unit: str | None = None, note: str | None = None,
               eta: float | None | EllipsisType = ...) -> None:
        """Set what is shown: units done, the total (None: unknown), the description, the unit, a note after
        the count (``12 annotations applied``) and the seconds left (None: not known yet). Omitted: unchanged."""
        if completed is not None:
            self.done = int(completed)
        if not isinstance(total, EllipsisType):
            self.total = None if total is None else max(0, int(total))
        if desc is not None:
            self.desc = desc
        if unit is not None:
            self.unit = unit
        if note is not None:
            self.note = note
        if not isinstance(eta, EllipsisType):
            self.eta = None if eta is None else float(eta)
            self._explicit_eta = True
        self._show()

    def echo(self, message: str) -> None:
        """Print a line for the user on the progress stream (stderr), above a live bar rather than into it."""
        if self._mode == "rich":
            self._rich.console.print(message, markup=False, highlight=False, soft_wrap=True)
            return
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(message + "\n")
        stream.flush()

    def text(self) -> str:
        """The plain line for the current state, e.g. ``upload: 1/3 shards, 12 annotations applied, ETA 0:00:02``."""
        s = self.desc
        if self.total is not None:
            s += f" {self.done}/{self.total}"
        elif self.done:
            s += f" {self.done}"
        if self.unit and (self.total is not None or self.done):
            s += f" {self.unit}"
        if self.note:
            s += f", {self.note}"
        if self.eta is not None and (self.total is None or self.done < self.total):
            s += f", ETA {format_eta(self.eta)}"
        return s

    def _fields(self) -> dict[str, Any]:
        return {"unit": self.unit, "note": f" {self.note}" if self.note else "",
                "eta": None if self.eta is None else format_eta(self.eta), "explicit_eta": self._explicit_eta}

    def _show(self) -> None:
        if self._mode == "rich":
            self._rich.update(self._task, completed=self.done, total=self.total, description=self.desc,
                              **self._fields())
        elif self._mode == "plain":
            now = self._clock()
            if now - self._last >= self._interval and self.text() != self._last_line:
                self._last = now
                self._line()

    def _line(self) -> None:
        if self._stream is None:  # pragma: no cover - set in __enter__
            return
        line = self.text()
        self._stream.write(line + "\n")
        self._stream.flush()
        self._printed = True
        self._last_line = line


def _eta_column() -> Any:
    """A rich column: the ETA given through ``update(eta=...)``, else rich's own estimate."""
    from rich.progress import ProgressColumn, Task, TimeRemainingColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self._estimate = TimeRemainingColumn()

        def render(self, task: Task) -> Any:
            if task.fields.get("explicit_eta"):
                eta = task.fields.get("eta")
                if not eta and task.total is not None and task.completed >= task.total:
                    return Text("")
                return Text(f"ETA {eta}" if eta else "ETA -:--:--", style="progress.remaining")
            return self._estimate.render(task)

    return EtaColumn()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(total: int | None, *, desc: str, unit: str = "", enabled: bool = True,
             stream: IO[str] | None = None, interval: float | None = None,
             clock: Callable[[], float] = time.monotonic, mode: str | None = None) -> Progress:
    """A progress context manager for ``total`` units of work (None: unknown); call ``.advance(n)``.

    ``stream`` defaults to stderr; ``interval`` is the least time between two plain lines (default:
    ``PRELABEL_PROGRESS_INTERVAL``, else 2 s); ``mode`` is ``auto``, ``rich``, ``plain`` or ``off`` (default:
    ``PRELABEL_PROGRESS``, else ``auto``); ``clock`` is the time source (tests pass a fake one).
    """
    return Progress(total, desc=desc, unit=unit, enabled=enabled, stream=stream, interval=interval, clock=clock,
                    mode=mode)


class Stages:
    """A ``hook(stage, done=0, total=None)`` over one progress line for work made of named steps.

    Each call gives the whole state: the stage's name (``reading``, ``reconciling``, ...), the units done and
    their total when known. Shown as ``JOB: STAGE DONE/TOTAL UNIT`` (``convert: reading 120/500 files``),
    the unit from ``units`` by stage name (default: ``files`` for ``reading`` and ``writing``, ``annotations``
    for ``streaming``: a big single file converted chunk by chunk). Use it as a
    context manager; the other keywords are those of :func:`progress`.
    """

    UNITS: Mapping[str, str] = {"reading": "files", "writing": "files", "streaming": "annotations"}

    def __init__(self, job: str, *, units: Mapping[str, str] | None = None, enabled: bool = True,
                 stream: IO[str] | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, mode: str | None = None) -> None:
        self.job = job
        self.units = dict(self.UNITS if units is None else units)
        self.bar = Progress(None, desc=job, enabled=enabled, stream=stream, interval=interval, clock=clock,
                            mode=mode)

    def __enter__(self) -> Stages:
        self.bar.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bar.__exit__(exc_type, exc, tb)

    def __call__(self, stage: str, done: int = 0, total: int | None = None) -> None:
        self.bar.update(desc=f"{self.job}: {stage}", unit=self.units.get(stage, ""), completed=done, total=total)
