"""What every adapter shares: the read options and the adapter protocol.

An adapter is a module with ``NAME`` (the format name), ``DESCRIPTION``, ``detect(path) -> float`` (0 = not
this format, 1 = certainly this format) and ``read(path, *, options, report) -> Dataset``. It converts its
format's conventions to the internal model at its boundary, counts every annotation it reads
(``report.add_read``), and records what it could not keep (``report.drop_one`` / ``report.drop``) or
noticed (``report.note``). Malformed input raises :class:`prelabel.errors.ReadError` naming file and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..model import Dataset
from ..report import Report

__all__ = ["Adapter", "ReadOptions"]


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


class Adapter(Protocol):
    NAME: str
    DESCRIPTION: str

    def detect(self, path: Path) -> float: ...

    def read(self, path: Path, *, options: ReadOptions, report: Report) -> Dataset: ...
