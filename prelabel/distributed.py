"""The Dask engine: a source's partitions read, reconciled, clipped and serialized on the workers of a Dask cluster.

``prelabel convert SRC -o out.json --engine dask [--scheduler tcp://HOST:8786] [--workers N]``

How a source is split: by the adapter's own ``plan`` (:mod:`prelabel.adapters.parts`), each part read on a
worker by the adapter's ``read_part``, the parts merged in plan order (:func:`prelabel.adapters.parts.merge`):

- **YOLO** (a folder, a data.yaml, an obj.data, a list file): ``yolo.plan`` resolves the layout once, on the
  client (which images, which label file goes with each image, the class names, the images root), and cuts the
  images into contiguous runs in output order (label files without an image go with the first run); each worker
  reads its run's label files and image headers.
- **Pascal VOC** (a folder of XML files or a VOC root): ``voc.plan`` cuts the sorted XML files into contiguous
  runs (:class:`prelabel.adapters.parts.FilesPart`); each worker reads its runs with ``voc.read_part``.
- **One local file** (a CVAT XML, a Label Studio export, a prediction table, a LabelMe JSON, a COCO file whose
  annotations are in image order): cut by its adapter's ``plan`` into byte or row ranges at record boundaries
  (:class:`prelabel.adapters.parts.ByteRange`, ``RowRange``), 4 per worker and at least 2 MB each
  (``MIN_PART_BYTES``); each worker reads its ranges with the adapter's ``read_part``. A remote single file
  runs as one partition.

How a conversion runs (``prelabel convert --engine dask``, :func:`prelabel.convert` with ``engine="dask"``):
map-only (:func:`convert_parts`). Each partition is read, its sizes checked, its scores filtered, its rows
mapped to the agreed categories, clipped and serialized as COCO bytes on its worker; the client holds only
names, counts, reports and one partition's bytes at a time, which it appends to the file (or its shards) in
plan order. The category ids are agreed before any row is mapped: the client learns each partition's category
names and counts, in plan order, as the local loop meets them (:meth:`prelabel.converters.reconcile.Reconciler.learn`),
and every worker maps its rows with those decisions; the image and annotation ids of a partition start where
the partitions before it end. The output is byte-identical to the local engine's, report included.

How a read runs (:func:`read_dask`, :func:`prelabel.read` with ``engine="dask"``: the caller wants the Dataset):
each worker returns its partition's :class:`~prelabel.model.Dataset` (pickled DataFrames) with its part of the
report, and the client concatenates the parts in plan order (images appended, categories united by name in
first-seen order, reports merged, the notes about the whole source kept once).

Either way, when a part depends on the rest of the source (``NeedsWholeRead``: a Label Studio image named
by tasks of two parts), a file is malformed (``ReadError``) or an image is named in two partitions, the source is
read again as one partition, so the result (or the error) is the local one's. A YOLO pose source without ``kpt_shape`` (inferred from every pose row) is planned as one part.

Where the workers read: a local path must be visible at the same path on every worker (a shared file system);
an fsspec URL (``s3://...``) is read by each worker directly: the client downloads only the annotation files
(to plan the split; images are listed, not read), and each worker downloads its part's files (the annotation
files whole, the first 64 KiB of its images; see :mod:`prelabel.storage`) and reads the part there (the part's
``source`` names the worker's copy). Workers need prelabel installed (and ``s3fs`` etc.
for URLs) and the same credentials in their environment.

Without a scheduler address a local cluster is started: ``n_workers`` processes, one thread each, on
127.0.0.1 only, no dashboard.

Example:
    >>> from prelabel.distributed import partition_bounds
    >>> partition_bounds(10, 3)
    [(0, 4), (4, 7), (7, 10)]
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import adapters, storage
from .adapters.base import NeedsWholeRead, ReadOptions
from .adapters.parts import (
    FilesPart,
    Part,
    kind_order,
    merge_reports,
    merge_source,
    names_shared,
    read_one_part,
)
from .converters.coco_write import CocoStreamWriter, Piece, serialize_slices
from .converters.conventions import ConventionStats
from .converters.reconcile import Reconciler, Seen
from .converters.steps import ChunkSteps, size_rule
from .errors import PrelabelError, ReadError, UsageError
from .model import Dataset
from .paths import IMAGE_EXTENSIONS, moved
from .report import Report

__all__ = ["Converted", "convert_parts", "dask_client", "partition_bounds", "read_dask"]

MIN_PER_PARTITION = 200  # files: fewer per task and the scheduling costs more than the parsing
MIN_PART_BYTES = 2 * 2**20  # bytes of one file (CVAT XML, a Label Studio export, a table) a part at least
PARTITIONS_PER_WORKER = 4


def partition_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``(start, stop)`` runs covering ``range(n)`` (never an empty run)."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(parts):
        stop = start + q + (1 if i < r else 0)
        out.append((start, stop))
        start = stop
    return out


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, workers: int | None = None,
                processes: bool = True) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler``, or to a new local cluster that is closed after."""
    try:
        import distributed
    except ImportError:
        raise UsageError("--engine dask needs dask.distributed",
                         hint="pip install 'prelabel[dask]'") from None
    dist: Any = distributed  # untyped calls
    if scheduler:
        with dist.Client(scheduler, set_as_default=False) as client:
            yield client
        return
    n = int(workers or 2)
    if n < 1:
        raise UsageError(f"--workers must be at least 1, got {n}")
    # Everything listens on 127.0.0.1 only, on free ports, dashboard off: the scheduler's and the workers' small
    # HTTP servers (health checks) would otherwise take 0.0.0.0:8787. processes=False (threads, for tests)
    # talks over inproc://, which takes no host: the workers' HTTP servers are given 127.0.0.1:0, which
    # LocalCluster also takes as "start the worker dashboard"; the worker class turns that off again.
    where: dict[str, Any] = {"host": "127.0.0.1"}
    if not processes:
        class _Worker(dist.Worker):  # type: ignore[misc]  # distributed is untyped
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["dashboard"] = False
                super().__init__(*args, **kwargs)

        where = {"worker_dashboard_address": "127.0.0.1:0", "worker_class": _Worker}
    with dist.LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None,
                           scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                           silence_logs=40, **where) as cluster, \
            dist.Client(cluster, set_as_default=False) as client:
        yield client


def read_dask(src: str | Path, *, fmt: str | None = None, options: ReadOptions | None = None,
              storage_options: Mapping[str, Any] | None = None, scheduler: str | None = None,
              workers: int | None = None, processes: bool = True, client: Any = None,
              partitions: int | None = None) -> Dataset:
    """Read ``src`` on a Dask cluster (see the module docstring); the Dataset equals the local engine's.

    ``client``: an existing ``distributed.Client`` (else one is made from ``scheduler`` / ``workers``).
    ``partitions``: how many parts to split a file-per-image source into (default: 4 per worker, at least
    200 files each, a YOLO image and its label file counting as two).
    """
    opts = options or ReadOptions()
    if client is None:
        with dask_client(scheduler, workers=workers, processes=processes) as c:
            return _read(c, src, fmt, opts, storage_options, partitions)
    return _read(client, src, fmt, opts, storage_options, partitions)


def _read(client: Any, src: str | Path, fmt: str | None, opts: ReadOptions,
          storage_options: Mapping[str, Any] | None, partitions: int | None) -> Dataset:
    with contextlib.ExitStack() as stack:
        adapter, tasks, whole = _tasks(client, src, fmt, opts, storage_options, partitions, stack)
        futures = [client.submit(_guarded, fn, *args, pure=False) for fn, args in tasks]
        try:
            parts: list[Dataset] = _raised(client.gather(futures))
            if names_shared(adapter, parts):
                raise NeedsWholeRead("an image is named in two parts")
        except (NeedsWholeRead, ReadError):
            if tasks == [whole]:
                raise
            # a part depends on the rest of the source, or a file is malformed: read the source as one
            # partition (which raises read()'s own error)
            parts = _raised(client.gather([client.submit(_guarded, whole[0], *whole[1], pure=False)]))
    return merge_source(parts, adapter=adapter, source=src)


@dataclass
class Converted:
    """What :func:`convert_parts` leaves on the client: the reader's report (the parts' merged), the steps'
    records (the parts' in plan order), the conventions gathered, and how many partitions there were."""

    report: Report
    records: Report
    stats: ConventionStats
    partitions: int


def convert_parts(client: Any, src: str | Path, writer: CocoStreamWriter, reconciler: Reconciler, *,
                  steps: ChunkSteps, fmt: str | None = None, options: ReadOptions | None = None,
                  storage_options: Mapping[str, Any] | None = None, partitions: int | None = None) -> Converted:
    """Convert ``src`` map-only: each partition is read, checked, reconciled, clipped and turned into COCO bytes
    on its worker, and only names, counts, reports and the bytes reach the client, which appends them to
    ``writer`` in plan order. The output is byte for byte the local engine's.

    Three rounds, the partitions staying on the workers between them:

    1. read and :meth:`~prelabel.converters.steps.ChunkSteps.before` (sizes, conventions, score filter); the
       client gets each partition's category names and counts (:meth:`Reconciler.seen`), image file names,
       reader report and conventions, and decides every category in plan order (:meth:`Reconciler.learn`):
       the ids are agreed before any row is mapped;
    2. the rows mapped with those decisions and clipped; the client gets the counts of images and annotations
       left and the steps' records, and so each partition's first image and annotation id;
    3. each partition serialized with its ids (:func:`~prelabel.converters.coco_write.serialize`); the client
       appends the bytes one partition at a time.

    A partition that needs the rest of the source (``NeedsWholeRead``), a malformed file (``ReadError``) or an
    image name in two partitions makes the source be converted as one partition (the errors and the
    duplicate-name check then those of the local engine). With ``unknown="error"`` and rows of an unknown
    category, nothing is mapped or written: :meth:`Reconciler.finish` raises the local engine's error.
    """
    opts = options or ReadOptions()
    with contextlib.ExitStack() as stack:
        adapter, tasks, whole = _tasks(client, src, fmt, opts, storage_options, partitions, stack)
        each = replace(steps, relative=size_rule(adapter))
        try:
            held, seen = _first_round(client, tasks, each)
        except (NeedsWholeRead, ReadError):
            if tasks == [whole]:
                raise
            tasks = [whole]
            held, seen = _first_round(client, tasks, each)
    stats = ConventionStats()
    for got in seen:
        reconciler.learn(got.seen)
        stats.merge(got.stats)
    report = merge_reports([got.report for got in seen], kind_order=kind_order(adapter))
    report.input = {"format": adapter.NAME, "source": str(src)}
    records = Report()
    if reconciler.unknown_seen:
        return Converted(report, records, stats, len(tasks))
    mapped = [client.submit(_second, h, reconciler, each, pure=False) for h in held]
    del held
    counts: list[tuple[int, int, Report]] = client.gather([client.submit(_counts, m, pure=False) for m in mapped])
    pieces = []
    image_base, annotation_base = writer.n_images, writer.n_annotations
    for m, (n_images, n_annotations, part_records) in zip(mapped, counts, strict=True):
        records.merge(part_records)
        pieces.append(client.submit(_pieces, m, image_base, annotation_base, writer.rle, writer.info,
                                    writer.allow_outside, pure=False))
        image_base += n_images
        annotation_base += n_annotations
    del mapped
    for k in range(len(pieces)):  # one partition's bytes on the client at a time
        for piece in pieces[k].result():
            writer.add_piece(piece)
        pieces[k] = None
    return Converted(report, records, stats, len(tasks))


@dataclass
class _Held:
    """A partition kept on its worker between the rounds: its rows (their report: the steps' records), the
    reader's report, the conventions gathered."""

    ds: Dataset
    report: Report
    stats: ConventionStats


@dataclass
class _Seen:
    """What the client learns of a partition in the first round."""

    seen: Seen
    file_names: list[str]
    report: Report
    stats: ConventionStats


def _first_round(client: Any, tasks: list[Task], steps: ChunkSteps) -> tuple[list[Any], list[_Seen]]:
    reads = [client.submit(_guarded, fn, *args, pure=False) for fn, args in tasks]
    held = [client.submit(_first, r, steps, pure=False) for r in reads]
    del reads
    seen: list[_Seen] = _raised(client.gather([client.submit(_seen, h, pure=False) for h in held]))
    names: set[str] = set()
    for got in seen:
        if not names.isdisjoint(got.file_names):
            raise NeedsWholeRead("an image is named in two parts")
        names.update(got.file_names)
    return held, seen


def _first(ds: Dataset | _Refused, steps: ChunkSteps) -> _Held | _Refused:
    if isinstance(ds, _Refused):
        return ds
    stats = ConventionStats()
    chunk = Dataset(images=ds.images, categories=ds.categories, annotations=ds.annotations, report=Report())
    return _Held(steps.before(chunk, stats), ds.report, stats)


def _seen(held: _Held | _Refused) -> _Seen | _Refused:
    if isinstance(held, _Refused):
        return held
    return _Seen(Reconciler.seen(held.ds), [str(n) for n in held.ds.images["file_name"]], held.report, held.stats)


def _second(held: _Held, reconciler: Reconciler, steps: ChunkSteps) -> Dataset:
    return steps.after(reconciler.apply(held.ds, learnt=True))


def _counts(ds: Dataset) -> tuple[int, int, Report]:
    return len(ds.images), len(ds.annotations), ds.report


def _pieces(ds: Dataset, image_base: int, annotation_base: int, rle: str, info: Mapping[str, Any] | None,
            allow_outside: bool) -> list[Piece]:
    return list(serialize_slices(ds, image_base=image_base, annotation_base=annotation_base, rle=rle, info=info,
                                 allow_outside=allow_outside, seen_names={}))


def _tasks(client: Any, src: str | Path, fmt: str | None, opts: ReadOptions,
           storage_options: Mapping[str, Any] | None, partitions: int | None,
           stack: contextlib.ExitStack[Any]) -> tuple[Any, list[Task], Task]:
    """The adapter, the tasks that read the source's partitions, and the task that reads it as one (what the
    others fall back to). A remote source's local skeleton is removed when ``stack`` closes."""
    remote = storage.is_url(src)
    if storage.is_url(opts.images) and not storage.is_url(src):
        raise UsageError("--images as a URL needs the source to be a URL too with --engine dask",
                         hint="put the images under the source folder, or use the local engine")
    skeleton: storage.Localized | None = None
    if remote:
        # annotation files only: images are listed (empty placeholders), their headers are read by the workers
        skeleton = storage.localize(str(src), storage_options=storage_options, placeholders=True,
                                    select=lambda rel: not _is_image(rel))
        stack.callback(skeleton.cleanup)
        local = skeleton.path
    else:
        local = Path(storage._local_path(str(src)))
    adapter: Any = adapters.get(fmt or adapters.detect(local))  # plan and read_part are optional
    whole: Task = (_read_whole, (str(src), adapter.NAME, opts, dict(storage_options or {})))
    tasks: list[Task] = [whole]
    if _splits(adapter, local, remote):
        try:
            tasks = _plan(adapter, local, opts, client, partitions, skeleton, storage_options) or [whole]
        except ReadError:  # the whole read raises it, in its own words
            tasks = [whole]
    return adapter, tasks, whole


def _splits(adapter: Any, local: Path, remote: bool) -> bool:
    """Whether the source is split into parts: an adapter with a ``plan``, and a folder of files, a YOLO
    data.yaml / obj.data / list file, or one local file (cut into byte or row ranges; a remote file is read
    whole, by one worker)."""
    if not hasattr(adapter, "plan"):
        return False
    if local.is_dir():
        return True
    if adapter.NAME == "yolo":
        return local.suffix.lower() in (".yaml", ".yml", ".data", ".txt")
    return adapter.NAME != "voc" and not remote and local.is_file()


def _is_image(rel: str) -> bool:
    return posixpath.splitext(rel)[1].lower() in IMAGE_EXTENSIONS


Task = tuple[Callable[..., Dataset], tuple[Any, ...]]


def _plan(adapter: Any, local: Path, opts: ReadOptions, client: Any, partitions: int | None, skeleton: Any,
          storage_options: Mapping[str, Any] | None) -> list[Task]:
    """The adapter's own plan (``plan`` / ``read_part``): one task a part. The parts are cut as many as the
    cluster wants (4 per worker, at least 200 files each, or ``partitions``): the plan is made once for the most
    parts, and made again for fewer when the source has fewer files."""
    most = max(1, int(partitions)) if partitions is not None else \
        max(1, len(client.scheduler_info().get("workers", {}))) * PARTITIONS_PER_WORKER
    plan: list[Part] = adapter.plan(local, options=opts, parts=most)
    files = [p for p in plan if isinstance(p, FilesPart)]
    if len(files) == len(plan):  # runs of files: at least MIN_PER_PARTITION files a part
        n_files = sum(len(p.files) for p in files)
        if not n_files:  # nothing to split: one partition
            return []
        want = max(1, min(most, n_files // MIN_PER_PARTITION)) if partitions is None else min(most, n_files)
    else:  # byte or row ranges of one file: at least MIN_PART_BYTES a part
        want = max(1, min(most, local.stat().st_size // MIN_PART_BYTES)) if partitions is None else most
    if want < len(plan):
        plan = adapter.plan(local, options=opts, parts=want)
    if skeleton is None:  # each worker reads its parts where the client planned them (a shared file system)
        return [(read_one_part, (adapter.NAME, p, opts)) for p in plan]
    if len(files) != len(plan):  # ranges of a remote file: one partition reads it whole
        return []
    work = str(skeleton.workdir)
    images_by_stem: dict[str, list[str]] = {}
    if adapter.NAME == "voc":
        # images whose stem is an XML file's stem get header stand-ins on that part's worker; the others are
        # empty placeholders (listed, so the image-existence checks agree, but never read)
        for dirpath, _, filenames in os.walk(work):
            for fn in filenames:
                if _is_image(fn):
                    images_by_stem.setdefault(os.path.splitext(fn)[0], []).append(
                        _rel_to(os.path.join(dirpath, fn), work))
    tasks: list[Task] = []
    for p in files:
        base = _rel_to(p.source, work)
        keys = [f"{base}/{f}" if base != "." else f for f in p.files]
        if adapter.NAME == "voc":
            for f in p.files:
                keys += images_by_stem.get(posixpath.splitext(posixpath.basename(f))[0], [])
        tasks.append((_read_remote_part, (adapter.NAME, p, opts, skeleton.url, sorted(set(keys)), work,
                                          adapter.NAME == "voc", dict(storage_options or {}))))
    return tasks


def _rel_to(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


# ------------------------------------------------------------------------------------------- on the workers
@dataclass
class _Refused:
    """A part's read that raised one of prelabel's own errors (``NeedsWholeRead`` when a part cannot stand
    alone, a ``ReadError`` for a malformed file), returned as a value: the client raises it (and falls back to
    the whole source where it should), and the worker logs no failed task for what is a planned outcome."""

    error: PrelabelError | NeedsWholeRead


def _guarded(fn: Callable[..., Dataset], *args: Any) -> Dataset | _Refused:
    try:
        return fn(*args)
    except (PrelabelError, NeedsWholeRead) as e:
        return _Refused(e)


def _raised(got: list[Any]) -> list[Any]:
    """``got`` (the parts' results, in plan order), or the first part's error raised."""
    for g in got:
        if isinstance(g, _Refused):
            raise g.error
    return got


def _worker_copy(url: str, keys: Sequence[str], storage_options: Mapping[str, Any] | None,
                 placeholders: bool) -> Any:
    wanted = frozenset(keys)
    return storage.localize(url, storage_options=storage_options, select=wanted.__contains__,
                            placeholders=placeholders)


def _read_remote_part(name: str, part: FilesPart, opts: ReadOptions, url: str, keys: Sequence[str],
                      client_work: str, placeholders: bool, storage_options: Mapping[str, Any] | None) -> Dataset:
    """One part of a remote source's plan: its files copied to this worker (images: their headers; with
    ``placeholders``, the other files of the source listed as empty stand-ins), read there."""
    with _worker_copy(url, keys, storage_options, placeholders) as loc:
        ds = read_one_part(name, replace(part, source=moved(part.source, client_work, str(loc.workdir))), opts)
        out: Dataset = storage.relabel(ds, [loc])
        return out


def _read_whole(src: str, name: str, opts: ReadOptions, storage_options: Mapping[str, Any]) -> Dataset:
    """A whole source as one partition (single-file formats; a source whose parts need the whole source)."""
    got: Dataset = storage.read_source(src, fmt=name or None, options=opts, storage_options=storage_options)
    return got



