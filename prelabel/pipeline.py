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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import adapters
from .adapters.base import ReadOptions
from .converters import coco as coco_writer
from .converters.clip import clip as clip_step
from .converters.reconcile import reconcile as reconcile_step
from .converters.score import filter_min_score
from .errors import StrictError
from .model import Dataset
from .report import Report

__all__ = ["ConvertResult", "convert", "prepare", "read", "write_dataset"]


@dataclass
class ConvertResult:
    """What a conversion produced: the written paths, the final dataset and its report."""

    paths: list[Path]
    dataset: Dataset
    report: Report
    validation: coco_writer.ValidationResult = field(default_factory=coco_writer.ValidationResult)


def read(src: str | Path | Sequence[str | Path], *, fmt: str | None = None, options: ReadOptions | None = None,
         report: Report | None = None) -> Dataset:
    """Read one source (or several, merged into one dataset) into the internal model."""
    opts = options or ReadOptions()
    sources = [src] if isinstance(src, (str, Path)) else list(src)
    parts: list[Dataset] = []
    for s in sources:
        p = Path(s)
        adapter = adapters.get(fmt or adapters.detect(p))
        part_report = Report()
        part_report.input = {"format": adapter.NAME, "source": str(p)}
        parts.append(adapter.read(p, options=opts, report=part_report))
    if len(parts) == 1 and report is None:
        return parts[0]
    merged = Dataset.concat(parts, report=report or Report())
    merged.report.input = {"format": [d.report.input.get("format") for d in parts],
                           "source": [d.report.input.get("source") for d in parts]}
    if len(parts) == 1:
        merged.report.input = dict(parts[0].report.input)
    return merged


def prepare(ds: Dataset, *, mapping: Mapping[str, str | None] | str | Path | None = None, schema: Any = None,
            unknown: str = "error", clip: bool = True, min_area: float = 0.0,
            min_score: float | None = None) -> Dataset:
    """The Dataset → Dataset steps: score filter, category reconciliation, clipping."""
    ds = filter_min_score(ds, min_score)
    ds = reconcile_step(ds, mapping=mapping, schema=schema, unknown=unknown)
    ds = clip_step(ds, enabled=clip, min_area=min_area)
    return ds


def write_dataset(ds: Dataset, out: str | Path, *, max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE,
                  rle: str = "compressed", report_path: str | Path | None = None,
                  strict: bool = False, allow_outside: bool = False) -> ConvertResult:
    """Write ``ds`` as COCO (validated as written), fill in the report, and apply ``strict``.

    ``allow_outside`` (``--no-clip``) validates boxes extending outside their image as warnings, not errors.
    """
    doc = coco_writer.to_coco(ds, rle=rle)
    validation = coco_writer.validate(doc, allow_outside=allow_outside)
    coco_writer.fail_if_invalid(validation, f"the COCO written for {out}")
    rep = ds.report
    rep.set_written(len(doc["annotations"]),
                    by_category=ds.annotations["category"].astype(str).value_counts(sort=False).to_dict())
    rep.output.update({"images": len(doc["images"]), "annotations": len(doc["annotations"]),
                       "categories": len(doc["categories"])})
    problems = rep.problems() if strict else []
    paths: list[Path] = []
    if not problems:
        paths = coco_writer.write(doc, out, max_file_size=max_file_size)
    rep.output["files"] = [str(p) for p in paths]
    if report_path is not None:
        coco_writer.write_json_atomic(report_path, orjson.dumps(rep.to_dict(), option=orjson.OPT_INDENT_2))
    if problems:
        first = problems[0]
        raise StrictError(f"--strict: {len(problems)} problem(s); first: {first.code} {first.source} "
                          f"{first.message}".replace("  ", " "),
                          hint="see the report for all of them, or run without --strict")
    return ConvertResult(paths=paths, dataset=ds, report=rep, validation=validation)


def convert(src: str | Path | Sequence[str | Path], out: str | Path, *, fmt: str | None = None,
            options: ReadOptions | None = None, mapping: Mapping[str, str | None] | str | Path | None = None,
            schema: Any = None, unknown: str = "error", clip: bool = True, min_area: float = 0.0,
            min_score: float | None = None, max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE,
            rle: str = "compressed", report_path: str | Path | None = None, strict: bool = False) -> ConvertResult:
    """Read ``src``, reconcile, clip, and write COCO to ``out``; the report says what happened to everything."""
    ds = read(src, fmt=fmt, options=options)
    from .inspection import convention_hints

    ds.report.diagnostics.extend(convention_hints(ds))
    ds = prepare(ds, mapping=mapping, schema=schema, unknown=unknown, clip=clip, min_area=min_area,
                 min_score=min_score)
    return write_dataset(ds, out, max_file_size=max_file_size, rle=rle, report_path=report_path, strict=strict,
                         allow_outside=not clip)
