"""Running an adapter's parts: in this process, in a process pool, or on Dask; concatenated in plan order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import adapters, storage
from ..adapters.base import NeedsWholeRead, ReadOptions
from ..adapters.parts import FilesPart, Part, merge_source, names_shared, read_one_part
from ..distributed import read_dask
from ..errors import ReadError, UsageError
from ..model import Dataset
from ..workers import may_start_processes, process_pool, usable_cores, wanted_workers

__all__ = ["ENGINES", "OLD_SWITCHES", "counted", "hook", "how_many", "portable", "read_one_part", "read_parts", "with_workers"]

ENGINES = ("local", "dask")
# the formats' old worker switches, kept as aliases of ``workers`` for users' scripts (read only for their format)
OLD_SWITCHES = {"voc": ("voc_workers",), "cvat": ("cvat_workers",), "labelstudio": ("ls_workers",)}


def with_workers(options: ReadOptions, workers: int | None) -> ReadOptions:
    """``options`` with the worker count ``workers`` (None: unchanged, the policy decides).

    >>> with_workers(ReadOptions(), 2).extra["workers"]
    2
    """
    if workers is None:
        return options
    return replace(options, extra={**dict(options.extra or {}), "workers": workers})


def portable(options: ReadOptions) -> ReadOptions:
    """``options`` as a worker process gets them: no callable in ``extra`` (a progress hook lives in this
    process only)."""
    extra = {k: v for k, v in dict(options.extra or {}).items() if not callable(v)}
    return replace(options, extra=extra)


def how_many(adapter: Any, path: Path, options: ReadOptions, workers: int | None = None) -> int:
    """The processes to read ``path`` with: ``workers`` if given, else the worker policy's count
    (:func:`prelabel.workers.wanted_workers`), else the adapter's own rule for this source (``auto_workers``,
    capped by the cores this process may use and 1 where no process may start); 1 for an adapter without a
    ``plan`` (its source is one part).

    >>> from prelabel import adapters
    >>> how_many(adapters.get("coco"), Path("sample_data/coco/instances.json"), ReadOptions(), 4)
    4
    >>> how_many(adapters.get("voc"), Path("sample_data/voc"), ReadOptions(), None)  # 5 files: auto_workers 1
    1
    """
    if not hasattr(adapter, "plan"):
        return 1
    asked = workers if workers is not None else wanted_workers(options.extra, *OLD_SWITCHES.get(adapter.NAME, ()))
    if asked is not None:
        return max(1, asked)
    auto = getattr(adapter, "auto_workers", None)
    if auto is None or not may_start_processes():
        return 1
    return max(1, min(int(auto(path, options=options)), usable_cores()))


def _read_whole(adapter: Any, path: Path, options: ReadOptions) -> Dataset:
    whole: Dataset = storage.read_source(path, fmt=adapter.NAME, options=options)
    return whole


def counted(parts: Sequence[Part], results: Iterable[Dataset],
            progress: Callable[[int, int], None] | None) -> Iterator[Dataset]:
    """``results`` (the parts' datasets, in plan order) passed on, calling ``progress(done, total)`` with the
    files read so far when the plan is runs of files (a file cut in ranges has no file count to show)."""
    files = [len(p.files) for p in parts if isinstance(p, FilesPart)]
    if progress is None or len(files) != len(parts):
        yield from results
        return
    done, total = 0, sum(files)
    progress(0, total)
    for n, ds in zip(files, results, strict=True):
        done += n
        progress(done, total)
        yield ds


def hook(options: ReadOptions) -> Callable[[int, int], None] | None:
    """The per-file progress hook the pipeline put in ``options.extra["progress"]``, if any."""
    got = dict(options.extra or {}).get("progress")
    return got if callable(got) else None


def _run_local(name: str, parts: Sequence[Part], options: ReadOptions, workers: int,
               progress: Callable[[int, int], None] | None) -> list[Dataset]:
    pool = process_pool(min(workers, len(parts)))
    if pool is None:  # one worker, one part, or no process can start here: read them in this one
        return list(counted(parts, (read_one_part(name, p, options) for p in parts), progress))
    try:
        return list(counted(parts, pool.map(read_one_part, [name] * len(parts), parts, [options] * len(parts)),
                            progress))
    except (OSError, BrokenProcessPool):
        return [read_one_part(name, p, options) for p in parts]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_parts(src: str | Path, *, fmt: str | None = None, options: ReadOptions | None = None,
               workers: int | None = None, engine: str = "local", client: Any = None) -> Dataset:
    """Read ``src`` part by part (the adapter's ``plan`` and ``read_part``) and concatenate the parts in plan
    order: the dataset and report of the adapter's ``read``. An adapter without ``plan`` reads the source as
    one part, and so does a source whose part raises :class:`~prelabel.adapters.base.NeedsWholeRead` (it
    depends on the rest of the source) or a :class:`~prelabel.errors.ReadError` (the whole read raises
    ``read()``'s own error). ``workers``: processes (None: :func:`how_many`); ``engine="dask"`` runs the parts on
    ``client`` (a ``dask.distributed.Client``), each worker reading its own parts
    (:func:`prelabel.distributed.read_dask`, ``workers`` partitions).

    >>> ds = read_parts("sample_data/voc", fmt="voc", workers=2)
    >>> ds.report.input["format"]
    'voc'
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", hint="use one of: " + ", ".join(ENGINES))
    path = Path(src)
    adapter = adapters.get(fmt or adapters.detect(path))
    opts = options or ReadOptions()
    if engine == "dask":  # the Dask engine's read (prelabel.distributed), in ``workers`` partitions
        if client is None:
            raise UsageError("engine='dask' needs a client", hint="pass client=prelabel.distributed.dask_client()")
        return read_dask(path, fmt=adapter.NAME, options=opts, client=client,
                         partitions=workers if workers is not None else (wanted_workers(opts.extra) or 1))
    if not hasattr(adapter, "plan"):
        return _read_whole(adapter, path, opts)
    n = how_many(adapter, path, opts, workers)
    if n <= 1:
        return _read_whole(adapter, path, opts)
    parts: list[Part] = adapter.plan(path, options=opts, parts=n)
    part_opts = portable(opts)
    try:
        results = _run_local(adapter.NAME, parts, part_opts, n, hook(opts))
        if names_shared(adapter, results):
            raise NeedsWholeRead("an image is named in two parts")
    except (NeedsWholeRead, ReadError):
        # a part that depends on the rest of the source (NeedsWholeRead), or a malformed file: the whole read
        # decides, and raises the error read() raises (the first in its own order, which may be another part's)
        return _read_whole(adapter, path, opts)
    return merge_source(results, adapter=adapter, source=path)
