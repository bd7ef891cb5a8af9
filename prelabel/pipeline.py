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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from . import adapters, storage
from .adapters.base import DEFAULT_CHUNK_ROWS, NeedsWholeRead, ReadOptions
from .converters import coco as coco_writer
from .converters.clip import clip as clip_step
from .converters.coco_stream import CocoStreamWriter
from .converters.conventions import ConventionStats, convention_hints, source_text
from .converters.reconcile import Reconciler
from .converters.reconcile import reconcile as reconcile_step
from .converters.score import filter_min_score
from .distributed import read_dask
from .errors import StrictError, UsageError
from .model import Dataset
from .prefetch import ChunkReader, at_least
from .report import Report

__all__ = ["ConvertResult", "convert", "prepare", "read", "write_dataset"]

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
    ``scheduler`` address, else a local cluster of ``workers`` processes). ``progress``: see :func:`convert`.
    """
    opts = options or ReadOptions()
    sources = [src] if isinstance(src, (str, Path)) else list(src)
    parts: list[Dataset] = []
    for s in sources:
        if progress is not None:
            progress("reading", 0, None)
        if engine != "local" or storage.is_url(s) or storage.is_url(opts.images):
            parts.append(_read_elsewhere(s, fmt=fmt, options=opts, storage_options=storage_options, engine=engine,
                                         scheduler=scheduler, workers=workers))
            continue
        p = Path(s)
        adapter = adapters.get(fmt or adapters.detect(p))
        part_report = Report()
        part_report.input = {"format": adapter.NAME, "source": str(p)}
        parts.append(adapter.read(p, options=opts if progress is None else _counting(opts, progress),
                                  report=part_report))
    if len(parts) == 1 and report is None:
        return parts[0]
    merged = Dataset.concat(parts, report=report or Report())
    merged.report.input = {"format": [d.report.input.get("format") for d in parts],
                           "source": [d.report.input.get("source") for d in parts]}
    if len(parts) == 1:
        merged.report.input = dict(parts[0].report.input)
    return merged


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
        raise UsageError(f"unknown engine {engine!r}", hint="use --engine local or --engine dask")
    ds: Dataset = storage.read_source(s, fmt=fmt, options=options, storage_options=storage_options)
    return ds


def prepare(ds: Dataset, *, mapping: Mapping[str, str | None] | str | Path | None = None, schema: Any = None,
            unknown: str = "error", clip: bool = True, min_area: float = 0.0,
            min_score: float | None = None, progress: ProgressHook | None = None) -> Dataset:
    """The Dataset → Dataset steps: score filter, category reconciliation, clipping."""
    ds = filter_min_score(ds, min_score)
    if progress is not None:
        progress("reconciling", 0, None)
    ds = reconcile_step(ds, mapping=mapping, schema=schema, unknown=unknown)
    if progress is not None:
        progress("clipping", 0, None)
    ds = clip_step(ds, enabled=clip, min_area=min_area)
    return ds


def write_dataset(ds: Dataset, out: str | Path, *, max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE,
                  rle: str = "compressed", report_path: str | Path | None = None,
                  strict: bool = False, allow_outside: bool = False) -> ConvertResult:
    """Write ``ds`` as COCO (validated as written), fill in the report, and apply ``strict``.

    ``allow_outside`` (``--no-clip``) validates boxes extending outside their image as warnings, not errors.
    """
    tables = coco_writer.CocoTables(ds, rle=rle)
    validation = coco_writer.validate_dataset(tables, allow_outside=allow_outside)
    coco_writer.fail_if_invalid(validation, f"the COCO written for {out}")
    rep = ds.report
    rep.set_written(tables.n, by_category=tables.by_category)
    rep.output.update({"images": len(tables.images), "annotations": tables.n,
                       "categories": len(tables.categories)})
    problems = rep.problems() if strict else []
    paths: list[Path] = []
    if not problems:
        paths = coco_writer.write(tables, out, max_file_size=max_file_size)
    rep.output["files"] = [str(p) for p in paths]
    if report_path is not None:
        coco_writer.write_json_atomic(report_path, orjson.dumps(rep.to_dict(), option=orjson.OPT_INDENT_2))
    if problems:
        raise _strict_error(problems)
    return ConvertResult(paths=paths, dataset=ds, report=rep, validation=validation)


def _strict_error(problems: Sequence[Any]) -> StrictError:
    first = problems[0]
    return StrictError(f"--strict: {len(problems)} problem(s); first: {first.code} {first.source} "
                       f"{first.message}".replace("  ", " "),
                       hint="see the report for all of them, or run without --strict")


def convert(src: str | Path | Sequence[str | Path], out: str | Path, *, fmt: str | None = None,
            options: ReadOptions | None = None, mapping: Mapping[str, str | None] | str | Path | None = None,
            schema: Any = None, unknown: str = "error", clip: bool = True, min_area: float = 0.0,
            min_score: float | None = None, max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE,
            rle: str = "compressed", report_path: str | Path | None = None, strict: bool = False,
            storage_options: Mapping[str, Any] | None = None, engine: str = "local", scheduler: str | None = None,
            workers: int | None = None, progress: ProgressHook | None = None, stream: bool = False,
            chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ConvertResult:
    """Read ``src``, reconcile, clip, and write COCO to ``out``; the report says what happened to everything.

    ``src``, ``out`` and ``report_path`` may be fsspec URLs; ``engine`` / ``scheduler`` / ``workers``: see
    :func:`read`. ``progress``: an optional ``hook(stage, done, total)`` called as each stage starts
    (``reading``, ``reconciling``, ``clipping``, ``writing``) and as files are read and written, e.g. a
    :class:`prelabel.progress.Stages`.

    ``stream=True`` (what the command line does) keeps memory bounded on huge inputs: a source whose adapter
    can stream (CVAT XML, prediction tables, YOLO datasets, VOC folders) is read, reconciled, clipped and
    written ``chunk_rows`` annotation rows at a time, with the same output bytes; the result's ``dataset``
    then holds the categories and the report but no images or annotations. Other sources, several sources,
    URLs and Dask are read whole, as is an input the adapter finds it cannot stream (the report says why:
    ``stream.whole``).
    """
    whole_reason = None
    if not isinstance(src, (str, Path)) and len(src) == 1:
        src = src[0]
    if stream and isinstance(src, (str, Path)) and engine == "local" and not storage.is_url(src) \
            and not storage.is_url(out) and not storage.is_url(report_path) \
            and not storage.is_url((options or ReadOptions()).images):
        streamed = _convert_stream(
            Path(src), Path(out), fmt=fmt, options=options or ReadOptions(), mapping=mapping, schema=schema,
            unknown=unknown, clip=clip, min_area=min_area, min_score=min_score, max_file_size=max_file_size,
            rle=rle, report_path=report_path, strict=strict, progress=progress, chunk_rows=chunk_rows)
        if isinstance(streamed, ConvertResult):
            return streamed
        whole_reason = streamed
    ds = read(src, fmt=fmt, options=options, storage_options=storage_options, engine=engine, scheduler=scheduler,
              workers=workers, progress=progress)
    if whole_reason:
        ds.report.note("stream.whole", str(src), f"read whole, not streamed: {whole_reason}", severity="info")
    ds.report.diagnostics.extend(convention_hints(ds))
    ds = prepare(ds, mapping=mapping, schema=schema, unknown=unknown, clip=clip, min_area=min_area,
                 min_score=min_score, progress=progress)
    if progress is not None:
        progress("writing", 0, None)
    if storage.is_url(out) or storage.is_url(report_path):
        res = _write_remote(ds, out, report_path, storage_options=storage_options, max_file_size=max_file_size,
                            rle=rle, strict=strict, allow_outside=not clip)
    else:
        res = write_dataset(ds, out, max_file_size=max_file_size, rle=rle, report_path=report_path, strict=strict,
                            allow_outside=not clip)
    if progress is not None:
        progress("writing", len(res.paths), len(res.paths))
    return res


def _write_remote(ds: Dataset, out: str | Path, report_path: str | Path | None, *,
                  storage_options: Mapping[str, Any] | None, **kw: Any) -> ConvertResult:
    """Write locally to a temporary folder, then upload the COCO file (or its shards) and the report."""
    with storage.write_outputs(out, report_path) as (local_out, local_report):
        failed: StrictError | None = None
        try:
            res = write_dataset(ds, local_out, report_path=local_report, **kw)
        except StrictError as e:
            failed, res = e, ConvertResult(paths=[], dataset=ds, report=ds.report)
        if storage.is_url(out) and res.paths:
            res.urls = storage.upload_written(local_out, str(out), storage_options=storage_options)
            res.report.output["files"] = list(res.urls)
        if report_path is not None:
            coco_writer.write_json_atomic(local_report, orjson.dumps(res.report.to_dict(),
                                                                     option=orjson.OPT_INDENT_2))
            if storage.is_url(report_path):
                storage.upload_written(local_report, str(report_path), storage_options=storage_options)
        if failed is not None:
            raise failed
    return res


def _convert_stream(src: Path, out: Path, *, fmt: str | None, options: ReadOptions,
                    mapping: Mapping[str, str | None] | str | Path | None, schema: Any, unknown: str, clip: bool,
                    min_area: float, min_score: float | None, max_file_size: int, rle: str,
                    report_path: str | Path | None, strict: bool, progress: ProgressHook | None,
                    chunk_rows: int) -> ConvertResult | str | None:
    """The streaming conversion; returns None when the adapter cannot stream, or the reason the input must
    be read whole (nothing is written then)."""

    adapter = adapters.get(fmt or adapters.detect(src))
    if getattr(adapter, "iter_chunks", None) is None:
        return None
    floor = getattr(adapter, "STREAM_MIN_BYTES", 0)  # below it the adapter's whole read is faster (and small)
    if floor and not at_least(src, floor):
        return None

    counted_files = False

    def files(done: int, total: int) -> None:
        nonlocal counted_files
        counted_files = True
        if progress is not None:
            progress("reading", done, total)

    # the adapter's report comes from the reader at the end; the steps here record into their own, merged after
    reader = ChunkReader(adapter, src, options=options, chunk_rows=chunk_rows,
                         progress=files if progress is not None else None)
    steps = Report()
    rec = Reconciler(mapping=mapping, schema=schema, unknown=unknown)
    stats = ConventionStats()
    writer = CocoStreamWriter(out, max_file_size=max_file_size, rle=rle, allow_outside=not clip)
    if progress is not None:
        progress("reading", 0, None)
    try:
        for images, categories, annotations in reader:
            chunk = Dataset(images=images, categories=categories, annotations=annotations, report=steps)
            stats.add(chunk)
            ds = rec.apply(filter_min_score(chunk, min_score))
            if rec.unknown_seen:  # the error comes at the end, with the whole input's counts
                continue
            writer.add(clip_step(ds, enabled=clip, min_area=min_area))
            del chunk, ds, images, categories, annotations  # not held while the next chunk is read
            if progress is not None and not counted_files:  # one big file: the annotations written so far
                progress("streaming", writer.n_annotations, None)
        rep = reader.report
        rep.input = {"format": adapter.NAME, "source": str(src)}
        rep.diagnostics.extend(stats.hints(source_text(rep.input.get("source"))))
        rep.merge(steps)
        rec.finish(rep)
        categories = rec.categories()
        if progress is not None:
            progress("writing", 0, None)
        validation = writer.check(categories)
        coco_writer.fail_if_invalid(validation, f"the COCO written for {out}")
        rep.set_written(writer.n_annotations, by_category=writer.by_category)
        rep.output.update({"images": writer.n_images, "annotations": writer.n_annotations,
                           "categories": len(categories)})
        problems = rep.problems() if strict else []
        paths = [] if problems else writer.finish(categories)
    except NeedsWholeRead as e:
        return e.reason
    finally:
        writer.abort()
    rep.output["files"] = [str(p) for p in paths]
    if report_path is not None:
        coco_writer.write_json_atomic(report_path, orjson.dumps(rep.to_dict(), option=orjson.OPT_INDENT_2))
    if problems:
        raise _strict_error(problems)
    if progress is not None:
        progress("writing", len(paths), len(paths))
    return ConvertResult(paths=paths, dataset=Dataset.build(categories=categories, report=rep), report=rep,
                         validation=validation)
