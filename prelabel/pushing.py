"""``prelabel.push``: a source or a Dataset into a project in one call, as ``prelabel push`` does on the command
line: the categories are reconciled with the target's schema, the boxes clipped, the COCO validated, and the
upload run (sharded, resumable when ``out`` keeps the file).

Example:
    >>> import tempfile, pathlib
    >>> import prelabel
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> project = prelabel.project_init(tmp / "proj", images="sample_data/images", categories=["Cat", "dog"])
    >>> ds = prelabel.from_huggingface(
    ...     [{"score": 0.9, "label": "cat", "box": {"xmin": 4, "ymin": 4, "xmax": 40, "ymax": 30}}],
    ...     image_names="street.jpg", images="sample_data/images")
    >>> r = prelabel.push(ds, f"local:{tmp / 'proj'}")
    >>> r.status, r.annotations_applied, ds.report.to_dict()["mapping"][0]["target"]
    ('completed', 1, 'Cat')
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, overload

from .adapters.base import ReadOptions
from .converters import coco as coco_writer
from .model import Dataset
from .pipeline import prepare, read, write_dataset
from .report import Report
from .upload.base import Target, UploadResult
from .upload.driver import UploadFuture, UploadProgress, parse_target, upload
from .upload.match import MatchRules

__all__ = ["PushResult", "push"]


@dataclass
class PushResult(UploadResult):
    """The upload's result, and ``report``: the conversion's report (what was read, mapped, dropped, written)."""

    report: Report = field(default_factory=Report, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = UploadResult.to_dict(UploadResult(**{f.name: getattr(self, f.name) for f in fields(UploadResult)}))
        d["report"] = self.report.to_dict()
        return d


@overload
def push(source: str | Path | Sequence[str | Path] | Dataset, target: str | Target, *, _async: Literal[False] = ...,
         fmt: str | None = ..., options: ReadOptions | None = ..., mapping: Mapping[str, str | None] | str | Path |
         None = ..., schema: Any = ..., unknown: str = ..., clip: bool = ..., min_area: float = ...,
         min_score: float | None = ..., out: str | Path | None = ..., report_path: str | Path | None = ...,
         strict: bool = ..., dry_run: bool = ..., mode: str = ..., timeout: float | None = ..., workers: int = ...,
         journal: str | Path | bool | None = ..., max_file_size: int = ..., match: MatchRules | None = ...,
         images: str | Path | None = ..., create_project: str | None = ..., model_version: str | None = ...,
         notify: Callable[[str], None] | None = ..., progress: Callable[[UploadProgress], None] | None = ...,
         allow_empty: bool = ...) -> PushResult: ...


@overload
def push(source: str | Path | Sequence[str | Path] | Dataset, target: str | Target, *, _async: Literal[True],
         fmt: str | None = ..., options: ReadOptions | None = ..., mapping: Mapping[str, str | None] | str | Path |
         None = ..., schema: Any = ..., unknown: str = ..., clip: bool = ..., min_area: float = ...,
         min_score: float | None = ..., out: str | Path | None = ..., report_path: str | Path | None = ...,
         strict: bool = ..., dry_run: bool = ..., mode: str = ..., timeout: float | None = ..., workers: int = ...,
         journal: str | Path | bool | None = ..., max_file_size: int = ..., match: MatchRules | None = ...,
         images: str | Path | None = ..., create_project: str | None = ..., model_version: str | None = ...,
         notify: Callable[[str], None] | None = ..., progress: Callable[[UploadProgress], None] | None = ...,
         allow_empty: bool = ...) -> UploadFuture: ...


def push(source: str | Path | Sequence[str | Path] | Dataset, target: str | Target, *, _async: bool = False,
         fmt: str | None = None, options: ReadOptions | None = None,
         mapping: Mapping[str, str | None] | str | Path | None = None, schema: Any = None, unknown: str = "error",
         clip: bool = True, min_area: float = 0.0, min_score: float | None = None, out: str | Path | None = None,
         report_path: str | Path | None = None, strict: bool = False, dry_run: bool = False, mode: str = "replace",
         timeout: float | None = None, workers: int = 2, journal: str | Path | bool | None = None,
         max_file_size: int = coco_writer.DEFAULT_MAX_FILE_SIZE, match: MatchRules | None = None,
         images: str | Path | None = None, create_project: str | None = None, model_version: str | None = None,
         notify: Callable[[str], None] | None = None, progress: Callable[[UploadProgress], None] | None = None,
         allow_empty: bool = False) -> PushResult | UploadFuture:
    """Convert ``source`` (a path, several, or a :class:`~prelabel.model.Dataset` such as ``from_ultralytics``
    gives) and upload it to ``target`` (``local:DIR``, ``labellerr:PROJECT_ID``, ``labelstudio:PROJECT_ID`` or
    ``labelstudio:new`` with ``create_project``), as the command line's ``push``.

    Categories: without ``schema``, the target's categories (a local project's, a Labellerr template's, a
    Label Studio config's labels) are the schema: names are matched exactly, then ignoring case and
    separators; ``mapping`` renames, and ``unknown`` (``"error"``, ``"drop"``, ``"keep"``) decides the others
    (``"error"`` raises a CategoryError naming the closest project categories). Then ``min_score``, clipping
    (``clip``, ``min_area``) and validation, as :func:`prelabel.convert`. The conversion's report is the
    result's ``report``; a Dataset given keeps it too (``ds.report``).

    ``out`` keeps the COCO file (then the upload's resume journal lies beside it, unless ``journal=False``);
    without it the file is temporary and no journal is kept. ``fmt`` and ``options`` are :func:`prelabel.read`'s;
    the upload options (``dry_run``, ``mode``, ``timeout``, ``workers``, ``journal``, ``max_file_size``,
    ``match``, ``images``, ``create_project``, ``model_version``, ``notify``, ``progress``, ``allow_empty``) are
    :func:`prelabel.upload`'s. ``_async=True`` converts now and returns the upload's
    :class:`~prelabel.upload.driver.UploadFuture` (its result is the :class:`UploadResult`; the conversion's
    report is then ``ds.report`` or ``report_path``).

    Example:
        >>> import tempfile, pathlib
        >>> import prelabel
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = prelabel.project_init(tmp / "p", images="sample_data/images", categories=["car", "cat", "dog"])
        >>> r = prelabel.push("sample_data/yolo", f"local:{tmp / 'p'}", unknown="drop", dry_run=True)
        >>> r.status, r.dry_run, r.annotations_applied, r.report.dropped_counts()
        ('completed', True, 6, {'dropped.unknown_category': 1})
    """
    tgt = parse_target(target, mode=mode, match=match, images=images, create_project=create_project,
                       model_version=model_version)
    workdir: Path | None = None
    handed_over = False
    try:
        if schema is None:
            cats = tgt.categories()
            schema = list(cats) if cats else None
        ds = source if isinstance(source, Dataset) else read(source, fmt=fmt, options=options)
        ds = prepare(ds, mapping=mapping, schema=schema, unknown=unknown, clip=clip, min_area=min_area,
                     min_score=min_score)
        if out is None:
            workdir = Path(tempfile.mkdtemp(prefix="prelabel-push-"))
            dest = workdir / "push.coco.json"
            journal = False
        else:
            dest = Path(out)
        written = write_dataset(ds, dest, max_file_size=max_file_size, report_path=report_path, strict=strict,
                                allow_outside=not clip)
        kw: dict[str, Any] = {"timeout": timeout, "dry_run": dry_run, "mode": mode, "journal": journal,
                              "max_file_size": max_file_size, "workers": workers, "notify": notify,
                              "progress": progress, "allow_empty": allow_empty}
        if _async:
            fut = upload(dest, tgt, _async=True, **kw)
            handed_over = True
            fut.add_done_callback(lambda _: _cleanup(tgt, workdir))
            return fut
        res = upload(dest, tgt, **kw)
        return PushResult(**{f.name: getattr(res, f.name) for f in fields(UploadResult)}, report=written.report)
    finally:
        if not handed_over:
            _cleanup(tgt, workdir)


def _cleanup(tgt: Any, workdir: Path | None) -> None:
    tgt.close()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
