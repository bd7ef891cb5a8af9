"""Read a streaming source in a child process while this one reconciles, clips and writes: both cores busy.

:class:`ChunkReader` runs an adapter's ``iter_chunks`` (see :mod:`prelabel.adapters.base`) either here or, for
a large input on a machine with several cores where ``fork`` exists, in a forked child that sends each chunk's
three tables through a pipe. The pipe holds little, so the child is at most a chunk or two ahead: memory
stays bounded. What the adapter puts in its report (counts, drops, notes) comes back at the end as
:attr:`ChunkReader.report`; errors come back as the same exception (a ReadError names the same file and line),
and ``NeedsWholeRead`` as itself. Progress reported by the adapter is forwarded.

Example:
    >>> from pathlib import Path
    >>> from prelabel.adapters import get
    >>> from prelabel.adapters.base import ReadOptions
    >>> csv = Path("sample_data/predictions/predictions.csv")
    >>> reader = ChunkReader(get("predictions"), csv, options=ReadOptions(), chunk_rows=2, child=True)
    >>> [len(annotations) for _images, _categories, annotations in reader]
    [2, 3, 2]
    >>> reader.report.read
    7
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from .adapters.base import NeedsWholeRead, ReadOptions
from .paths import at_least
from .report import Report
from .workers import die_with_parent, may_fork, wanted_workers

__all__ = ["CHILD_MIN_BYTES", "ChunkReader", "use_child"]

CHILD_MIN_BYTES = 8 * 2**20  # below this the fork and the pipe cost more than they save

Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def use_child(path: Path, adapter: Any = None, options: Any = None) -> bool:
    """Whether reading ``path`` in a child pays: several cores, ``fork``, at least CHILD_MIN_BYTES, and an
    ``adapter`` that reads on one core (no ``PARALLEL_READ = True``). The environment variable
    ``PRELABEL_READ_IN_CHILD`` (an alias of the one worker policy): ``0`` never, ``always`` whatever the size
    and the adapter; else ``workers`` / ``PRELABEL_WORKERS`` of 1 (:func:`prelabel.workers.wanted_workers`):
    never. Never in a process with more than one OS thread (:func:`prelabel.workers.may_fork`)."""
    if not may_fork():
        return False
    env = os.environ.get("PRELABEL_READ_IN_CHILD", "").lower()  # "0": never, "always": whatever the size
    if env in ("0", "no", "off", "false"):
        return False
    if env == "always":
        return True
    if wanted_workers(getattr(options, "extra", None) if options is not None else None) == 1:
        return False
    if getattr(adapter, "PARALLEL_READ", False):  # it keeps both cores busy itself (VOC's pool, YOLO's threads)
        return False
    return (os.cpu_count() or 1) >= 2 and at_least(path, CHILD_MIN_BYTES)


class ChunkReader:
    """Iterate over ``(images, categories, annotations)`` of each chunk; :attr:`report` is the adapter's
    report once the iteration ended. ``child``: read in a forked child (None: when :func:`use_child` says so)."""

    def __init__(self, adapter: Any, path: Path, *, options: ReadOptions, chunk_rows: int,
                 child: bool | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        self.adapter = adapter
        self.path = path
        self.options = options
        self.chunk_rows = chunk_rows
        self.child = use_child(path, adapter, options) if child is None else child
        self.progress = progress
        self.report = Report()

    def __iter__(self) -> Iterator[Tables]:
        if not self.child:
            opts = self._with_progress(self.progress)
            for ds in self.adapter.iter_chunks(self.path, options=opts, report=self.report,
                                               chunk_rows=self.chunk_rows):
                tables = ds.images, ds.categories, ds.annotations
                del ds  # nothing of this chunk is held here while the adapter reads the next one
                yield tables
                del tables
            return
        yield from self._from_child()

    def _with_progress(self, hook: Callable[[int, int], None] | None) -> ReadOptions:
        if hook is None:
            return self.options
        return replace(self.options, extra={**dict(self.options.extra or {}), "progress": hook})

    # ------------------------------------------------------------------ the child
    def _from_child(self) -> Iterator[Tables]:
        ctx = mp.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=self._child_main, args=(send, os.getpid()))  # not daemonic: it may fork workers itself
        proc.start()
        send.close()
        try:
            while True:
                try:
                    msg = receive.recv()
                except EOFError:
                    raise RuntimeError(f"reading {self.path} stopped: the reading process ended "
                                       f"(exit code {proc.exitcode})") from None
                kind = msg[0]
                if kind == "chunk":
                    yield msg[1], msg[2], msg[3]
                elif kind == "progress":
                    if self.progress is not None:
                        self.progress(msg[1], msg[2])
                elif kind == "done":
                    self.report = msg[1]
                    return
                elif kind == "whole":
                    raise NeedsWholeRead(msg[1])
                else:  # "error": the adapter's exception, rebuilt as it was
                    raise _rebuild(msg[1], msg[2], msg[3]) from None
        finally:
            receive.close()
            if proc.is_alive():
                proc.kill()
            proc.join()

    def _child_main(self, send: Any, parent: int) -> None:
        die_with_parent(parent)  # the parent killed: no reading on for nothing
        code = 0
        # the parent may have threads (a progress display) holding the locks of its stdout / stderr at the fork:
        # this process writes nothing there (its results and progress go through the pipe)
        sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed by os._exit
        try:
            def progress(done: int, total: int) -> None:
                send.send(("progress", done, total))

            rep = Report()
            opts = self._with_progress(progress if self.progress is not None else None)
            for ds in self.adapter.iter_chunks(self.path, options=opts, report=rep, chunk_rows=self.chunk_rows):
                send.send(("chunk", ds.images, ds.categories, ds.annotations))
                del ds
            send.send(("done", rep))
        except NeedsWholeRead as e:
            send.send(("whole", e.reason))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent, which raises it
            try:
                send.send(("error", type(e), e.args, dict(getattr(e, "__dict__", {}))))
            except Exception:  # noqa: BLE001 - an exception that does not pickle: its text and traceback
                text = "".join(traceback.format_exception(e))
                send.send(("error", RuntimeError, (f"reading {self.path} failed in the reading process:\n{text}",),
                           {}))
            code = 1
        finally:
            send.close()
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers twice


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    """The exception the child raised: same class, args and attributes (no __init__ call: its signature may
    differ from its args)."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc
