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

import gc
import json
import math
import mmap
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import orjson
import pandas as pd

from ..errors import ReadError, UsageError
from ..geometry import ellipse_polygon, ls_rle_decode, rle_bbox, rle_encode
from ..imagesize import image_size
from ..model import Dataset
from ..paths import IMAGE_EXTENSIONS, safe_join, safe_relative, why_unsafe
from ..report import Report
from .base import ReadOptions

__all__ = ["DESCRIPTION", "NAME", "detect", "image_name", "read"]

NAME = "labelstudio"
DESCRIPTION = "Label Studio JSON / JSON-MIN export, or task files with predictions"

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
_OBJECT_CONTROLS = {"rectanglelabels", "polygonlabels", "ellipselabels", "brushlabels", "labels"}
_HEX_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")
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


# ================================================================================================ names
def image_name(url: str) -> tuple[str | None, str]:
    """The file name a user knows for a Label Studio image URL: ``(name, "")`` or ``(None, why not)``.

    Example:
        >>> image_name("/data/upload/3/1a2b3c4d-photo.jpg")[0], image_name("s3://bkt/dir/a.png")[0]
        ('photo.jpg', 'dir/a.png')
        >>> image_name("/data/local-files/?d=ds%2Fimg%201.jpg")[0], image_name("../x.jpg")
        ('ds/img 1.jpg', (None, "'..' segment escapes the root"))
    """
    u = url.strip()
    if not u:
        return None, "empty image URL"
    if u.lower().startswith("data:"):
        return None, "inline data: URL (no file name)"
    parts = urlsplit(u)
    scheme = parts.scheme.lower()
    if len(scheme) == 1:
        return None, "absolute path"  # a Windows drive letter
    name: str
    if scheme in ("", "http", "https") and (scheme or u.startswith("/")):
        path = unquote(parts.path)
        if "/data/local-files" in path and parts.query:
            d = parse_qs(parts.query).get("d")
            if not d:
                return None, "local-files URL without ?d="
            name = d[0]
        else:
            name = path.rsplit("/", 1)[-1]
            if "/data/upload/" in path:
                name = _HEX_PREFIX.sub("", name)
            if not name:
                return None, "URL has no file name"
    elif scheme:
        if not parts.netloc:
            return None, f"{scheme}: URL without a bucket"
        name = parts.path.lstrip("/")
        if not name:
            return None, f"{scheme}: URL without a key"
    else:
        name = u
    safe = safe_relative(name)
    if safe is None:
        return None, why_unsafe(name) or "unsafe file name"
    return safe, ""


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
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    text = str(spec)
    where = "label_config"
    if not text.lstrip().startswith("<"):
        where = text
        try:
            text = Path(text).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise ReadError(where, f"cannot read the label config: {e}") from None
    try:
        root = ElementTree.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise ReadError(where, "not a valid label config: XML entities/DTD are not allowed",
                        hint="remove the <!DOCTYPE ...> and <!ENTITY ...> declarations") from None
    except (ElementTree.ParseError, ValueError) as e:  # ValueError: an encoding expat cannot read
        raise ReadError(where, f"not a valid label config: {e}") from None
    cfg = _Config()
    for el in root.iter():
        tag = str(el.tag).lower()
        name = el.get("name")
        if not name:
            continue
        if el.get("value", "").startswith("$") and el.get("toName") is None:
            cfg.image_keys[name] = el.get("value", "")[1:]
        if el.get("toName") is None:
            continue
        labels = [(c.get("alias") or c.get("value") or "", c.get("model_index"), k)
                  for k, c in enumerate(el.iter()) if str(c.tag).lower() in ("label", "choice")]
        labels = [t for t in labels if t[0]]
        if tag == "keypointlabels":
            order = sorted(labels, key=lambda t: (int(t[1]) if (t[1] or "").isdigit() else 1 << 30, t[2]))
            cfg.keypoints[name] = [t[0] for t in order]
        elif tag in _OBJECT_CONTROLS:
            cfg.categories.extend(t[0] for t in labels if t[0] not in cfg.categories)
        elif tag == "choices":
            cfg.choices.add(name)
    return cfg


# ================================================================================================ reading
def _is_min(doc: list[Any]) -> bool:
    """A JSON-MIN export: its first record is an object with no ``data`` and no labelled results."""
    return bool(doc) and isinstance(doc[0], dict) and "data" not in doc[0] and not _has_labels(doc[0])


def _loads(data: bytes, file: str) -> Any:
    enabled = gc.isenabled()
    gc.disable()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            first = e
        if b"NaN" in data or b"Infinity" in data:
            # NaN / Infinity are not JSON; read them so that the check of numbers names the task
            try:
                return json.loads(data)
            except (ValueError, RecursionError):
                pass
        raise ReadError(file, f"not valid JSON: {first}")
    finally:
        if enabled:
            gc.enable()


_PIECE = 8 << 20  # bytes of a large export parsed at a time (peak memory: the objects of one piece)
# where the next top-level task may start: "}" "," "{" then an integer "id" (results have string ids);
# each candidate is checked by parsing the piece it ends (a piece that parses is a run of whole tasks)
_NEXT_TASK = re.compile(rb'\}\s*,\s*(\{)\s*"id"\s*:\s*-?\d')
_MAX_MISSES = 8
_LIST_START = re.compile(rb"\s*\[")


def _valid_json(raw: bytes, file: str) -> None:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        _loads(raw, file)  # raises the whole file's error


def _read_file_in_pieces(reader: _Reader, path: Path) -> bool:
    """Read a large export (a JSON list of tasks) a few MB at a time from a memory map of the file, so that
    only one piece (its bytes and its objects) is in memory at once; the tasks, their order and numbering are
    those of the whole file. Returns False, having read nothing, when the file is not suited (small, not a
    list, JSON-MIN, or no boundary found): the caller then reads the whole file."""
    try:
        if path.stat().st_size < 2 * _PIECE:
            return False
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _read_in_pieces(reader, mm, str(path))
    except (OSError, ValueError):  # not a regular file, cannot be mapped: read as a whole (which reports it)
        return False


def _read_in_pieces(reader: _Reader, raw: mmap.mmap, file: str) -> bool:
    opening = _LIST_START.match(raw, 3 if raw[:3] == b"\xef\xbb\xbf" else 0)
    if opening is None:
        return False
    start = opening.end()
    first = 1
    page = mmap.PAGESIZE
    gc.disable()  # read() enables it again at the end, as for a whole file
    while True:
        doc: Any = None
        nxt = -1
        m = _NEXT_TASK.search(raw, start + _PIECE) if start + _PIECE < len(raw) else None
        for _ in range(_MAX_MISSES):
            if m is None:
                break
            try:
                doc = orjson.loads(b"[" + raw[start:m.start() + 1] + b"]")
                nxt = m.start(1)
                break
            except orjson.JSONDecodeError:  # not a top-level boundary: try the next one
                m = _NEXT_TASK.search(raw, m.start() + 1)
        if doc is None:  # the rest in one go
            try:
                doc = orjson.loads(b"[" + raw[start:])
            except orjson.JSONDecodeError:
                if first == 1:
                    return False
                # the whole file's error; or NaN / Infinity, which _loads reads as json does: the rest of it
                whole = _loads(raw[:], file)
                if not isinstance(whole, list):
                    raise ReadError(file, "not valid JSON") from None
                doc = whole[first - 1:]
                del whole
        if first == 1 and (not doc or _is_min(doc)):
            return False
        try:
            reader.read_doc(doc, file, first=first, check_min=False)
        except ReadError:
            del doc
            if nxt >= 0:  # as for a whole file, a JSON syntax error further on is the error to report
                _valid_json(raw[:], file)
            raise
        first += len(doc)
        del doc
        if nxt < 0:
            return True
        start = nxt
        if start >= page:  # the bytes read so far leave this process's memory (they stay in the page cache)
            raw.madvise(mmap.MADV_DONTNEED, 0, start - start % page)


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a Label Studio export (file or folder of ``.json`` files) into a Dataset."""
    if options.ls_select not in SELECT_CHOICES:
        raise UsageError(f"ls_select must be one of {', '.join(SELECT_CHOICES)}, got {options.ls_select!r}")
    if options.ls_annotator not in ANNOTATOR_CHOICES:
        raise UsageError(f"ls_annotator must be one of {', '.join(ANNOTATOR_CHOICES)}, "
                         f"got {options.ls_annotator!r}")
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files:
        raise ReadError(str(p), "no .json files in this folder")
    config = _load_config(options.extra.get("label_config"))
    reader = _Reader(options=options, report=report, config=config)
    enabled = gc.isenabled()
    try:
        for f in files:
            if _read_file_in_pieces(reader, f):
                continue
            try:
                raw = f.read_bytes()
            except OSError as e:
                raise ReadError(str(f), f"cannot read: {e}") from None
            doc = _loads(raw, str(f))
            del raw
            gc.disable()
            reader.read_doc(doc, str(f))
            del doc
        return reader.finish()
    finally:
        if enabled:
            gc.enable()


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

    def __init__(self, *, options: ReadOptions, report: Report, config: _Config | None) -> None:
        self.opts = options
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
        self.r_geo: list[tuple[Any, ...]] = []
        self.r_pct: list[bool] = []
        self.r_seg: list[Any] = []
        self.r_score: list[Any] = []
        self.r_attrs: list[dict[str, Any] | None] = []
        self.r_file: list[str] = []
        self.r_line: list[int] = []
        self.kp_rows: dict[int, dict[str, tuple[float, float]]] = {}
        self.kp_names: dict[str, list[str]] = {}        # category -> keypoint names (first appearance)
        self.kp_controls: dict[str, list[str]] = {}     # category -> KeyPointLabels from_names seen
        # drops: reason, category, file, line, message
        self.drops: list[tuple[str, str | None, str, int, str]] = []
        # notes gathered for one line each
        self.choices_seen: dict[str, list[Any]] = {}   # from_name -> [count, first source]
        self.relations = 0
        self.cur: Any = None
        self.task_ids: dict[tuple[str, int], Any] = {}  # (file, line) -> task id, for errors found at the end
        self.rotated_images: list[str] = []
        self.from_header = 0

    # ------------------------------------------------------------------------------------------ documents
    def read_doc(self, doc: Any, file: str, *, first: int = 1, check_min: bool = True) -> None:
        """Read the tasks of ``doc`` (numbered from ``first``: a piece of a file continues its numbering;
        ``check_min=False``: the file's first task already said it is not JSON-MIN)."""
        self.file = file
        if isinstance(doc, dict):
            doc = [doc]
        if not isinstance(doc, list):
            raise ReadError(file, f"expected a JSON list of tasks (or one task object), got {type(doc).__name__}")
        if check_min and _is_min(doc):
            doc = self._from_min(doc, file)
        for ti, task in enumerate(doc, first):
            if not isinstance(task, dict):
                raise ReadError(file, f"task must be an object, got {type(task).__name__}", line=ti)
            line = task.get("__line", ti)
            self.task_ids.setdefault((file, line), task.get("id"))
            self.cur = None
            try:
                self._task(task, line)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
                what = (f"missing field {e.args[0]!r}" if isinstance(e, KeyError) else
                        "a value is nested too deeply" if isinstance(e, RecursionError) else str(e))
                rid = self.cur.get("id") if isinstance(self.cur, dict) else None
                where = f"region {rid!r}: " if rid is not None else ""
                raise ReadError(file, f"{where}{what}", line=line, element=f"task={task.get('id')}") from None

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
            self.task_ids[(file, li)] = tid
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
        # the image: its URL from the first region's to_name, its name, its size
        to_name = next((r.get("to_name") for g in groups for r in g[1] if isinstance(r, dict)
                        and r.get("to_name")), None)
        url = self._url(data, to_name)
        n_regions = sum(_count_regions(g[1]) for g in groups)
        name, why = image_name(url) if url is not None else (None, "")
        if name is None or url is None:
            problem = (f"{label}: no image URL in data (keys: {', '.join(map(str, data)) or 'none'}); task skipped"
                       if url is None else f"{label}: image {url!r} is not a usable file name ({why}); task skipped")
            if n_regions:
                self._drop_all(groups, "dropped.no_image", problem)
            else:
                self.report.note("dropped.no_image", f"{self.file}:{line}", problem)
            return
        size = _task_size(groups) or _task_size(self._all_groups(task))
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
                why = ("no original_width/height and no --images" if self.root is None else
                       f"no original_width/height and image {name!r} not found under --images" if not found
                       else f"no original_width/height and {name!r} is not a readable image")
                if n_regions:
                    self._drop_all(groups, "dropped.no_image", f"{label}: {why}")
                else:
                    self.report.note("dropped.no_image", f"{self.file}:{line}",
                                     f"{label}: image {name!r} left out: {why}")
                return
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
        first = next((r for g in groups for r in g[1] if isinstance(r, dict) and r.get("image_rotation")), None)
        if first is not None:
            self.rotated_images.append(f"{self.file}:{line}")
        for is_pred, results, base, score, gline in groups:
            self._results(results, img, size, label, base, is_pred, score if is_pred else math.nan, gline,
                          to_name, data)

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
                    rid = r.get("id")
                    if rid is not None:
                        region_row[rid] = len(r_img)
                    r_img.append(img)
                    r_cat.append(labs[0])
                    r_geo.append((v["x"], v["y"], v["width"], v["height"], v.get("rotation") or 0,
                                  r.get("original_width", W), r.get("original_height", H)))
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
                r_geo.append((v["x"], v["y"], v["width"], v["height"], v.get("rotation") or 0, ow, oh))
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
                v = r.get("value")
                labs = _labels_of(v, str(r.get("type"))) if isinstance(v, dict) else None
                cat = labs[0] if isinstance(labs, list) and labs and isinstance(labs[0], str) else None
                self._drop(reason, cat, line, f"{message} (region {r.get('id')})")

    def _drop_all(self, groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]], reason: str,
                  message: str) -> None:
        for _, results, base, _, line in groups:
            self._drop_regions(results, reason, line, f"{message}; {_source_name(base)}")

    # ------------------------------------------------------------------------------------------ finish
    def finish(self) -> Dataset:
        n = len(self.r_img)
        x, y, w, h, segs, attrs = self._boxes()
        kp_col = self._keypoint_column(n)
        cats = list(self.config.categories) if self.config else []
        known = set(cats)
        for c in pd.unique(pd.Series(self.r_cat, dtype=object)) if n else []:
            if c not in known:
                cats.append(str(c))
                known.add(c)
        cat_kp = [self._category_keypoints(c) for c in cats]
        report = self.report
        report.add_read(n + len(self.drops))
        self._report_drops()
        self._notes()
        return Dataset.build(
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

    def _boxes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any], list[Any]]:
        n = len(self.r_geo)
        segs = self.r_seg
        attrs = self.r_attrs
        if n == 0:
            z = np.zeros(0, dtype=np.float64)
            return z, z, z, z, segs, attrs
        try:
            geo = np.array(self.r_geo)
        except ValueError:  # a nested list where a number belongs: inhomogeneous rows
            self._bad_number()
        if geo.dtype.kind not in "fiu" or geo.ndim != 2:
            self._bad_number()
        geo = geo.astype(np.float64)
        if not np.isfinite(geo).all():
            i = int(np.flatnonzero(~np.isfinite(geo).all(axis=1))[0])
            self._fail(i, "coordinates must be finite numbers (NaN or Infinity found)")
        pct = np.asarray(self.r_pct, dtype=bool)
        ow, oh = geo[:, 5], geo[:, 6]
        bad = pct & ((ow <= 0) | (oh <= 0) | (ow > _MAX_SIDE) | (oh > _MAX_SIDE))
        if bad.any():
            self._fail(int(np.flatnonzero(bad)[0]), f"original_width/height must be > 0 and at most {_MAX_SIDE}")
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
        return x, y, w, h, segs, attrs

    def _bad_number(self) -> None:
        for i, tup in enumerate(self.r_geo):
            for v in tup:
                if type(v) not in _NUM:
                    self._fail(i, f"coordinates and original_width/height must be numbers, got {reprlib.repr(v)}")
        self._fail(0, "coordinates must be numbers")

    def _fail(self, row: int, message: str) -> None:
        file, line = self.r_file[row], self.r_line[row]
        raise ReadError(file, f"{self.r_cat[row]!r} region: {message}", line=line,
                        element=f"task={self.task_ids.get((file, line))}")

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

    def _report_drops(self) -> None:
        if not self.drops:
            return
        frame = pd.DataFrame(self.drops, columns=["reason", "category", "src_file", "src_line", "message"])
        for reason in pd.unique(frame["reason"]):
            self.report.drop(str(reason), frame[frame["reason"] == reason])

    def _notes(self) -> None:
        rep = self.report
        for name, (count, src) in self.choices_seen.items():
            rep.note("image.attribute", src, f"choices '{name}' of {count} annotation(s) kept as image attributes "
                     f"(attributes['choices']['{name}'])", severity="info")
        if self.relations:
            rep.note("dropped.unsupported", self.file, f"{self.relations} relation(s) between regions not kept "
                     "(COCO has no relations)", severity="info")
        if self.rotated_images:
            rep.note("coordinates.suspect", self.rotated_images[0],
                     f"{len(self.rotated_images)} task(s) record an image_rotation: their coordinates are read "
                     "as given, against original_width x original_height")
        if self.from_header:
            rep.note("image.size_from_header", str(self.root), f"{self.from_header} image size(s) read from the "
                     "image files (the export has no original_width/height for them)", severity="info")


def _source_name(base: dict[str, Any] | None) -> str:
    if not base:
        return "annotation"
    if "prediction_id" in base or "model_version" in base:
        return f"prediction {base.get('prediction_id', base.get('model_version'))}"
    return f"annotation {base.get('annotation_id')}"


def _is_region(r: dict[str, Any]) -> bool:
    t = r.get("type")
    return t != "relation" and t not in _CLASSIFICATION


def _count_regions(results: list[Any]) -> int:
    return sum(1 for r in results if isinstance(r, dict) and _is_region(r))


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
