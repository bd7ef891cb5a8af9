"""The Dask engine: read a source's files on the workers of a Dask cluster, then reconcile and write as usual.

``prelabel convert SRC -o out.json --engine dask [--scheduler tcp://HOST:8786] [--workers N]``

How a source is split:

- **YOLO** (a folder, a data.yaml, an obj.data, a list file): the client resolves the layout once (which images,
  which label file goes with each image, the class names), splits the images into contiguous runs in output
  order, and each worker reads its run's label files and image headers (the adapter's own parsing, on its part
  of the files). Label files without an image go with the last run.
- **Pascal VOC** (a folder of XML files or a VOC root): the adapter's ``plan`` cuts the sorted XML files into
  contiguous runs (:class:`prelabel.adapters.parts.FilesPart`); each worker reads its runs with
  ``voc.read_part`` (Dask map-only; the client concatenates with :func:`prelabel.adapters.parts.merge`).
- **CVAT, Label Studio, COCO and prediction tables** are one file each: they run as one partition, on one
  worker.

Each worker returns a :class:`~prelabel.model.Dataset` (pickled DataFrames) with its part of the report. The
client concatenates the parts in the original file order (:meth:`Dataset.concat`: images appended, categories
united by name in first-seen order, reports merged), then runs the normal reconcile, clip and write: category
ids are given once, on the client, so they agree everywhere, and the output is byte-identical to the local
engine's. Two YOLO inferences look at the whole dataset (files whose rows are all 9-11 numbers are polygons
only when the rest of the dataset is; an inferred ``kpt_shape``): when a part needed either, the source is read
again as one partition, so the result still matches.

Where the workers read: a local path must be visible at the same path on every worker (a shared file system);
an fsspec URL (``s3://...``) is read by each worker directly: the client downloads only the annotation files
(to plan the split; images are listed, not read), and each worker downloads its own annotation files and the
first 64 KiB of its own images (see :mod:`prelabel.storage`). Workers need prelabel installed (and ``s3fs`` etc.
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
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import adapters, storage
from .adapters import voc, yolo
from .adapters.base import ReadOptions
from .adapters.parts import FilesPart, merge
from .errors import ReadError, UsageError
from .model import Dataset
from .paths import IMAGE_EXTENSIONS
from .report import Report

__all__ = ["dask_client", "partition_bounds", "read_dask"]

MIN_PER_PARTITION = 200  # files: fewer per task and the scheduling costs more than the parsing
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
    200 files each).
    """
    opts = options or ReadOptions()
    if client is None:
        with dask_client(scheduler, workers=workers, processes=processes) as c:
            return _read(c, src, fmt, opts, storage_options, partitions)
    return _read(client, src, fmt, opts, storage_options, partitions)


# ------------------------------------------------------------------------------------------- planning
def _n_parts(client: Any, n_files: int, partitions: int | None) -> int:
    if partitions is not None:
        return max(1, min(int(partitions), n_files))
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    return max(1, min(n_workers * PARTITIONS_PER_WORKER, n_files // MIN_PER_PARTITION))


def _read(client: Any, src: str | Path, fmt: str | None, opts: ReadOptions,
          storage_options: Mapping[str, Any] | None, partitions: int | None) -> Dataset:
    remote = storage.is_url(src)
    if storage.is_url(opts.images) and not storage.is_url(src):
        raise UsageError("--images as a URL needs the source to be a URL too with --engine dask",
                         hint="put the images under the source folder, or use the local engine")
    skeleton: storage.Localized | None = None
    try:
        if remote:
            # annotation files only: images are listed (empty placeholders), their headers are read by the workers
            skeleton = storage.localize(str(src), storage_options=storage_options, placeholders=True,
                                        select=lambda rel: not _is_image(rel))
            local = skeleton.path
        else:
            local = Path(storage._local_path(str(src)))
        name = adapters.get(fmt or adapters.detect(local)).NAME
        layout_report = Report()
        if name == "yolo" and (local.is_dir() or local.suffix.lower() in (".yaml", ".yml", ".data", ".txt")):
            tasks = _plan_yolo(local, opts, layout_report, client, partitions, skeleton, storage_options)
        elif name == "voc" and local.is_dir():
            tasks = _plan_voc(local, opts, client, partitions, skeleton, storage_options)
        else:
            tasks = [(_read_whole, (str(src), name, opts, dict(storage_options or {}), remote))]
        futures = [client.submit(fn, *args, pure=False) for fn, args in tasks]
        parts: list[Dataset] = client.gather(futures)
        if name == "yolo" and len(parts) > 1 and _needs_whole_yolo(parts):
            # an inference over the whole dataset differs between parts: read it as one partition
            layout_report = Report()
            fut = client.submit(_read_whole, str(src), name, opts, dict(storage_options or {}), remote, pure=False)
            parts = [client.gather(fut)]
    finally:
        if skeleton is not None:
            skeleton.cleanup()
    layout_report.input = {"format": name, "source": str(src)}
    ds = merge(parts, report=layout_report, kind_order=list(yolo.KIND_NAMES.values()))
    ds.report.input = {"format": name, "source": str(src)}
    return ds


def _is_image(rel: str) -> bool:
    return posixpath.splitext(rel)[1].lower() in IMAGE_EXTENSIONS


Task = tuple[Callable[..., Dataset], tuple[Any, ...]]


def _plan_yolo(local: Path, opts: ReadOptions, report: Report, client: Any, partitions: int | None,
               skeleton: Any, storage_options: Mapping[str, Any] | None) -> list[Task]:
    lay = yolo._layout(local, opts, report)
    cfg = yolo._config(lay, opts)
    roots = ([yolo._norm(opts.images)] if opts.images is not None else []) + lay.image_roots
    img_root = yolo._images_root(lay.images, roots)
    part_opts = replace(opts, images=None)  # the images root is decided here, for the whole dataset
    bounds = partition_bounds(len(lay.images), _n_parts(client, len(lay.images) + len(lay.orphans), partitions))
    if not lay.images:
        bounds = [(0, 0)]
    tasks: list[Task] = []
    for k, (a, b) in enumerate(bounds):
        last = k == len(bounds) - 1
        sub = yolo._Layout(root=lay.root, images=lay.images[a:b], labels=lay.labels[a:b],
                           orphans=list(lay.orphans) if last else [], loose=set(lay.loose) if last else set(),
                           image_roots=[img_root])
        if skeleton is None:
            tasks.append((_read_yolo_part, (sub, cfg, part_opts, str(local), None, None, None, None)))
        else:
            work = str(skeleton.workdir)
            files = sub.images + [x for x in sub.labels if x is not None] + sub.orphans
            keys = sorted(_rel_to(f, work) for f in files)
            tasks.append((_read_yolo_part, (sub, cfg, part_opts, str(local), skeleton.url, keys, work,
                                            dict(storage_options or {}))))
    return tasks


def _plan_voc(local: Path, opts: ReadOptions, client: Any, partitions: int | None, skeleton: Any,
              storage_options: Mapping[str, Any] | None) -> list[Task]:
    try:
        rels = list(voc.plan(local, options=opts)[0].files)  # the adapter's own plan: every XML file, sorted
    except ReadError:
        rels = []
    if not rels:
        return [(_read_whole, (str(local), "voc", opts, {}, False))]
    # one process per worker: a nested process pool is neither allowed in a Dask worker nor useful
    part_opts = replace(opts, extra={**dict(opts.extra or {}), "workers": 1})
    n_parts = _n_parts(client, len(rels), partitions)
    if skeleton is None:  # each worker reads its parts of the plan (voc.read_part)
        return [(_read_voc_part, (p, part_opts)) for p in voc.plan(local, options=opts, parts=n_parts)]
    bounds = partition_bounds(len(rels), n_parts)
    tasks: list[Task] = []
    work = str(skeleton.workdir)
    base = _rel_to(str(local), work)
    # images whose stem is an XML file's stem get header stand-ins on that part's worker; the others are empty
    # placeholders (listed, so the image-existence checks agree, but never read)
    images_by_stem: dict[str, list[str]] = {}
    for dirpath, _, filenames in os.walk(work):
        for fn in filenames:
            if _is_image(fn):
                images_by_stem.setdefault(os.path.splitext(fn)[0], []).append(
                    _rel_to(os.path.join(dirpath, fn), work))
    for a, b in bounds:
        keys = [f"{base}/{r}" for r in rels[a:b]]
        for r in rels[a:b]:
            keys += images_by_stem.get(posixpath.splitext(posixpath.basename(r))[0], [])
        tasks.append((_read_remote_voc_part, (str(local), rels[a:b], part_opts, skeleton.url, sorted(keys), work,
                                              dict(storage_options or {}))))
    return tasks


def _rel_to(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


# ------------------------------------------------------------------------------------------- on the workers
def _worker_copy(url: str, keys: Sequence[str], storage_options: Mapping[str, Any] | None,
                 placeholders: bool) -> Any:
    wanted = frozenset(keys)
    return storage.localize(url, storage_options=storage_options, select=wanted.__contains__,
                            placeholders=placeholders)


def _moved(path: str, old: str, new: str) -> str:
    return new + path[len(old):] if path == old or path.startswith(old + os.sep) else path


def _read_yolo_part(sub: Any, cfg: Any, opts: ReadOptions, local: str, url: str | None,
                    keys: Sequence[str] | None, client_work: str | None,
                    storage_options: Mapping[str, Any] | None) -> Dataset:
    """One run of a YOLO dataset's images (and, for the last run, the label files with no image)."""
    report = Report()
    if url is None or keys is None or client_work is None:
        part: Dataset = yolo._read(sub, cfg, opts, report, Path(local))
        return part
    with _worker_copy(url, keys, storage_options, False) as loc:
        new = str(loc.workdir)

        def mv(p: str) -> str:
            return _moved(p, client_work, new)

        moved = yolo._Layout(root=mv(sub.root), images=[mv(p) for p in sub.images],
                             labels=[None if p is None else mv(p) for p in sub.labels],
                             orphans=[mv(p) for p in sub.orphans], loose={mv(p) for p in sub.loose},
                             image_roots=[mv(p) for p in sub.image_roots])
        ds = yolo._read(moved, cfg, opts, report, Path(mv(local)))
        out: Dataset = storage.relabel(ds, [loc])
        return out


def _read_voc_part(part: FilesPart, opts: ReadOptions) -> Dataset:
    """One part of a local VOC dataset's plan."""
    return voc.read_part(part, options=opts)


def _read_remote_voc_part(local: str, files: Sequence[str], opts: ReadOptions, url: str,
                          keys: Sequence[str], client_work: str,
                          storage_options: Mapping[str, Any] | None) -> Dataset:
    """One run of a remote VOC dataset's XML files, copied to the worker with their images' headers."""
    report = Report()
    with _worker_copy(url, keys, storage_options, True) as loc:
        ds = voc.read(Path(_moved(local, client_work, str(loc.workdir))), options=opts, report=report, files=files)
        out: Dataset = storage.relabel(ds, [loc])
        return out


def _read_whole(src: str, name: str, opts: ReadOptions, storage_options: Mapping[str, Any],
                remote: bool) -> Dataset:
    """A whole source as one partition (single-file formats; YOLO when an inference needs every file)."""
    if remote or storage.is_url(opts.images):
        got: Dataset = storage.read_source(src, fmt=name, options=opts, storage_options=storage_options)
        return got
    report = Report()
    report.input = {"format": name, "source": src}
    return adapters.get(name).read(Path(src), options=opts, report=report)


# ------------------------------------------------------------------------------------------- merging
def _needs_whole_yolo(parts: Sequence[Dataset]) -> bool:
    """Whether a part used an inference that depends on the files of other parts: 9-11 column files (read as
    polygons only when the rest of the dataset is), or inferred keypoint layouts that differ between parts."""
    kpt: set[str] = set()
    for ds in parts:
        for d in ds.report.diagnostics:
            if d.code == "dropped.ambiguous" or (d.code == "task.inferred" and "like the rest of the dataset"
                                                 in d.message):
                return True
            if d.code == "task.inferred" and "kpt_shape inferred" in d.message:
                kpt.add(d.message)
    return len(kpt) > 1


