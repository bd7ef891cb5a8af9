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

Speed: every region is read by one loop (:meth:`~prelabel.adapters.labelstudio_reader.Reader._results`); a
rectangle is appended as read and its numbers checked with all the rows' at the end, as arrays. An export over 16 MB is read a piece of 8 MB at a time
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

import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import ReadError, UsageError
from ..gcpause import gc_paused
from ..junk import junk_reason
from ..model import Dataset
from ..paths import image_name
from ..report import Report
from . import labelstudio_tasks as tasks
from .base import NeedsWholeRead, ReadOptions
from .labelstudio_reader import Reader, load_config
from .labelstudio_regions import has_labels, is_min
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
        return 0.9 if isinstance(doc.get("data"), dict) and has_labels(doc) else 0.0
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict):
        return 0.0
    first = doc[0]
    if isinstance(first.get("data"), dict) and has_labels(first):
        return 1.0
    if "annotation_id" in first or any(
            isinstance(v, list) and v and isinstance(v[0], dict) and "original_width" in v[0]
            for v in first.values()):
        return 0.9 if "id" in first else 0.5
    return 0.0


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


# ================================================================================================ reading
_PIECE = 8 << 20  # bytes of a large export parsed at a time (peak memory: the objects of one piece)
_PARALLEL_MIN = 4 * _PIECE  # an export at least this large is read by two processes when none is asked for


def _read_run(reader: Reader, f: Path, *, start: int = 0, stop: int | None = None, first: int = 1,
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
                if doc is not None and n == first and (not doc or is_min(doc)) and (first == 1 or part):
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
    return files, load_config(options.extra.get("label_config"))


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a Label Studio export (file or folder of ``.json`` files) into a Dataset, in this process."""
    files, config = _source(path, options)
    return _read_files(files, Reader(options=options, report=report, config=config))


def _read_files(files: list[Path], reader: Reader) -> Dataset:
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
    what it read depends on the rest of the export (see :meth:`Reader.alone`)."""
    run: TaskRun = part.context
    report = Report()
    f = Path(part.source)
    if run.whole:
        files, config = _source(f, options)
        return _read_files(files, Reader(options=options, report=report, config=config))
    reader = Reader(options=options, report=report, config=run.config, part=True)
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


# ================================================================================================ streaming
# read() makes one image of the tasks naming the same image: parts that share a name need the whole export
SAME_NAME_ONE_IMAGE = True
STREAM_MIN_BYTES = 4 * _PIECE  # from 32 MB the pipeline streams an export's parts (smaller: read whole, one part)

