"""What every adapter shares: the read options and the adapter protocol.

An adapter is a module with ``NAME`` (the format name), ``DESCRIPTION``, ``detect(path) -> float`` (0 = not
this format, 1 = certainly this format) and ``read(path, *, options, report) -> Dataset``. It converts its
format's conventions to the internal model at its boundary, counts every annotation it reads
(``report.add_read``), and records what it could not keep (``report.drop_one`` / ``report.drop``) or
noticed (``report.note``). Malformed input raises :class:`prelabel.errors.ReadError` naming file and line.

An adapter that splits its source also has ``plan(path, *, options, parts) -> list[Part]`` (runs of files,
byte ranges cut at record boundaries, row ranges: :mod:`prelabel.adapters.parts`) and ``read_part(part, *,
options) -> Dataset`` (one part, in this process, with its own report), and may have ``auto_workers(path, *,
options) -> int``. The parts' datasets merged in plan order (:func:`prelabel.adapters.parts.merge`) are
``read()``'s, report included; that is how the engine (:mod:`prelabel.engine`) reads a source in a pool, on
Dask, or streams it a few parts at a time. A part that depends on the rest of the source (something only the
whole source tells: a name shared with another part, a count noted over all of it that is not a tally, rows
not grouped by image) raises :class:`NeedsWholeRead` with the reason: the caller then reads the source whole
(a streamed conversion discards what it wrote and says why in the report, ``stream.whole``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import UsageError
from ..model import Dataset
from ..paths import safe_relative
from ..report import Report

__all__ = ["Adapter", "NeedsWholeRead", "ReadOptions", "PlannedAdapter", "frame_file_name"]

DEFAULT_CHUNK_ROWS = 50_000  # annotation rows per streamed chunk (about 25-60 MB of rows in flight)


class NeedsWholeRead(Exception):  # noqa: N818 (a signal to the pipeline, not an error a user sees)
    """Raised by ``read_part`` when a part cannot be read alone; ``reason`` says why (a streamed conversion puts
    it in the report as a diagnostic ``stream.whole``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """Options that reach the adapters. Each adapter reads the ones that concern it and ignores the rest."""

    images: Path | None = None            # the images root: sizes from headers, existence checks
    # YOLO
    task: str | None = None               # detect | segment | obb | pose (else data.yaml, else the files)
    # Pascal VOC
    voc_origin: int = 1                   # 1: the spec's 1-based pixel indices; 0: files from 0-based tools
    # CVAT
    cvat_points: str = "skip"             # skip | keypoints: what to do with <points> shapes
    frame_pattern: str = "frame_{frame:06d}.png"  # file name of a video frame image
    # point-like shapes that are not areas, in formats without an option of their own (LabelMe point, line,
    # linestrip): skip (dropped.unsupported) | keypoints
    points: str = "skip"
    # Label Studio
    ls_select: str = "auto"               # annotations | predictions | both | auto (annotations, else predictions)
    ls_annotator: str = "all"             # first | latest | all (several annotators per task)
    # predictions tables
    columns: Mapping[str, str] = field(default_factory=dict)  # role -> column name overrides
    box_format: str | None = None         # xyxy | xywh | cxcywh
    normalized: bool | None = None        # box coordinates in [0, 1] of the image size
    names: Sequence[str] | None = None    # class index -> name for index category columns
    # COCO
    images_from: Path | None = None       # a GT COCO file whose images table a results list refers to
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a local path given as a string (what a Python caller writes) becomes a Path; URLs stay strings
        for name in ("images", "images_from"):
            v = getattr(self, name)
            if isinstance(v, str) and "://" not in v and not v.startswith(("zip::", "tar::")):
                object.__setattr__(self, name, Path(v))


def frame_file_name(pattern: str, frame: int) -> str:
    """The file name of video frame ``frame`` (0-based, as CVAT numbers frames) under ``frame_pattern``: one
    rule for every reader of video (CVAT tracks, Label Studio ``videorectangle``), so their frames meet."""
    try:
        fn = pattern.format(frame=frame)
    except (KeyError, IndexError, ValueError) as e:
        raise UsageError(f"frame_pattern {pattern!r} cannot be formatted with frame=: {e}") from None
    safe = safe_relative(fn)
    if safe is None:
        raise UsageError(f"frame_pattern {pattern!r} gives an unsafe file name {fn!r}")
    return safe


class Adapter(Protocol):
    NAME: str
    DESCRIPTION: str

    def detect(self, path: Path) -> float: ...

    def read(self, path: Path, *, options: ReadOptions, report: Report) -> Dataset: ...


class PlannedAdapter(Adapter, Protocol):
    def plan(self, path: Path, *, options: ReadOptions, parts: int = 1) -> Sequence[Any]: ...

    def read_part(self, part: Any, *, options: ReadOptions) -> Dataset: ...
