"""Label Studio: the JSON export, the JSON-MIN export, and task files with ``predictions``.

Inputs (one ``.json`` file, or a folder of them read in name order):

- **JSON export**: a list of tasks ``{id, data: {image: url}, annotations: [{id, completed_by, result, ...}],
  predictions: [{model_version, score, result}]}`` (one task object is accepted too; ``completions`` is
  read as the old name of ``annotations``).
- **task files** for import, with ``predictions`` and no ``annotations``.
- **JSON-MIN**: one record per annotation, ``{<data keys>, id, <from_name>: [value, ...], annotator,
  annotation_id, created_at, updated_at}``; records of one task id are grouped into one task.

Options (:class:`~prelabel.adapters.base.ReadOptions`):

- ``ls_select``: ``annotations``, ``predictions`` (scores from the region's ``score``, else the prediction's;
  ``model_version`` and ``prediction_id`` in attributes), ``both``, or ``auto`` (a task's annotations when it
  has some that are not cancelled, else its predictions). Cancelled annotations (``was_cancelled`` or
  ``skipped``) are reported as ``dropped.cancelled``, their regions counted as read.
- ``ls_annotator``: ``first`` (first in the file), ``latest`` (greatest ``updated_at``, else ``created_at``,
  then id) or ``all``; kept regions carry ``annotation_id`` and ``completed_by`` in attributes.
- ``images``: the images root; sizes for tasks without ``original_width`` / ``original_height`` come from the
  image headers there, and ``path`` is filled for images found.
- ``extra["label_config"]``: the labeling config (XML text or a file path). It gives the category order, the
  data key of each image tag, the keypoint names of each ``KeyPointLabels`` (in ``model_index`` order) and
  the ``Choices`` controls of JSON-MIN records. ``extra["ls_image_key"]`` names the data key of the image.

Conversion: values are percent of ``original_width`` / ``original_height`` and are turned into pixels
first. A rectangle's ``rotation`` turns it clockwise about its top-left corner: the four corners become the
segmentation (same formula as :func:`prelabel.geometry.rotated_box_topleft`), their envelope the box, and
``rotation`` stays in attributes. Polygons are scaled; ellipses become 64-gons; brush masks (alpha channel
of the RGBA rle-pack) become a COCO RLE of the whole image. Keypoints join the box (or other region) named by
their ``parentID`` or by a ``relation``; the parent's category lists the keypoint names (label config order,
else order of first appearance). Keypoints without a parent are dropped as ``dropped.unsupported``.
Image-level ``choices`` go to the image's ``attributes["choices"][from_name]``; choices, text and other
classifications that share a region's id go to that region's attributes under their ``from_name``.

Image names: ``/data/upload/<project>/<8 hex>-<name>`` gives ``name``; ``/data/local-files/?d=<path>``
gives the URL-decoded ``path``; ``s3://bucket/key`` (any ``scheme://bucket/key`` but http) gives ``key``;
``http(s)://...`` and host paths ``/...`` give their last path component; a relative path is kept. The URL
is kept in the image's ``attributes["url"]`` (with ``task_id``). Tasks naming the same file share one image.
A name that would escape the images root drops the task's regions (``dropped.no_image``).

Attribute dicts are shared by the regions of one annotation (no dict per box): treat them as read-only.

Speed: a task whose regions are all plain ``rectanglelabels`` is read in one pass (:func:`_scan_rects`),
any other region by region; the results are the same. An export over 16 MB is read a piece of 8 MB at a time
(bounded memory). :func:`plan` cuts an export into runs of whole tasks (:func:`read_part` reads one), which the
engine reads in two processes from 32 MB and streams from ``STREAM_MIN_BYTES`` (32 MB: below it the pipeline
reads the export whole); what a part cannot tell alone (keypoint names, an image named by tasks of two parts,
video, JSON-MIN) makes the export be read whole. The notes counted over the export (image-level choices,
relations, rotations, sizes from headers) add up over the parts (:meth:`~prelabel.report.Report.tally`).

Source locations: ``src_file`` is the export file and ``src_line`` the 1-based index of the task in it (of
the record, for JSON-MIN); drop messages name the task id, annotation id and region id. Errors read
``file:<task index>#task=<task id>: ...``.

Example:
    >>> import json, tempfile, pathlib
    >>> from prelabel.adapters.base import ReadOptions
    >>> from prelabel.report import Report
    >>> task = {"id": 7, "data": {"image": "/data/upload/3/1a2b3c4d-cat.jpg"}, "annotations": [{"id": 1,
    ...     "result": [{"id": "r1", "type": "rectanglelabels", "original_width": 200, "original_height": 100,
    ...                 "value": {"x": 10, "y": 20, "width": 50, "height": 30, "rotation": 0,
    ...                           "rectanglelabels": ["cat"]}}]}]}
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "export.json"
    >>> _ = p.write_text(json.dumps([task]))
    >>> ds = read(p, options=ReadOptions(), report=Report())
    >>> ds.images.loc[0, "file_name"], ds.boxes.tolist()
    ('cat.jpg', [[20.0, 20.0, 100.0, 30.0]])
"""

from __future__ import annotations

import math
import mmap
import re
import reprlib
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

from .. import labelconfig
from ..errors import ReadError, UsageError, option
from ..gcpause import gc_paused
from ..geometry import ellipse_polygon, ls_rle_decode, rle_bbox, rle_encode
from ..imagesize import image_size
from ..junk import junk_reason
from ..model import Dataset
from ..paths import IMAGE_EXTENSIONS, image_name, safe_join
from ..report import Report
from . import labelstudio_tasks as tasks
from .base import NeedsWholeRead, ReadOptions
from .labelstudio_video import has_video, read_video_task
from .parts import ByteRange

__all__ = ["DESCRIPTION", "NAME", "STREAM_MIN_BYTES", "TaskRun", "auto_workers", "detect", "image_name",
           "plan", "read", "read_part"]

NAME = "labelstudio"
DESCRIPTION = "Label Studio JSON / JSON-MIN export, or task files with predictions"
# coordinates are percents of the recorded size: when the image file is at hand, they follow its real size
RELATIVE_SIZES = True

SELECT_CHOICES = ("annotations", "predictions", "both", "auto")
ANNOTATOR_CHOICES = ("first", "latest", "all")

_PEEK = 64 * 1024
_RECT, _POLY, _ELLIPSE, _KP, _BRUSH = range(5)
_TYPE_KIND = {
    "rectanglelabels": _RECT, "rectangle": _RECT, "polygonlabels": _POLY, "polygon": _POLY,
    "ellipselabels": _ELLIPSE, "ellipse": _ELLIPSE, "keypointlabels": _KP, "keypoint": _KP,
    "brushlabels": _BRUSH, "brush": _BRUSH,
}
_KIND_NAME = {_RECT: "rectangle", _POLY: "polygon", _ELLIPSE: "ellipse", _KP: "keypoint", _BRUSH: "brush"}
# classifications: the key of their payload in value
_CLASSIFICATION = {"choices": "choices", "taxonomy": "taxonomy", "textarea": "text", "rating": "rating",
                   "number": "number", "datetime": "datetime"}
# JSON-MIN drops "type": the value's label key tells it
_MIN_TYPE_KEYS = ("rectanglelabels", "polygonlabels", "ellipselabels", "keypointlabels", "brushlabels",
                  "choices", "taxonomy", "labels", "rating", "number", "datetime")
_MIN_RESERVED = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
                 "history", "was_cancelled", "drafts", "predictions", "annotations"}
_NUM = (int, float)
_MAX_SIDE = 2**31 - 1  # the largest image width/height accepted (int32, as pycocotools)


# ================================================================================================ detect
def detect(path: Path) -> float:
    """1.0 for a Label Studio task list, 0.9 for JSON-MIN or one task object, else 0 (COCO dicts are 0).

    Files over 64 KiB are judged from their first 64 KiB (never parsed twice).
    """
    p = Path(path)
    if p.is_dir() or p.suffix.lower() != ".json":
        return 0.0
    with open(p, "rb") as f:
        head = f.read(_PEEK + 1)
    if head.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM (Windows editors, some exports)
        head = head[3:]
    if len(head) <= _PEEK:
        try:
            return _shape_score(orjson.loads(head))
        except orjson.JSONDecodeError:
            return 0.0
    return _peek_score(head[:_PEEK].decode("utf-8", "ignore"))


def _shape_score(doc: Any) -> float:
    if isinstance(doc, dict):
        if "images" in doc or "categories" in doc:
            return 0.0
        return 0.9 if isinstance(doc.get("data"), dict) and _has_labels(doc) else 0.0
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict):
        return 0.0
    first = doc[0]
    if isinstance(first.get("data"), dict) and _has_labels(first):
        return 1.0
    if "annotation_id" in first or any(
            isinstance(v, list) and v and isinstance(v[0], dict) and "original_width" in v[0]
            for v in first.values()):
        return 0.9 if "id" in first else 0.5
    return 0.0


def _has_labels(task: dict[str, Any]) -> bool:
    return any(isinstance(task.get(k), list) for k in ("annotations", "predictions", "completions"))


_PEEK_LIST = re.compile(r"^\ufeff?\s*\[\s*\{")
_PEEK_DICT = re.compile(r"^\ufeff?\s*\{")


def _peek_score(text: str) -> float:
    def has(key: str) -> bool:
        return re.search(rf'"{key}"\s*:', text) is not None

    labelled = has("annotations") or has("predictions") or has("completions")
    if _PEEK_LIST.match(text):
        if labelled and (has("data") or has("from_name") or has("result")):
            return 1.0
        if has("annotation_id") or (has("original_width") and has("annotator")):
            return 0.9
        return 0.0
    if _PEEK_DICT.match(text) and labelled and has("data") and not has("images") and not has("categories"):
        return 0.9
    return 0.0


# ================================================================================================ config
@dataclass
class _Config:
    image_keys: dict[str, str] = field(default_factory=dict)   # object tag name -> data key
    categories: list[str] = field(default_factory=list)        # object labels, config order
    keypoints: dict[str, list[str]] = field(default_factory=dict)  # KeyPointLabels name -> names
    choices: set[str] = field(default_factory=set)              # Choices control names


def _load_config(spec: Any) -> _Config | None:
    if spec is None:
        return None
    parsed = labelconfig.load(str(spec))
    return _Config(image_keys=parsed.data_keys(), categories=parsed.category_names(),
                   keypoints=parsed.keypoint_names(), choices={c.name for c in parsed.controls("choices")})


# ================================================================================================ reading
def _is_min(doc: list[Any]) -> bool:
    """A JSON-MIN export: its first record is an object with no ``data`` and no labelled results."""
    return bool(doc) and isinstance(doc[0], dict) and "data" not in doc[0] and not _has_labels(doc[0])


_PIECE = 8 << 20  # bytes of a large export parsed at a time (peak memory: the objects of one piece)
_PARALLEL_MIN = 4 * _PIECE  # an export at least this large is read by two processes when none is asked for


def _read_run(reader: _Reader, f: Path, *, start: int = 0, stop: int | None = None, first: int = 1,
              part: bool = False) -> bool:
    """Read the tasks of bytes ``start``..``stop`` of the export ``f`` (a run of whole tasks of one JSON list,
    the first numbered ``first``; default: the whole list) a piece of ``_PIECE`` bytes at a time, so that only
    one piece (its bytes and its objects) is in memory at once. Returns False, having read nothing, when the
    whole file is not suited (not a list, JSON-MIN, or its first piece does not parse): the caller then reads
    it whole. A ``part`` of a file raises NeedsWholeRead where the whole file would be read so."""
    file = str(f)
    try:
        with open(f, "rb", buffering=0) as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            at = start or tasks.list_start(mm)
            if at is None:
                return False
            end = len(mm) if stop is None else stop
            data = tasks.Bytes(fh)
            n = first
            while True:
                doc, nxt = tasks.piece(mm, data, at, end, _PIECE)
                if doc is not None and n == first and (not doc or _is_min(doc)) and (first == 1 or part):
                    doc = None  # JSON-MIN (its records are grouped by task over the whole file), or no task
                if doc is None:
                    if part:
                        raise NeedsWholeRead(f"{file}: bytes {start}..{stop} are not a run of tasks to read alone")
                    if n == first:
                        return False
                    doc = _rest_of_file(mm, file, n)
                try:
                    reader.read_doc(doc, file, first=n, check_min=False)
                except ReadError:
                    del doc
                    if nxt >= 0 and not part:  # as for a whole file, a JSON syntax error further on is the error
                        tasks.valid_json(mm[:], file)
                    raise
                n += len(doc)
                del doc
                if nxt < 0:
                    return True
                at = nxt
    except (OSError, ValueError):  # not a regular file, cannot be mapped: read as a whole (which reports it)
        if part:
            raise
        return False


def _rest_of_file(buf: Any, file: str, first: int) -> list[Any]:
    """The tasks from the ``first`` (1-based) on, when a piece did not parse: parsing the whole file raises its
    error, or reads NaN / Infinity as json does (which the pieces' parser refuses)."""
    whole = tasks.loads(buf[:], file)
    if not isinstance(whole, list):
        raise ReadError(file, "not valid JSON") from None
    return whole[first - 1:]


def _source(path: Path, options: ReadOptions) -> tuple[list[Path], Any]:
    """The export files (a file, or a folder's ``.json`` files in name order) and the labeling config, after
    checking the options."""
    if options.ls_select not in SELECT_CHOICES:
        raise UsageError(f"ls_select must be one of {', '.join(SELECT_CHOICES)}, got {options.ls_select!r}")
    if options.ls_annotator not in ANNOTATOR_CHOICES:
        raise UsageError(f"ls_annotator must be one of {', '.join(ANNOTATOR_CHOICES)}, "
                         f"got {options.ls_annotator!r}")
    p = Path(path)
    files = sorted(f for f in p.glob("*.json") if junk_reason(f.name) is None) if p.is_dir() else [p]
    if not files:
        raise ReadError(str(p), "no .json files in this folder")
    return files, _load_config(options.extra.get("label_config"))


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a Label Studio export (file or folder of ``.json`` files) into a Dataset, in this process."""
    files, config = _source(path, options)
    return _read_files(files, _Reader(options=options, report=report, config=config))


def _read_files(files: list[Path], reader: _Reader) -> Dataset:
    with gc_paused():
        for f in files:
            if f.stat().st_size >= 2 * _PIECE and _read_run(reader, f):
                continue
            try:
                raw = f.read_bytes()
            except OSError as e:
                raise ReadError(str(f), f"cannot read: {e}") from None
            doc = tasks.loads(raw, str(f))
            del raw
            reader.read_doc(doc, str(f))
            del doc
        return reader.finish()


@dataclass(frozen=True)
class TaskRun:
    """What :func:`plan` decided once for the whole source, carried by each of its parts: the number of the
    part's first task in its file, the label config, and whether the part is the whole source."""

    first: int
    config: Any
    whole: bool = False


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[ByteRange]:
    """The export cut into up to ``parts`` runs of whole tasks of about equal bytes (:class:`ByteRange` parts,
    each with its :class:`TaskRun`), each read by :func:`read_part`; their datasets merged in this order give
    :func:`read`'s. A folder, a file that is not a JSON list, or one without a boundary found is one part.

    >>> ps = plan(Path("sample_data/labelstudio/export.json"), options=ReadOptions(), parts=2)
    >>> [(p.context.first, p.start == 0) for p in ps]
    [(1, True), (3, False)]
    """
    files, config = _source(path, options)
    whole = [ByteRange(source=str(path), start=0, stop=-1, context=TaskRun(first=1, config=config, whole=True))]
    if parts < 2 or Path(path).is_dir():
        return whole
    f = files[0]
    try:
        with open(f, "rb", buffering=0) as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            start = tasks.list_start(mm)
            if start is None:
                return whole
            found = tasks.cuts(mm, start, [start + (len(mm) - start) * k // parts for k in range(1, parts)])
            size = len(mm)
    except (OSError, ValueError):
        return whole
    if not found:
        return whole
    bounds = [(0, 0, 0), *found]
    stops = [end for end, _, _ in found] + [size]
    return [ByteRange(source=str(f), start=begin, stop=stop, context=TaskRun(first=n + 1, config=config))
            for (_, begin, n), stop in zip(bounds, stops, strict=True)]


def read_part(part: ByteRange, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`, read in this process with its own report. A part raises NeedsWholeRead when
    what it read depends on the rest of the export (see :meth:`_Reader.alone`)."""
    run: TaskRun = part.context
    report = Report()
    f = Path(part.source)
    if run.whole:
        files, config = _source(f, options)
        return _read_files(files, _Reader(options=options, report=report, config=config))
    reader = _Reader(options=options, report=report, config=run.config, part=True)
    with gc_paused():
        _read_run(reader, f, start=part.start, stop=part.stop, first=run.first, part=True)
        return reader.finish()


def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """2 for an export file of at least 32 MB (two processes read it faster), else 1.

    >>> auto_workers(Path("sample_data/labelstudio/export.json"), options=ReadOptions())
    1
    """
    p = Path(path)
    return 2 if p.is_file() and p.stat().st_size >= _PARALLEL_MIN else 1


class _Drop(Exception):
    """A region that cannot be kept: reason code and message (caught per region)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _num(v: Any) -> float:
    """A JSON number as float; anything else (bool, str, None) raises TypeError."""
    if type(v) is float:
        return v
    if type(v) is int:
        if abs(v) > 2**1023:  # json's fallback parser (NaN in the file) reads any integer exactly
            raise ValueError(f"number too large: {reprlib.repr(v)}")
        return float(v)
    raise TypeError(f"expected a number, got {reprlib.repr(v)}")


def _labels_of(v: dict[str, Any], t: str) -> Any:
    labs = v.get(t) if t != "labels" else None
    if not labs:
        labs = v.get("labels")
    if not labs:
        for k, val in v.items():
            if k.endswith("labels") and isinstance(val, list) and val:
                return val
    return labs


def _infer_kind(v: dict[str, Any]) -> int | None:
    if "points" in v:
        return _POLY
    if "rle" in v or v.get("format") in ("rle", "brush"):
        return _BRUSH
    if "radiusX" in v:
        return _ELLIPSE
    if "x" in v and "y" in v:
        return _RECT if "height" in v else _KP
    return None


def _sort_key(a: dict[str, Any]) -> tuple[str, float]:
    stamp = a.get("updated_at") or a.get("created_at") or ""
    aid = a.get("id")
    return (str(stamp), float(aid) if isinstance(aid, _NUM) and not isinstance(aid, bool) else -math.inf)


def _who(cb: Any) -> Any:
    if isinstance(cb, dict):
        return cb.get("email") or cb.get("id")
    return cb


class _Reader:
    """Accumulates images and annotation columns over tasks, then builds the Dataset once."""

    def __init__(self, *, options: ReadOptions, report: Report, config: _Config | None, part: bool = False) -> None:
        self.opts = options
        self.part = part  # a part of an export (plan): what depends on the rest of it raises NeedsWholeRead
        self.report = report
        self.config = config
        self.root = options.images
        self.image_key = options.extra.get("ls_image_key")
        self.file = ""
        # images
        self.img_of_name: dict[str, int] = {}
        self.img_name: list[str] = []
        self.img_w: list[int] = []
        self.img_h: list[int] = []
        self.img_path: list[str | None] = []
        self.img_attrs: list[dict[str, Any]] = []
        self.img_src: list[str] = []
        # annotation rows (geo: x, y, w, h, rotation, original w, original h; percent rows flagged in pct)
        self.r_img: list[int] = []
        self.r_cat: list[str] = []
        self.r_geo: list[tuple[Any, ...]] = []           # the rows since the last _seal, as read
        self.geo_segs: list[_Seg] = []                    # the rows before, in runs (see _seal)
        self.geo_rows = 0                                 # rows in geo_segs
        self.r_pct: list[bool] = []
        self.r_seg: list[Any] = []
        self.r_score: list[Any] = []
        self.r_attrs: list[dict[str, Any] | None] = []
        self.r_file: list[str] = []
        self.r_line: list[int] = []
        self.kp_rows: dict[int, dict[str, tuple[float, float]]] = {}
        self.bad_rows: dict[int, str] = {}  # row -> why its geo values are not numbers (see _geo)
        self.late_drops: list[tuple[str, str | None, str, int, str]] = []  # rows left out once built (_boxes)
        self.kp_names: dict[str, list[str]] = {}        # category -> keypoint names (first appearance)
        self.kp_controls: dict[str, list[str]] = {}     # category -> KeyPointLabels from_names seen
        # drops: reason, category, file, line, message
        self.drops: list[tuple[str, str | None, str, int, str]] = []
        # notes gathered for one line each
        self.choices_seen: dict[str, list[Any]] = {}   # from_name -> [count, first source]
        self.relations = 0
        self.cur: Any = None
        self.rotated_images: list[str] = []
        self.from_header = 0
        self.good_labels: dict[str, str] = {}
        self.files: dict[str, int] = {}  # file -> its place in the reading order (drops are listed in it)  # labels seen to be non-blank strings: one str object each

    # ------------------------------------------------------------------------------------------ documents
    def read_doc(self, doc: Any, file: str, *, first: int = 1, check_min: bool = True) -> None:
        """Read the tasks of ``doc`` (numbered from ``first``: a piece of a file continues its numbering;
        ``check_min=False``: the file's first task already said it is not JSON-MIN)."""
        self.file = file
        self.files.setdefault(file, len(self.files))
        if isinstance(doc, dict):
            doc = [doc]
        if not isinstance(doc, list):
            raise ReadError(file, f"expected a JSON list of tasks (or one task object), got {type(doc).__name__}")
        if check_min and _is_min(doc):
            doc = self._from_min(doc, file)
        for ti, task in enumerate(doc, first):
            self._one(task, ti, file)
        self._seal()

    def _one(self, task: Any, ti: int, file: str) -> None:
        """Read task number ``ti`` of ``file``."""
        if not isinstance(task, dict):
            raise ReadError(file, f"task must be an object, got {type(task).__name__}", line=ti)
        line = task.get("__line", ti)
        self.cur = None
        try:
            self._task(task, line)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
            what = _problem(e)
            rid = self.cur.get("id") if isinstance(self.cur, dict) else None
            where = f"region {rid!r}: " if rid is not None else ""
            raise ReadError(file, f"{where}{what}", line=line, element=f"task={task.get('id')}") from None

    def _seal(self) -> None:
        """Move the rows read since the last call to geo_segs: as a float64 array when their values are plain
        numbers (which the array keeps exactly), else as read (checked with the others at the end)."""
        rows = self.r_geo
        if not rows:
            return
        block, types = _as_block(rows)
        self.geo_segs.append(_Seg(self.geo_rows, block if block is not None else rows, types))
        self.geo_rows += len(rows)
        self.r_geo = []

    def _from_min(self, records: list[Any], file: str) -> list[dict[str, Any]]:
        """JSON-MIN records grouped into tasks (one annotation per record)."""
        tasks: dict[Any, dict[str, Any]] = {}
        choices = self.config.choices if self.config else set()
        for li, rec in enumerate(records, 1):
            if not isinstance(rec, dict):
                raise ReadError(file, f"record must be an object, got {type(rec).__name__}", line=li)
            data: dict[str, Any] = {}
            results: list[dict[str, Any]] = []
            for k, val in rec.items():
                if k in _MIN_RESERVED:
                    continue
                if isinstance(val, list) and val and all(isinstance(d, dict) for d in val):
                    results.extend(self._min_result(k, d) for d in val)
                elif isinstance(val, dict) and ("choices" in val or "text" in val):
                    results.append(self._min_result(k, val))
                elif k in choices and isinstance(val, (str, list)):
                    results.append({"type": "choices", "from_name": k,
                                    "value": {"choices": [val] if isinstance(val, str) else val}})
                else:
                    data[k] = val
            ann = {"id": rec.get("annotation_id"), "completed_by": rec.get("annotator"),
                   "created_at": rec.get("created_at"), "updated_at": rec.get("updated_at"),
                   "result": results, "__line": li}
            tid = rec.get("id")
            key = tid if isinstance(tid, (int, str)) else ("#", li)
            if key in tasks:
                tasks[key]["annotations"].append(ann)
            else:
                tasks[key] = {"id": tid, "data": data, "annotations": [ann], "__line": li}
        return list(tasks.values())

    @staticmethod
    def _min_result(from_name: str, v: dict[str, Any]) -> dict[str, Any]:
        t = v.get("type")
        if isinstance(t, str):
            t = t.lower()
        else:
            t = next((k for k in _MIN_TYPE_KEYS if k in v), "textarea" if "text" in v else None)
        r: dict[str, Any] = {"type": t, "from_name": from_name, "value": v}
        for k in ("original_width", "original_height", "id", "parentID", "score"):
            if k in v:
                r[k] = v[k]
        return r

    # ------------------------------------------------------------------------------------------ one task
    def _task(self, task: dict[str, Any], line: int) -> None:
        tid = task.get("id")
        label = f"task {tid}" if tid is not None else f"task #{line}"
        data = task.get("data")
        if not isinstance(data, dict):
            raise TypeError("'data' must be an object")
        groups = self._select(task, tid, label, line)
        # the common case (only plain rectangles) in one pass over the regions; None: the general path below
        fast = _scan_rects(groups, self.good_labels)
        # the image: its URL from the first region's to_name, its name, its size
        if fast is not None:
            to_name = fast.to_name
            n_regions = len(fast.cats)
        else:
            to_name = next((r.get("to_name") for g in groups for r in g[1] if isinstance(r, dict)
                            and r.get("to_name")), None)
            n_regions = sum(_count_regions(g[1]) for g in groups)
        url = self._url(data, to_name)
        name, why = image_name(url) if url is not None else (None, "")
        if name is None or url is None:
            problem = (f"{label}: no image URL in data (keys: {', '.join(map(str, data)) or 'none'}); task skipped"
                       if url is None else f"{label}: image {url!r} is not a usable file name ({why}); task skipped")
            if n_regions:
                self._drop_all(groups, "dropped.no_image", problem)
            else:
                self.report.note("dropped.no_image", f"{self.file}:{line}", problem)
            return
        size = fast.size if fast is not None else _task_size(groups) or _task_size(self._all_groups(task))
        if fast is None and has_video(groups):  # frames of a video: labelstudio_video.py
            return read_video_task(self, groups, size=size, url=url, tid=tid, label=label, line=line,
                                   streaming=self.part)
        img = self._place_image(name, url, tid, size, label, line, groups, n_regions)
        if img is None:
            return
        size = size or (self.img_w[img], self.img_h[img])
        if fast is not None:
            if fast.rotated:
                self.rotated_images.append(f"{self.file}:{line}")
            n_pred = sum(k for g, k in zip(groups, fast.counts, strict=True) if g[0])
            self._commit(img, [(g[0], g[2], g[4], k) for g, k in zip(groups, fast.counts, strict=True)], fast.cats,
                         fast.scores[:n_pred], fast.geo)
            return
        first = next((r for g in groups for r in g[1] if isinstance(r, dict) and r.get("image_rotation")), None)
        if first is not None:
            self.rotated_images.append(f"{self.file}:{line}")
        for is_pred, results, base, score, gline in groups:
            self._results(results, img, size, label, base, is_pred, score if is_pred else math.nan, gline,
                          to_name, data)

    def _place_image(self, name: str, url: str, tid: Any, size: tuple[int, int] | None, label: str, line: int,
                     groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]], n_regions: int) -> int | None:
        """The image of a task (a new one, or the one an earlier task named); None when it cannot be placed
        (its regions reported)."""
        img = self.img_of_name.get(name)
        if img is not None:
            size = size or (self.img_w[img], self.img_h[img])
            self._merge_image(img, url, tid, size)
        else:
            path = safe_join(self.root, name) if self.root is not None else None
            found = path is not None and path.is_file()
            if size is None and found:
                size = image_size(path) if path is not None else None
                if size is not None:
                    self.from_header += 1
            if size is None:
                why = (f"no original_width/height and no images root ({option('images')})" if self.root is None else
                       f"no original_width/height and image {name!r} not found under the images root" if not found
                       else f"no original_width/height and {name!r} is not a readable image")
                if n_regions:
                    self._drop_all(groups, "dropped.no_image", f"{label}: {why}")
                else:
                    self.report.note("dropped.no_image", f"{self.file}:{line}",
                                     f"{label}: image {name!r} left out: {why}")
                return None
            if self.root is not None and not found:
                self.report.note("image.missing", f"{self.file}:{line}",
                                 f"{label}: image {name!r} not found under {self.root}")
            img = len(self.img_name)
            self.img_of_name[name] = img
            self.img_name.append(name)
            self.img_w.append(int(size[0]))
            self.img_h.append(int(size[1]))
            self.img_path.append(str(path) if found else None)
            self.img_attrs.append({"url": url, "task_id": tid})
            self.img_src.append(self.file)
        return img

    def _commit(self, img: int, groups: list[tuple[bool, dict[str, Any], int, int]], cats: list[str],
                scores: list[float], geo: list[tuple[Any, ...]] | None) -> None:
        """Append the rows of a task read by :func:`_scan_rects` (``groups``: is_prediction, base attributes,
        line, rows), the rows :meth:`_results` appends for it; ``geo`` None: the caller adds them."""
        file = self.file
        r_score = self.r_score
        k0 = 0
        for is_pred, base, gline, k in groups:
            if not k:
                continue
            self.r_img += [img] * k
            self.r_attrs += [base or None] * k
            self.r_line += [gline] * k
            self.r_file += [file] * k
            if is_pred:
                r_score += scores[k0:k0 + k]
                k0 += k
            else:
                r_score += [math.nan] * k
        n = len(cats)
        self.r_cat += cats
        if geo is not None:
            self.r_geo += geo
        self.r_pct += [True] * n
        self.r_seg += [None] * n

    def _all_groups(self, task: dict[str, Any]) -> list[tuple[bool, list[Any], Any, Any, int]]:
        out = []
        for key in ("annotations", "completions", "predictions"):
            for a in task.get(key) or []:
                if isinstance(a, dict) and isinstance(a.get("result"), list):
                    out.append((False, a["result"], None, None, 0))
        return out

    def _select(self, task: dict[str, Any], tid: Any, label: str,
                line: int) -> list[tuple[bool, list[Any], dict[str, Any], Any, int]]:
        """(is_prediction, results, base attributes, default score, line) of the chosen annotations."""
        sel = self.opts.ls_select
        anns = task.get("annotations")
        if anns is None:
            anns = task.get("completions")
        preds = task.get("predictions")
        anns = [] if anns is None else anns
        preds = [] if preds is None else preds
        if not isinstance(anns, list) or not isinstance(preds, list):
            raise TypeError("'annotations' and 'predictions' must be lists")
        out: list[tuple[bool, list[Any], dict[str, Any], Any, int]] = []
        valid: list[dict[str, Any]] = []
        if sel != "predictions":
            for a in anns:
                if not isinstance(a, dict):
                    raise TypeError(f"an annotation must be an object, got {type(a).__name__}")
                res = a.get("result") or []
                if not isinstance(res, list):
                    raise TypeError(f"annotation {a.get('id')!r}: 'result' must be a list")
                if a.get("was_cancelled") or a.get("skipped"):
                    self._drop_regions(res, "dropped.cancelled", a.get("__line", line),
                                       f"{label}, annotation {a.get('id')}: cancelled by its annotator")
                    continue
                valid.append(a)
            who = self.opts.ls_annotator
            if who == "first":
                valid = valid[:1]
            elif who == "latest" and valid:
                valid = [max(valid, key=_sort_key)]
            for a in valid:
                base = {k: v for k, v in (("annotation_id", a.get("id")), ("completed_by", _who(a.get("completed_by"))))
                        if v is not None}
                out.append((False, a.get("result") or [], base, None, a.get("__line", line)))
        if sel in ("predictions", "both") or (sel == "auto" and not valid):
            for p in preds:
                if not isinstance(p, dict):
                    raise TypeError(f"a prediction must be an object, got {type(p).__name__}")
                res = p.get("result") or []
                if not isinstance(res, list):
                    raise TypeError(f"prediction {p.get('id')!r}: 'result' must be a list")
                score = p.get("score")
                if score is not None and type(score) not in _NUM:
                    raise TypeError(f"prediction {p.get('id')!r}: score must be a number, got {score!r}")
                base = {k: v for k, v in (("prediction_id", p.get("id")), ("model_version", p.get("model_version")))
                        if v is not None}
                out.append((True, res, base, math.nan if score is None else float(score), line))
        return out

    def _url(self, data: dict[str, Any], to_name: Any) -> str | None:
        key: Any = self.image_key
        if key is None:
            if self.config and to_name in self.config.image_keys:
                key = self.config.image_keys[to_name]
            elif isinstance(to_name, str) and to_name in data:
                key = to_name
            elif "image" in data:
                key = "image"
            else:
                strings = [k for k, v in data.items() if isinstance(v, str)]
                key = next((k for k in strings if data[k].lower().split("?")[0].endswith(IMAGE_EXTENSIONS)),
                           strings[0] if len(strings) == 1 else None)
        val = data.get(key) if key is not None else None
        return val if isinstance(val, str) else None

    def _merge_image(self, img: int, url: str, tid: Any, size: tuple[int, int] | None) -> None:
        attrs = self.img_attrs[img]
        attrs.setdefault("task_ids", [attrs.get("task_id")]).append(tid)
        same = attrs.get("url") == url
        if size is not None and (int(size[0]), int(size[1])) != (self.img_w[img], self.img_h[img]):
            self.report.note("coordinates.suspect", self.file,
                             f"task {tid} gives image {self.img_name[img]!r} the size {size[0]}x{size[1]}, "
                             f"an earlier task {self.img_w[img]}x{self.img_h[img]}: the first is kept")
        self.report.note("image.merged", self.file,
                         f"tasks {attrs['task_ids'][0]} and {tid} name the same image {self.img_name[img]!r}"
                         + ("" if same else f" from different URLs ({attrs.get('url')!r}, {url!r})")
                         + ": their annotations share one image", severity="info" if same else "warning")

    # ------------------------------------------------------------------------------------------ regions
    def _results(self, results: list[Any], img: int, size: tuple[int, int], label: str,
                 base: dict[str, Any], is_pred: bool, score0: float, line: int, to_name: Any,
                 data: dict[str, Any]) -> None:
        W, H = size
        region_row: dict[Any, int] = {}
        kps: list[tuple[Any, Any, Any, float, float, Any]] = []
        rels: list[tuple[Any, Any]] = []
        classif: list[tuple[Any, Any, str, Any]] = []
        attrs0 = base or None
        file = self.file
        r_img, r_cat, r_geo, r_pct = self.r_img, self.r_cat, self.r_geo, self.r_pct
        r_seg, r_score, r_attrs, r_file, r_line = self.r_seg, self.r_score, self.r_attrs, self.r_file, self.r_line
        for r in results:
            try:
                self.cur = r
                if type(r) is not dict:
                    raise TypeError(f"a result must be an object, got {type(r).__name__}")
                t = r.get("type")
                v = r.get("value")
                kind = _TYPE_KIND.get(t) if type(t) is str else None
                score = score0
                if is_pred:
                    s = r.get("score")
                    if s is not None:
                        score = _num(s)
                if kind == _RECT and type(v) is dict and r.get("to_name", to_name) == to_name:
                    labs = v.get(t) or _labels_of(v, str(t))
                    if labs and type(labs) is list and type(labs[0]) is str and labs[0].strip():
                        geo = (v["x"], v["y"], v["width"], v["height"], v.get("rotation") or 0,
                               r.get("original_width", W), r.get("original_height", H))  # before any append
                        rid = r.get("id")
                        if rid is not None:
                            region_row[rid] = len(r_img)
                        r_img.append(img)
                        r_cat.append(labs[0])
                        r_geo.append(geo)
                        r_pct.append(True)
                        r_seg.append(None)
                        r_score.append(score)
                        r_attrs.append(attrs0 if len(labs) == 1 else {**base, "labels": list(labs)})
                        r_file.append(file)
                        r_line.append(line)
                        continue
                if t == "relation":
                    rels.append((r.get("from_id"), r.get("to_id")))
                    continue
                if type(v) is not dict:
                    raise TypeError("'value' must be an object")
                if type(t) is not str:
                    raise TypeError(f"'type' must be a string, got {t!r}")
                rid = r.get("id")
                msg = f"{label}, {_source_name(base)}, region {rid}"
                if t in _CLASSIFICATION:
                    classif.append((rid, r.get("from_name"), t, v.get(_CLASSIFICATION[t])))
                    continue
                if kind is None and t == "labels":
                    kind = _infer_kind(v)
                if kind is None:
                    self._drop("dropped.unsupported", None, line, f"{msg}: a '{t}' result is not an image object")
                    continue
                tn = r.get("to_name", to_name)
                if tn != to_name and self._url(data, tn) != self._url(data, to_name):
                    self._drop("dropped.unsupported", None, line,
                               f"{msg}: on a second image of the task ({tn!r}); only the first is read")
                    continue
                labs = _labels_of(v, t)
                if not labs or type(labs) is not list:
                    self._drop("dropped.invalid", None, line, f"{msg}: a {_KIND_NAME[kind]} without a label")
                    continue
                cat = labs[0]
                if type(cat) is not str:
                    raise TypeError(f"labels must be strings, got {cat!r}")
                if not cat.strip():
                    self._drop("dropped.invalid", None, line, f"{msg}: a {_KIND_NAME[kind]} with an empty label")
                    continue
                ow = _num(r.get("original_width", W))
                oh = _num(r.get("original_height", H))
                if ow <= 0 or oh <= 0 or ow > _MAX_SIDE or oh > _MAX_SIDE:
                    raise ValueError(f"original_width/height must be > 0 and at most {_MAX_SIDE}, got {ow} x {oh}")
                if kind == _KP:
                    x, y = _num(v["x"]) * ow / 100.0, _num(v["y"]) * oh / 100.0
                    if not (math.isfinite(x) and math.isfinite(y)):
                        raise ValueError("keypoint x, y must be finite numbers")
                    kps.append((rid, r.get("parentID"), cat, x, y, r.get("from_name")))
                    continue
                try:
                    seg, box = _shape(kind, v, ow, oh)
                except _Drop as d:
                    self._drop(d.reason, cat, line, f"{msg}: {d.message}")
                    continue
                if kind == _RECT:  # a rectangle result whose value was not the usual shape (e.g. type "labels")
                    geo = (v["x"], v["y"], v["width"], v["height"], v.get("rotation") or 0, ow, oh)
                    r_geo.append(geo)
                    r_pct.append(True)
                else:
                    r_geo.append((*box, 0.0, 0.0, 0.0))
                    r_pct.append(False)
                if rid is not None:
                    region_row[rid] = len(r_img)
                r_img.append(img)
                r_cat.append(cat)
                r_seg.append(seg)
                r_score.append(score)
                r_attrs.append(attrs0 if len(labs) == 1 else {**base, "labels": list(labs)})
                r_file.append(file)
                r_line.append(line)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
                # one malformed region: dropped at its task's line, the rest of the task and the file are read
                self._drop("dropped.invalid", _region_label(r), line,
                           f"{label}, {_source_name(base)}, region {_region_id(r)}: {_problem(e)}")
        self.cur = None
        if kps:
            self._keypoints(kps, rels, region_row, label, base, line)
        if rels:
            kp_ids = {k[0] for k in kps}
            self.relations += sum(1 for a, b in rels if a != b and a not in kp_ids and b not in kp_ids)
        for rid, from_name, t, payload in classif:
            row = region_row.get(rid) if rid is not None else None
            if row is not None:
                self.r_attrs[row] = {**(self.r_attrs[row] or {}), str(from_name): payload}
            elif t == "choices":
                values = payload if isinstance(payload, list) else [payload]
                bucket = self.img_attrs[img].setdefault("choices", {}).setdefault(str(from_name), [])
                bucket.extend(c for c in values if c not in bucket)
                seen = self.choices_seen.setdefault(str(from_name), [0, f"{self.file}:{line}"])
                seen[0] += 1
            else:
                self._drop("dropped.unsupported", None, line,
                           f"{label}, {_source_name(base)}, region {rid}: a '{t}' result ({from_name}) "
                           "that belongs to no region is not an image object")

    def _keypoints(self, kps: list[tuple[Any, Any, Any, float, float, Any]], rels: list[tuple[Any, Any]],
                   region_row: dict[Any, int], label: str, base: dict[str, Any], line: int) -> None:
        linked: dict[Any, list[Any]] = {}
        for a, b in rels:
            linked.setdefault(a, []).append(b)
            linked.setdefault(b, []).append(a)
        for rid, parent, name, x, y, from_name in kps:
            if parent not in region_row:
                parent = next((o for o in linked.get(rid, ()) if o in region_row and o != rid), None)
            msg = f"{label}, {_source_name(base)}, keypoint {name!r} (region {rid})"
            if parent is None:
                self._drop("dropped.unsupported", name, line,
                           f"{msg}: no parent region (parentID or relation); COCO keypoints belong to an object")
                continue
            row = region_row[parent]
            points = self.kp_rows.setdefault(row, {})
            if name in points:
                self._drop("dropped.ambiguous", name, line, f"{msg}: a second {name!r} keypoint for region {parent}")
                continue
            points[name] = (x, y)
            cat = self.r_cat[row]
            names = self.kp_names.setdefault(cat, [])
            if name not in names:
                names.append(name)
            controls = self.kp_controls.setdefault(cat, [])
            if from_name not in controls:
                controls.append(from_name)

    # ------------------------------------------------------------------------------------------ drops
    def _drop(self, reason: str, cat: str | None, line: int, message: str) -> None:
        self.drops.append((reason, cat, self.file, line, message))

    def _drop_regions(self, results: list[Any], reason: str, line: int, message: str) -> None:
        for r in results:
            if isinstance(r, dict) and _is_region(r):
                self._drop(reason, _region_label(r), line, f"{message} (region {r.get('id')})")

    def _drop_all(self, groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]], reason: str,
                  message: str) -> None:
        for _, results, base, _, line in groups:
            self._drop_regions(results, reason, line, f"{message}; {_source_name(base)}")

    # ------------------------------------------------------------------------------------------ finish
    def finish(self) -> Dataset:
        if self.part:
            self._alone()
        n = len(self.r_img)
        x, y, w, h, segs, attrs, dropped = self._boxes()
        kp_col = self._keypoint_column(n)
        cats = list(self.config.categories) if self.config else []
        known = set(cats)
        for c in dict.fromkeys(self.r_cat):  # in order of first use
            if c not in known:
                cats.append(str(c))
                known.add(c)
        cat_kp = [self._category_keypoints(c) for c in cats]
        report = self.report
        report.add_read(n + len(self.drops))
        self.drops += self.late_drops  # after the regions dropped while reading, as a streamed read lists them
        self._report_drops()
        self._notes()
        return self._dataset(cats, cat_kp, (x, y, w, h), segs, attrs, kp_col, dropped)

    def _dataset(self, cats: list[str], cat_kp: list[Any], xywh: tuple[Any, Any, Any, Any], segs: list[Any],
                 attrs: list[Any], kp_col: list[Any], dropped: list[int]) -> Dataset:
        """The Dataset of the images and rows held, with categories ``cats`` (keypoint names ``cat_kp``), the
        boxes, segmentations and attributes :meth:`_boxes` made and the keypoints column; the rows ``dropped``
        left out."""
        x, y, w, h = xywh
        report = self.report
        ds = Dataset.build(
            images={"file_name": self.img_name, "width": np.asarray(self.img_w, dtype=np.int64),
                    "height": np.asarray(self.img_h, dtype=np.int64),
                    "path": pd.Series(self.img_path, dtype=object),
                    "attributes": pd.Series(self.img_attrs, dtype=object),
                    "src_file": pd.Series(self.img_src, dtype=object)},
            categories={"name": pd.Series(cats, dtype=object), "keypoints": pd.Series(cat_kp, dtype=object)},
            annotations={"image": np.asarray(self.r_img, dtype=np.int64),
                         "category": pd.Series(self.r_cat, dtype=object),
                         "x": x, "y": y, "w": w, "h": h,
                         "score": np.asarray(self.r_score, dtype=np.float64),
                         "segmentation": pd.Series(segs, dtype=object),
                         "keypoints": pd.Series(kp_col, dtype=object),
                         "attributes": pd.Series(attrs, dtype=object),
                         "src_file": pd.Series(self.r_file, dtype=object),
                         "src_line": np.asarray(self.r_line, dtype=np.int64)},
            report=report,
        )
        if dropped:
            keep = np.ones(len(self.r_img), dtype=bool)
            keep[dropped] = False
            ds.annotations = ds.annotations[keep].reset_index(drop=True)
        return ds

    def _geo(self) -> np.ndarray:
        """All rows' geo values as one (n, 7) float64 array. A row read with a value that is not a JSON number
        (or one past the largest float) is NaN, with its message in ``bad_rows``."""
        self._seal()
        segs = self.geo_segs
        if all(isinstance(g.rows, np.ndarray) for g in segs):
            return np.concatenate([g.rows for g in segs]) if len(segs) > 1 else segs[0].rows
        geo = np.empty((self.geo_rows, 7), dtype=np.float64)
        for g in segs:
            if isinstance(g.rows, np.ndarray):
                geo[g.start:g.start + len(g.rows)] = g.rows
                continue
            for i, tup in enumerate(g.rows, g.start):  # as float(v) of each value: what _as_block's arrays hold
                bad = next((v for v in tup if type(v) not in _NUM), _NONE) if len(tup) == 7 else tup
                try:
                    if bad is _NONE:
                        geo[i] = [float(v) for v in tup]
                        continue
                    message = ("coordinates and original_width/height must be numbers, got "
                               f"{reprlib.repr(bad)}")
                except OverflowError:
                    message = "a coordinate or original_width/height is too large for a number"
                geo[i] = math.nan
                self.bad_rows[i] = message
        return geo

    def _boxes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any], list[Any], list[int]]:
        """The rows' boxes (x, y, w, h in pixels), segmentations and attributes, and the rows dropped as
        malformed (each recorded in ``late_drops``, in row order)."""
        n = len(self.r_img)
        segs = self.r_seg
        attrs = self.r_attrs
        if n == 0:
            z = np.zeros(0, dtype=np.float64)
            return z, z, z, z, segs, attrs, []
        geo = self._geo()
        pct = np.asarray(self.r_pct, dtype=bool)
        finite = np.isfinite(geo).all(axis=1)
        ow, oh = geo[:, 5], geo[:, 6]
        wrong_size = finite & pct & ((ow <= 0) | (oh <= 0) | (ow > _MAX_SIDE) | (oh > _MAX_SIDE))
        dropped = np.flatnonzero(~finite | wrong_size).tolist()
        if dropped:
            for i in dropped:
                if i in self.bad_rows:
                    reason, message = "dropped.invalid", self.bad_rows[i]
                elif not finite[i]:
                    reason, message = "dropped.nonfinite", "coordinates must be finite numbers (NaN or Infinity found)"
                else:
                    reason, message = "dropped.invalid", (f"original_width/height must be > 0 and at most "
                                                          f"{_MAX_SIDE}, got {ow[i]:g} x {oh[i]:g}")
                cat = self.r_cat[i]
                self.late_drops.append((reason, cat, self.r_file[i], self.r_line[i], f"{cat!r} region: {message}"))
            geo = geo.copy()
            geo[dropped] = (0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 100.0)  # computed like the others, then left out
            ow, oh = geo[:, 5], geo[:, 6]
        sx = np.where(pct, ow / 100.0, 1.0)
        sy = np.where(pct, oh / 100.0, 1.0)
        x, y, w, h = geo[:, 0] * sx, geo[:, 1] * sy, geo[:, 2] * sx, geo[:, 3] * sy
        rot = np.where(pct, geo[:, 4], 0.0)
        turned = np.flatnonzero(np.mod(rot, 360.0) != 0)
        if turned.size:
            # Label Studio turns clockwise about the top-left corner, in pixels (rotated_box_topleft, vectorized)
            a = np.radians(rot[turned])
            c, s = np.cos(a), np.sin(a)
            x0, y0, ww, hh = x[turned], y[turned], w[turned], h[turned]
            xs = np.column_stack([x0, x0 + ww * c, x0 + ww * c - hh * s, x0 - hh * s])
            ys = np.column_stack([y0, y0 + ww * s, y0 + ww * s + hh * c, y0 + hh * c])
            corners = np.empty((turned.size, 8), dtype=np.float64)
            corners[:, 0::2] = xs
            corners[:, 1::2] = ys
            x, y, w, h = x.copy(), y.copy(), w.copy(), h.copy()
            x[turned], y[turned] = xs.min(axis=1), ys.min(axis=1)
            w[turned], h[turned] = xs.max(axis=1) - x[turned], ys.max(axis=1) - y[turned]
            segs = list(segs)
            attrs = list(attrs)
            for k, i in enumerate(turned.tolist()):
                segs[i] = [corners[k]]
                attrs[i] = {**(attrs[i] or {}), "rotation": float(rot[i])}
        return x, y, w, h, segs, attrs, dropped

    def _category_keypoints(self, cat: str) -> list[str] | None:
        names = self.kp_names.get(cat)
        if names is None:
            return None
        if self.config and self.config.keypoints:
            ordered: list[str] = []
            for ctl in self.kp_controls.get(cat, []):
                ordered.extend(k for k in self.config.keypoints.get(str(ctl), []) if k not in ordered)
            ordered.extend(k for k in names if k not in ordered)
            return ordered
        return list(names)

    def _keypoint_column(self, n: int) -> list[Any]:
        col: list[Any] = [None] * n
        if not self.kp_rows:
            return col
        order = {c: self._category_keypoints(c) for c in self.kp_names}
        for row in range(n):
            names = order.get(self.r_cat[row])
            if names is None:
                continue
            arr = np.zeros((len(names), 3), dtype=np.float64)
            for name, (kx, ky) in self.kp_rows.get(row, {}).items():
                k = names.index(name)
                arr[k] = (kx, ky, 2.0)
            col[row] = arr
        return col

    def _alone(self) -> None:
        """NeedsWholeRead when a part read what only the whole export tells: keypoint names (in order of first
        appearance over the whole export)."""
        if self.kp_names:
            raise NeedsWholeRead(f"{self.file}: keypoints, whose names are noted over the whole export")

    def _report_drops(self) -> None:
        """The drops in file and task order (the order that the parts of a plan add up to), in runs of one
        reason."""
        if not self.drops:
            return
        rank = self.files
        rows = sorted(self.drops, key=lambda d: (rank.get(d[2], len(rank)), d[3]))
        frame = pd.DataFrame(rows, columns=["reason", "category", "src_file", "src_line", "message"],
                             dtype=object)  # an empty category stays None (no string column inferred)
        reasons = frame["reason"].to_numpy()
        starts = [0, *np.flatnonzero(reasons[1:] != reasons[:-1]) + 1, len(frame)]
        for a, b in zip(starts[:-1], starts[1:], strict=False):
            self.report.drop(str(reasons[a]), frame.iloc[a:b])

    def _notes(self) -> None:
        """The notes about what was counted over the export (closing tallies: the parts' counts add up)."""
        rep = self.report
        for name, (count, src) in self.choices_seen.items():
            esc = name.replace("{", "{{").replace("}", "}}")
            rep.tally("image.attribute", src, f"choices '{esc}' of {{}} annotation(s) kept as image attributes "
                      f"(attributes['choices']['{esc}'])", (count,), severity="info", end=1)
        if self.relations:
            rep.tally("dropped.unsupported", self.file, "{} relation(s) between regions not kept "
                      "(COCO has no relations)", (self.relations,), severity="info", end=2)
        if self.rotated_images:
            rep.tally("coordinates.suspect", self.rotated_images[0], "{} task(s) record an image_rotation: their "
                      "coordinates are read as given, against original_width x original_height",
                      (len(self.rotated_images),), end=3)
        if self.from_header:
            rep.tally("image.size_from_header", str(self.root), "{} image size(s) read from the image files (the "
                      "export has no original_width/height for them)", (self.from_header,), severity="info", end=4)


def _source_name(base: dict[str, Any] | None) -> str:
    if not base:
        return "annotation"
    if "prediction_id" in base or "model_version" in base:
        return f"prediction {base.get('prediction_id', base.get('model_version'))}"
    return f"annotation {base.get('annotation_id')}"


def _problem(e: Exception) -> str:
    """What a malformed task or region has, from the exception reading it raised."""
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}"
    return "a value is nested too deeply" if isinstance(e, RecursionError) else str(e)


def _region_id(r: Any) -> Any:
    return r.get("id") if isinstance(r, dict) else None


def _region_label(r: Any) -> str | None:
    """The first label of a region, when it has a readable one (the category a dropped region is counted in)."""
    v = r.get("value") if isinstance(r, dict) else None
    labs = _labels_of(v, str(r.get("type"))) if isinstance(v, dict) else None
    return labs[0] if isinstance(labs, list) and labs and isinstance(labs[0], str) else None


def _is_region(r: dict[str, Any]) -> bool:
    t = r.get("type")
    return t != "relation" and t not in _CLASSIFICATION


def _count_regions(results: list[Any]) -> int:
    return sum(1 for r in results if isinstance(r, dict) and _is_region(r))


class _Rects(NamedTuple):
    """The rows of a task whose regions are all plain rectangles (see :func:`_scan_rects`)."""

    to_name: Any
    size: tuple[int, int]
    rotated: bool                  # a region records an image_rotation
    counts: list[int]              # regions per group
    cats: list[str]
    geo: list[tuple[Any, ...]]     # as _Reader.r_geo
    scores: list[float]            # of the prediction groups' regions, in order


def _scan_rects(groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]],
                good: dict[str, str]) -> _Rects | None:
    """The rows of a task in one pass over its regions, when they are all ``rectanglelabels`` with one
    non-blank label on the first region's image (which gives whole-pixel ``original_width`` /
    ``original_height``) and, in predictions, no score or a number as score. Else None, having changed
    nothing but ``good``: :meth:`_Reader._task` then reads the task region by region. The rows are those
    that :meth:`_Reader._results` makes of the same regions (its first branch); ``good`` holds the labels
    already found to be non-blank strings, each as the one str object that the rows share (a column of a few
    distinct objects hashes and compares fast)."""
    to_name: Any = None
    w: Any = 0
    h: Any = 0
    geo: list[tuple[Any, ...]] = []
    cats: list[str] = []
    counts: list[int] = []
    scores: list[float] = []
    rotated = False
    try:
        for is_pred, results, _, score0, _ in groups:
            n0 = len(cats)
            for r in results:
                if type(r) is not dict or r["type"] != "rectanglelabels":
                    return None
                v = r["value"]
                if type(v) is not dict:
                    return None
                if to_name is None:  # the task's first region names the image and gives its size
                    to_name = r.get("to_name")
                    w, h = r.get("original_width"), r.get("original_height")
                    if not to_name or type(w) is not int or type(h) is not int or not (
                            0 < w <= _MAX_SIDE and 0 < h <= _MAX_SIDE):
                        return None
                elif r.get("to_name", to_name) != to_name:
                    return None
                labs = v["rectanglelabels"]
                if type(labs) is not list or len(labs) != 1:
                    return None
                c = labs[0]
                if type(c) is not str:
                    return None
                label = good.get(c)
                if label is None:
                    if not c.strip():
                        return None
                    good[c] = label = c
                if is_pred:
                    s = r.get("score")
                    if s is None:
                        scores.append(score0)
                    elif type(s) is float:
                        scores.append(s)
                    else:
                        return None
                if r.get("image_rotation"):
                    rotated = True
                geo.append((v["x"], v["y"], v["width"], v["height"], v.get("rotation") or 0,
                            r.get("original_width", w), r.get("original_height", h)))
                cats.append(label)
            counts.append(len(cats) - n0)
    except KeyError:  # the general path reports it
        return None
    if to_name is None:
        return None
    return _Rects(to_name, (w, h), rotated, counts, cats, geo, scores)


_NONE = object()  # no such value (None is a value)  # the line given to _select in a worker: a group with another line has one of its own
_PLAIN = frozenset((float, int))
_BIG = float(2**63)


class _Seg(NamedTuple):
    """A run of annotation rows' geo values: ``start`` is its first row; ``rows`` a float64 array (its values
    were all Python floats and ints of ``types``, see :func:`_as_block`) or the 7-tuples as read."""

    start: int
    rows: Any
    types: frozenset[type]


def _as_block(rows: list[tuple[Any, ...]]) -> tuple[np.ndarray | None, frozenset[type]]:
    """``rows`` (7-tuples as read) as a float64 array, and the Python types of their values, when every value
    is a float or an int of magnitude under 2**63 (they convert exactly as one array of all rows would,
    whatever the other rows); else (None, types)."""
    types = frozenset(map(type, chain.from_iterable(rows)))
    if not rows or not types <= _PLAIN:
        return None, types
    try:
        arr = np.array(rows, dtype=np.float64)  # as float(v) for each: exact below 2**63
    except OverflowError:  # an int past the largest float (json reads any integer): checked at the end
        return None, types
    if not (np.abs(arr) < _BIG).all():  # an int near or past 2**63 (or a float as large): checked at the end
        return None, types
    return arr, types


def _task_size(groups: list[tuple[bool, list[Any], Any, Any, int]]) -> tuple[int, int] | None:
    for g in groups:
        for r in g[1]:
            if isinstance(r, dict):
                w, h = r.get("original_width"), r.get("original_height")
                if (isinstance(w, _NUM) and isinstance(h, _NUM) and not isinstance(w, bool) and 0 < w <= _MAX_SIDE
                        and 0 < h <= _MAX_SIDE and float(w).is_integer() and float(h).is_integer()):
                    return int(w), int(h)
    return None


def _shape(kind: int, v: dict[str, Any], ow: float, oh: float) -> tuple[Any, tuple[float, float, float, float]]:
    """(segmentation, pixel box) of a polygon, ellipse or brush value; rectangles only get checked."""
    if kind == _RECT:
        vals = [_num(v[k]) for k in ("x", "y", "width", "height")]
        sx, sy = ow / 100.0, oh / 100.0
        return None, (vals[0] * sx, vals[1] * sy, vals[2] * sx, vals[3] * sy)
    if kind == _POLY:
        pts = v["points"]
        try:
            arr = np.asarray(pts) if isinstance(pts, list) else None
        except ValueError:  # ragged
            arr = None
        if arr is None or (arr.size and (arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "fiu")):
            raise TypeError("value.points must be a list of [x, y] number pairs")
        arr = arr.reshape(-1, 2)
        if arr.shape[0] < 3:
            raise _Drop("dropped.degenerate", f"a polygon of {arr.shape[0]} point(s) (3 needed)")
        flat = (arr.astype(np.float64) * np.array([ow / 100.0, oh / 100.0])).ravel()
        if not np.isfinite(flat).all():
            raise ValueError("polygon points must be finite numbers")
        xs, ys = flat[0::2], flat[1::2]
        x0, y0 = float(xs.min()), float(ys.min())
        return [flat], (x0, y0, float(xs.max()) - x0, float(ys.max()) - y0)
    if kind == _ELLIPSE:
        cx, cy = _num(v["x"]) * ow / 100.0, _num(v["y"]) * oh / 100.0
        rx, ry = _num(v["radiusX"]) * ow / 100.0, _num(v["radiusY"]) * oh / 100.0
        rot = _num(v.get("rotation") or 0)
        if not all(math.isfinite(q) for q in (cx, cy, rx, ry, rot)):
            raise ValueError("ellipse values must be finite numbers")
        if rx <= 0 or ry <= 0:
            raise _Drop("dropped.degenerate", f"an ellipse with radii {rx:g} x {ry:g} px")
        poly = ellipse_polygon(cx, cy, rx, ry, rot)
        xs, ys = poly[0::2], poly[1::2]
        x0, y0 = float(xs.min()), float(ys.min())
        return [poly], (x0, y0, float(xs.max()) - x0, float(ys.max()) - y0)
    # brush
    if v.get("format", "rle") != "rle" or "rle" not in v:
        raise _Drop("dropped.unsupported", f"a brush in format {v.get('format')!r} (only 'rle' is read)")
    if not float(ow).is_integer() or not float(oh).is_integer():
        raise ValueError(f"original_width/height must be whole pixels for a brush mask, got {ow} x {oh}")
    rle_bytes = v["rle"]
    if not isinstance(rle_bytes, list):
        raise TypeError("value.rle must be a list of byte values")
    mask = ls_rle_decode(rle_bytes, int(oh), int(ow))
    if not mask.any():
        raise _Drop("dropped.degenerate", "an empty brush mask")
    rle = rle_encode(mask > 0)
    return rle, rle_bbox(rle)


# ================================================================================================ streaming
# read() makes one image of the tasks naming the same image: parts that share a name need the whole export
SAME_NAME_ONE_IMAGE = True
STREAM_MIN_BYTES = 4 * _PIECE  # from 32 MB the pipeline streams an export's parts (smaller: read whole, one part)
