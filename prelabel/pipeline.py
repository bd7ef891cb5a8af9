"""read → reconcile → clip → write (→ upload), once, for both the CLI and the Python API.

Example:
    >>> import tempfile, pathlib
    >>> from prelabel.model import Dataset
    >>> from prelabel.pipeline import write_dataset
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [1.0], "w": [2.0], "h": [2.0]})
    >>> res = write_dataset(ds, pathlib.Path(tempfile.mkdtemp()) / "out.json")
    >>> res.report.balanced, res.report.output["annotations"]
    (True, 1)
"""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from . import adapters, storage
from .adapters.base import DEFAULT_CHUNK_ROWS, NeedsWholeRead, ReadOptions
from .converters import coco as coco_writer
from .converters.coco_write import CocoStreamWriter
from .converters.conventions import ConventionStats, source_text
from .converters.reconcile import Reconciler
from .converters.reconcile import reconcile as reconcile_step
from .converters.same_images import merge_same_images
from .converters.steps import ChunkSteps, size_rule
from .distributed import convert_parts, dask_client, read_dask
from .engine import PartStream, read_parts, with_workers
from .engine.stream import STREAM_PART_BYTES
from .errors import ReadError, StrictError, UsageError, option
from .junk import junk_reason
from .model import Dataset
from .paths import at_least
from .report import Report

__all__ = ["ConvertResult", "convert", "prepare", "read", "write_dataset"]

Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]

# ``progress(stage, done, total)``: the stage (reading, reconciling, clipping, writing), units done and their
# total when known (reading: files, from the adapters that read many; writing: files written). Off when None.
ProgressHook = Callable[[str, int, "int | None"], None]


@dataclass
class ConvertResult:
    """What a conversion produced: the written paths, the final dataset and its report."""

    paths: list[Path]
    dataset: Dataset
    report: Report
    validation: coco_writer.ValidationResult = field(default_factory=coco_writer.ValidationResult)
    urls: list[str] = field(default_factory=list)  # where the files went when the output was a URL


def read(src: str | Path | Sequence[str | Path], *, fmt: str | None = None, options: ReadOptions | None = None,
         report: Report | None = None, storage_options: Mapping[str, Any] | None = None, engine: str = "local",
         scheduler: str | None = None, workers: int | None = None, progress: ProgressHook | None = None) -> Dataset:
    """Read one source (or several, merged into one dataset) into the internal model.

    A source (or ``options.images``) may be an fsspec URL (:mod:`prelabel.storage`; ``storage_options`` go to
    its file system). ``engine="dask"`` reads the files on a Dask cluster (:mod:`prelabel.distributed`:
    ``scheduler`` address, else a local cluster of ``workers`` processes). With the local engine ``workers``
    is the number of processes the readers may use (1: this one only; None: by the input's size, or the
    environment variable ``PRELABEL_WORKERS``; :func:`prelabel.workers.wanted_workers`). ``progress``: see
    :func:`convert`.
    """
    opts = options or ReadOptions()
    if engine == "local":  # the one worker policy (prelabel.workers.wanted_workers) reads it from the options
        opts = with_workers(opts, workers)
    sources = [src] if isinstance(src, (str, Path)) else list(src)
    parts: list[Dataset] = []
    for s in sources:
        if progress is not None:
            progress("reading", 0, None)
        s = _zip_url(s)
        if engine != "local" or storage.is_url(s) or storage.is_url(opts.images):
            parts.append(_read_elsewhere(s, fmt=fmt, options=opts, storage_options=storage_options, engine=engine,
                                         scheduler=scheduler, workers=workers))
            continue
        p = adapters.locate(s, fmt)
        parts.append(read_parts(p, fmt=fmt or adapters.detect(p),
                                options=opts if progress is None else _counting(opts, progress)))
    if len(parts) == 1 and report is None:
        return parts[0]
    merged = Dataset.concat(parts, report=report or Report())
    if len(parts) > 1:  # sources that name the same image describe one picture (or are refused)
        merged = merge_same_images(merged, sources=[str(d.report.input.get("source", "")) for d in parts
                                                    for _ in range(len(d.images))])
    merged.report.input = {"format": [d.report.input.get("format") for d in parts],
                           "source": [d.report.input.get("source") for d in parts]}
    if len(parts) == 1:
        merged.report.input = dict(parts[0].report.input)
    return merged


def _zip_url(src: str | Path) -> str | Path:
    """A local ``.zip`` export (CVAT's task export, a zipped YOLO or VOC dataset) as the fsspec URL of its
    contents, read like any other URL source (:mod:`prelabel.storage`); anything else unchanged."""
    if storage.is_url(src) or Path(src).suffix.lower() != ".zip" or not Path(src).is_file():
        return src
    try:
        with zipfile.ZipFile(src) as z:
            names = [n for n in z.namelist() if not any(junk_reason(part) for part in n.split("/") if part)]
    except (OSError, zipfile.BadZipFile) as e:
        raise ReadError(str(src), f"not a readable zip file: {e}") from None
    tops = {n.split("/", 1)[0] for n in names}
    inner = tops.pop() if len(tops) == 1 and all("/" in n for n in names) else ""  # all in one folder: that folder
    return f"zip://{inner}::{Path(src).resolve()}"


def _size_rule(fmt: Any) -> bool | None:
    """How the recorded image sizes of a report's format (or formats: sources merged) are checked: the
    formats' one :func:`~prelabel.converters.steps.size_rule`, else (formats with different rules, or one
    unknown) ``False``, pixel coordinates."""
    names = fmt if isinstance(fmt, (list, tuple)) else [fmt]
    if not names or not all(isinstance(n, str) and n in adapters.FORMATS for n in names):
        return False
    rules = {size_rule(adapters.get(n)) for n in names}
    return rules.pop() if len(rules) == 1 else False


def _counting(opts: ReadOptions, progress: ProgressHook) -> ReadOptions:
    """``opts`` with the adapters' per-file hook ``extra["progress"](done, total)`` reporting to ``progress``."""
    def files(done: int, total: int) -> None:
        progress("reading", done, total)

    return replace(opts, extra={**dict(opts.extra or {}), "progress": files})


def _read_elsewhere(s: str | Path, *, fmt: str | None, options: ReadOptions,
                    storage_options: Mapping[str, Any] | None, engine: str, scheduler: str | None,
                    workers: int | None) -> Dataset:
    if engine == "dask":
        return read_dask(s, fmt=fmt, options=options, storage_options=storage_options, scheduler=scheduler,
                         workers=workers)
    if engine != "local":
        raise UsageError(f"unknown engine {engine!r}", hint=f"use {option('engine', 'local')} or {option('engine', 'dask')}")
    ds: Dataset = storage.read_source(s, fmt=fmt, options=options, storage_options=storage_options)
    return ds


def prepare(ds: Dataset, *, mapping: Mapping[str, str | None] | str | Path | None = None, schema: Any = None,
            unknown: str = "error", clip: bool = True, min_area: float = 0.0,
            min_score: float | None = None, progress: ProgressHook | None = None, min_size: float = 0.0) -> Dataset:
    """The Dataset → Dataset steps: recorded image sizes checked against the image files, score filter,
    category reconciliation, clipping (``min_area`` in px², ``min_size``: the least side of a box in px)."""
    steps = ChunkSteps(min_score=min_score, clip=clip, min_area=min_area, min_size=min_size,
                       relative=_size_rule(ds.report.input.get("format")))
    stats = ConventionStats()
    ds = steps.before(ds, stats)  # (the convention hints are convert's: inspect lists them)
    ds.report.diagnostics.extend(stats.score_note(source_text(ds.report.input.get("source")), min_score))
    if progress is not None:
        progress("reconciling", 0, None)
    ds = reconcile_step(ds, mapping=mapping, schema=schema, unknown=unknown)
    if progress is not None:
        progress("clipping", 0, None)
    return steps.after(ds)


def write_dataset(ds: Dataset, out: str | Path, *, max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE,
                  rle: str = "compressed", report_path: str | Path | None = None,
                  strict: bool = False, allow_outside: bool = False) -> ConvertResult:
    """Write ``ds`` as COCO (validated as written), fill in the report, and apply ``strict``.

    ``ds`` is written as it is (its categories keep their ids; no reconciliation, no clipping: see
    :func:`prepare`). ``allow_outside`` (``--no-clip``) validates boxes extending outside their image as
    warnings, not errors. When the report's ledger does not balance (read is not written + dropped: rows
    removed without a record, e.g. ``ds.filter(mask)`` without ``reason=``), a ``ledger.unbalanced`` warning is
    issued and noted in the report; with ``strict=True`` nothing is written (StrictError).
    """
    rep = ds.report
    if rep.read and rep.read != len(ds.annotations) + rep.dropped:
        lost = rep.read - len(ds.annotations) - rep.dropped
        msg = (f"the ledger does not balance: read {rep.read} annotation(s), writing {len(ds.annotations)}, "
               f"dropped {rep.dropped}: {abs(lost)} annotation(s) {'removed' if lost > 0 else 'added'} without a "
               "record (give Dataset.filter a reason=, or record them with ds.report.drop)")
        rep.note("ledger.unbalanced", str(out), msg)   # a problem: strict=True refuses to write
        if not strict:
            warnings.warn(msg, UserWarning, stacklevel=2)
    writer = CocoStreamWriter(out, max_file_size=max_file_size, rle=rle, allow_outside=allow_outside)
    try:
        writer.add(ds)
        return _finish(writer, ds.report, ds.categories, out, report_path=report_path, strict=strict, dataset=ds)
    finally:
        writer.abort()


def _end(writer: CocoStreamWriter, rep: Report, records: Report, stats: ConventionStats, rec: Reconciler,
         out: Path, *, steps: _Steps, report_path: str | Path | None, last: Dataset | None) -> ConvertResult:
    """The end of every conversion loop: the reader's report ``rep`` takes the convention hints, the steps'
    records (in their canonical order) and the category mapping; then the writer assembles the file (or its
    shards). ``last``: the one chunk of a whole read, kept in the result."""
    src = source_text(rep.input.get("source"))
    rep.diagnostics.extend([*stats.hints(src), *stats.score_note(src, steps.chunk.min_score)])
    records.order_phases()  # the steps' entries by step and reason / category: part by part as whole
    rep.merge(records)
    rec.finish(rep)
    categories = rec.categories()
    if steps.progress is not None:
        steps.progress("writing", 0, None)
    kept = (Dataset(images=last.images, categories=categories, annotations=last.annotations, report=rep)
            if last is not None else None)
    return _finish(writer, rep, categories, out, report_path=report_path, strict=steps.strict, dataset=kept)


def _finish(writer: CocoStreamWriter, rep: Report, categories: Any, out: str | Path, *,
            report_path: str | Path | None, strict: bool, dataset: Dataset | None) -> ConvertResult:
    """Validate the categories, fill in the report's output, write the files (unless ``strict`` finds
    problems) and the report; the one end of every conversion."""
    validation = writer.check(categories)
    coco_writer.fail_if_invalid(validation, f"the COCO written for {out}")
    rep.set_written(writer.n_annotations, by_category=writer.by_category)
    rep.output.update({"images": writer.n_images, "annotations": writer.n_annotations,
                       "categories": len(categories)})
    problems = rep.problems() if strict else []
    paths = [] if problems else writer.finish(categories)
    rep.output["files"] = [str(p) for p in paths]
    if report_path is not None:
        coco_writer.write_json_atomic(report_path, orjson.dumps(rep.to_dict(), option=orjson.OPT_INDENT_2))
    if problems:
        raise _strict_error(problems)
    ds = dataset if dataset is not None else Dataset.build(categories=categories, report=rep)
    return ConvertResult(paths=paths, dataset=ds, report=rep, validation=validation)


def _strict_error(problems: Sequence[Any]) -> StrictError:
    first = problems[0]
    return StrictError(f"--strict: {len(problems)} problem(s); first: {first.code} {first.source} "
                       f"{first.message}".replace("  ", " "),
                       hint=f"see the report for all of them, or run without {option('strict')}")


def convert(src: str | Path | Sequence[str | Path], out: str | Path, *, fmt: str | None = None,
            options: ReadOptions | None = None, mapping: Mapping[str, str | None] | str | Path | None = None,
            schema: Any = None, unknown: str = "error", clip: bool = True, min_area: float = 0.0,
            min_score: float | None = None, max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE,
            rle: str = "compressed", report_path: str | Path | None = None, strict: bool = False,
            storage_options: Mapping[str, Any] | None = None, engine: str = "local", scheduler: str | None = None,
            workers: int | None = None, progress: ProgressHook | None = None, stream: bool = False,
            chunk_rows: int = DEFAULT_CHUNK_ROWS, min_size: float = 0.0, client: Any = None,
            partitions: int | None = None) -> ConvertResult:
    """Read ``src``, reconcile, clip, and write COCO to ``out``; the report says what happened to everything.

    ``src``, ``out`` and ``report_path`` may be fsspec URLs; ``engine`` / ``scheduler`` / ``workers``: see
    :func:`read`. ``progress``: an optional ``hook(stage, done, total)`` called as each stage starts
    (``reading``, ``reconciling``, ``clipping``, ``writing``) and as files are read and written, e.g. a
    :class:`prelabel.progress.Stages`.

    Every conversion is one loop: chunks of whole images are reconciled, clipped and written as they come.
    ``stream=True`` (what the command line does) keeps memory bounded on huge inputs: a source whose adapter
    can stream (CVAT XML, prediction tables, YOLO datasets, VOC folders, large Label Studio exports) comes in
    chunks of about ``chunk_rows`` annotation rows, with the same output bytes; the result's ``dataset`` then
    holds the categories and the report but no images or annotations. Otherwise the source is read whole and
    is the loop's one chunk; so are several sources, URLs and Dask, and an input the adapter finds it cannot
    stream (the report says why: ``stream.whole``).

    ``engine="dask"`` converts one source map-only (:func:`prelabel.distributed.convert_parts`): each partition
    is read, reconciled, clipped and serialized on a worker, and this process only appends the bytes, so it
    holds no more than one partition's COCO (the result's ``dataset`` holds the categories and the report).
    ``client``: an existing ``distributed.Client`` (else one is made from ``scheduler`` / ``workers``);
    ``partitions``: how many to cut the source into (default: 4 per worker, at least 200 files or 2 MB each).
    The bytes are the local engine's.

    ``min_area`` drops objects under that area (px², ``dropped.min_area``), ``min_size`` those with a side of
    their box under that many pixels (``dropped.min_size``).
    """
    if not isinstance(src, (str, Path)) and len(src) == 1:
        src = src[0]
    if isinstance(src, (str, Path)):
        src = _zip_url(src)
        if not storage.is_url(src):
            src = adapters.locate(src, fmt)
    opts = options or ReadOptions()
    if engine == "local":
        opts = with_workers(opts, workers)
    steps = _Steps(mapping=mapping, schema=schema, unknown=unknown, max_file_size=max_file_size, rle=rle,
                   chunk=ChunkSteps(clip=clip, min_area=min_area, min_size=min_size, min_score=min_score),
                   strict=strict, progress=progress)
    with storage.write_outputs(out, report_path) as (local_out, local_report):
        whole_reason = None
        res: ConvertResult | None = None
        failed: StrictError | None = None
        try:
            if stream and isinstance(src, (str, Path)) and engine == "local" and not storage.is_url(src) \
                    and not storage.is_url(opts.images):
                try:
                    res = _convert_stream(Path(src), Path(local_out), fmt=fmt, options=opts, steps=steps,
                                          report_path=local_report, chunk_rows=chunk_rows)
                except NeedsWholeRead as e:
                    whole_reason = e.reason
            if res is None and engine == "dask" and isinstance(src, (str, Path)):
                res = _convert_dask(src, Path(local_out), fmt=fmt, options=opts, steps=steps,
                                    report_path=local_report, storage_options=storage_options,
                                    scheduler=scheduler, workers=workers, client=client, partitions=partitions)
            if res is None:
                ds = read(src, fmt=fmt, options=opts, storage_options=storage_options, engine=engine,
                          scheduler=scheduler, workers=workers, progress=progress)
                if whole_reason:
                    ds.report.note("stream.whole", str(src), f"read whole, not streamed: {whole_reason}",
                                   severity="info")
                whole_report = ds.report
                relative = _size_rule(whole_report.input.get("format"))
                box = [(ds.images, ds.categories, ds.annotations)]
                del ds  # the loop holds the tables from here: each step's input is freed once it has its output
                res = _run(_take(box), lambda: whole_report, Path(local_out), steps=steps,
                           report_path=local_report, whole=True, relative=relative)
        except StrictError as e:
            if not storage.is_url(out) and not storage.is_url(report_path):
                raise
            failed = e
        if storage.is_url(out) or storage.is_url(report_path):
            res = _upload_outputs(res, out, report_path, local_out, local_report, storage_options=storage_options)
        if failed is not None:
            raise failed
    if res is None:  # unreachable: every path above returns a result or raises
        raise UsageError("nothing was converted")
    if progress is not None:
        progress("writing", len(res.paths), len(res.paths))
    return res


@dataclass(frozen=True, kw_only=True)
class _Steps:
    """The options of the Dataset steps and the writer, as :func:`convert` was given them."""

    mapping: Mapping[str, str | None] | str | Path | None
    schema: Any
    unknown: str
    chunk: ChunkSteps
    max_file_size: int
    rle: str
    strict: bool
    progress: ProgressHook | None

    def reconciler(self) -> Reconciler:
        return Reconciler(mapping=self.mapping, schema=self.schema, unknown=self.unknown)

    def writer(self, out: Path) -> CocoStreamWriter:
        return CocoStreamWriter(out, max_file_size=self.max_file_size, rle=self.rle, allow_outside=not self.chunk.clip)


def _upload_outputs(res: ConvertResult | None, out: str | Path, report_path: str | Path | None,
                    local_out: str | Path, local_report: str | Path | None, *, storage_options: Mapping[str, Any] | None) -> ConvertResult | None:
    """Upload the COCO file (or its shards) and the report written locally for URL outputs."""
    if res is not None and storage.is_url(out) and res.paths:
        res.urls = storage.upload_written(local_out, str(out), storage_options=storage_options)
        res.report.output["files"] = list(res.urls)
        if local_report is not None:
            coco_writer.write_json_atomic(local_report, orjson.dumps(res.report.to_dict(),
                                                                     option=orjson.OPT_INDENT_2))
    if report_path is not None and local_report is not None and storage.is_url(report_path) \
            and Path(local_report).exists():
        storage.upload_written(local_report, str(report_path), storage_options=storage_options)
    return res


def _convert_stream(src: Path, out: Path, *, fmt: str | None, options: ReadOptions, steps: _Steps,
                    report_path: str | Path | None, chunk_rows: int) -> ConvertResult | None:
    """The streamed conversion; None when the adapter cannot stream this input (it is read whole then).
    ``NeedsWholeRead`` passes through: nothing is written then."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    adapter = adapters.get(fmt or adapters.detect(src))
    if not hasattr(adapter, "plan"):
        return None
    floor = getattr(adapter, "STREAM_MIN_BYTES", 0)  # below it the adapter's whole read is faster (and small)
    if floor and not at_least(src, floor):
        return None
    progress = steps.progress
    counted_files = False

    def files(done: int, total: int) -> None:
        nonlocal counted_files
        counted_files = True
        if progress is not None:
            progress("reading", done, total)

    # the plan's parts in plan order (the adapter's report comes from the stream at the end)
    reader = PartStream(adapter, src, options=options,
                        part_bytes=max(1, STREAM_PART_BYTES * chunk_rows // DEFAULT_CHUNK_ROWS),
                        progress=files if progress is not None else None)

    def report() -> Report:
        rep = reader.report
        rep.input = {"format": adapter.NAME, "source": str(src)}
        return rep

    if progress is not None:
        progress("reading", 0, None)
    return _run(iter(reader), report, out, steps=steps, report_path=report_path, whole=False,
                one_file=lambda: not counted_files, relative=size_rule(adapter))


def _convert_dask(src: str | Path, out: Path, *, fmt: str | None, options: ReadOptions, steps: _Steps,
                  report_path: str | Path | None, storage_options: Mapping[str, Any] | None,
                  scheduler: str | None, workers: int | None, client: Any, partitions: int | None) -> ConvertResult:
    """The Dask engine's conversion, map-only (:func:`prelabel.distributed.convert_parts`): the workers read,
    reconcile, clip and serialize their partitions; here only the bytes are appended and the report is
    finished, as at the end of :func:`_run`."""
    rec = steps.reconciler()
    writer = steps.writer(out)
    if steps.progress is not None:
        steps.progress("reading", 0, None)
    try:
        with contextlib.ExitStack() as stack:
            if client is None:
                client = stack.enter_context(dask_client(scheduler, workers=workers))
            got = convert_parts(client, src, writer, rec, steps=steps.chunk, fmt=fmt, options=options,
                                storage_options=storage_options, partitions=partitions)
        return _end(writer, got.report, got.records, got.stats, rec, out, steps=steps, report_path=report_path,
                    last=None)
    finally:
        writer.abort()


def _take(box: list[Tables]) -> Iterator[Tables]:
    """The one chunk of a whole read, taken out of ``box`` (no reference stays behind)."""
    while box:
        yield box.pop()


def _run(chunks: Iterator[Tables], source_report: Callable[[], Report], out: Path, *, steps: _Steps,
         report_path: str | Path | None, whole: bool, one_file: Callable[[], bool] | None = None,
         relative: bool | None = False) -> ConvertResult:
    """The one conversion loop: each chunk of whole images is score-filtered, reconciled, clipped and
    written as it comes; then the reader's report takes the convention hints, the steps' records and the
    category mapping, and the writer assembles the file (or its shards). ``whole``: the one chunk is the
    whole dataset (its progress stages are named; the result keeps its rows)."""
    progress = steps.progress
    records = Report()   # the steps record here, merged after the reader's own entries
    rec = steps.reconciler()
    stats = ConventionStats()
    each = replace(steps.chunk, relative=relative)
    writer = steps.writer(out)
    last: Dataset | None = None
    try:
        for images, categories, annotations in chunks:
            chunk = Dataset(images=images, categories=categories, annotations=annotations, report=records)
            chunk = each.before(chunk, stats)
            if whole and progress is not None:
                progress("reconciling", 0, None)
            ds = rec.apply(chunk)
            del chunk, images, categories, annotations  # freed as soon as the next step has its output
            if rec.unknown_seen:  # the error comes at the end, with the whole input's counts
                continue
            if whole and progress is not None:
                progress("clipping", 0, None)
            last = each.after(ds)
            del ds
            writer.add(last)
            if not whole:
                last = None  # not held while the next chunk is read
                if progress is not None and one_file is not None and one_file():  # a big file: rows so far
                    progress("streaming", writer.n_annotations, None)
        return _end(writer, source_report(), records, stats, rec, out, steps=steps, report_path=report_path,
                    last=last)
    finally:
        writer.abort()
