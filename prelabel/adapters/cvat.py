"""CVAT for images 1.1 and CVAT for video 1.1 (XML): task, job and project exports.

What becomes what:

- Categories are the labels of ``<meta>`` in their order (labels of type ``tag`` hold no objects and are left
  out). A skeleton label's sub-labels (``<parent>``) are its keypoint names, in ``<meta>`` order; its edges
  come from the label's ``<svg>`` (``<line data-node-from data-node-to>``, turned into 1-based COCO pairs).
- ``box`` is a box; with ``rotation`` (degrees about the box centre, clockwise on screen) it becomes the
  rotated rectangle as a polygon, its enclosing box as the bbox, and ``rotation`` in the attributes.
  ``polygon`` is a polygon; ``ellipse`` a 64-vertex polygon (:func:`prelabel.geometry.ellipse_polygon`);
  ``mask`` (row-major run lengths inside ``left top width height``) a COCO RLE of the whole image with
  ``iscrowd`` 0; ``skeleton`` COCO keypoints (outside node: ``v=0, x=y=0``; occluded: ``v=1``; else ``v=2``;
  bbox = extent of the labelled points).
- ``polyline``, ``cuboid`` and (by default) ``points`` are not areas: each is counted and dropped with
  ``dropped.unsupported``. ``options.cvat_points == "keypoints"`` keeps ``points`` as keypoints of their
  category (named ``"1".."K"``, K the largest count seen; shorter shapes are padded with ``v=0``).
- ``tag`` is image-level: kept in the image attributes as ``tags: [label, ...]`` (one ``image.attribute``
  info note per file); tags are not object annotations and are not counted.
- ``occluded``, ``z_order``, ``group_id``, ``source``, ``track_id``, ``keyframe`` and ``<attribute>`` children go
  to the annotation's attributes (checkbox attributes as booleans, number attributes as numbers, per
  ``<meta>``); a shape inside ``<image>`` marked ``outside="1"`` (datumaro) is dropped as
  ``dropped.outside_frame``.
- Project exports: images are known by their ``subset`` and ``name``; the subset (and ``task_id``) are image
  attributes. When the export holds several subsets (the same name may then be a different picture in each),
  ``file_name`` is ``<subset>/<name>``, as CVAT lays out the exported images (``images/<subset>/``), with an info
  note ``image.by_subset``; with one subset it is the name. A shape with an empty ``label`` is dropped as
  ``dropped.unknown_category``.

Video (tracks): the task's frames are ``start_frame, start_frame + step, ... <= stop_frame`` (``frame_filter``
``step=N``; absolute task frame numbers). Each becomes an image named ``options.frame_pattern`` formatted
with ``frame=<number>`` (default ``frame_000010.png``) of the ``original_size``. A track's shape at a frame is
the listed shape there, else a linear interpolation between the listed shapes around it (boxes, ellipses,
rotation along the shorter arc, polygons and points with the same number of points; other pairs repeat the
earlier shape), else, after its last listed shape, that shape repeated to the end of the task, as CVAT does.
Nothing is written while a track is ``outside``; a track may reappear. The track id and keyframe flag go to
the attributes. The ledger counts per-frame annotations: each frame a track writes counts as one annotation
read (an ``outside`` marker is not an annotation); a listed shape at a frame the task does not have is
dropped with ``dropped.no_image``. A project export with tracks takes its frames from the first task that
describes them.

The file is parsed as a stream with expat (elements are never kept; numbers go straight to flat arrays, labels
are kept once), so a large export needs memory for its annotations, not for its XML tree. ``iter_chunks`` goes
further: it hands out the images closed so far, in chunks of about ``chunk_rows`` rows, and forgets them, so its
memory follows the chunk size, not the file; a video export (tracks, frame tags), an image listed again after
its chunk, or a category whose keypoints change after a chunk (a skeleton label missing from ``<meta>``,
``cvat_points="keypoints"`` counts that grow) raise ``NeedsWholeRead`` for ``read()`` to take over. A DOCTYPE, entity declaration or
external entity is refused with a ReadError naming the file, before anything is expanded. Source locations
are ``file:line`` of each element (of the track for interpolated frames).

Speed: a CVAT for images file of 16 MB to 96 MB is parsed by two processes where fork is cheap and safe
(Linux, two cores available, no other thread in this process; ``extra["cvat_workers"]`` or the environment
variable ``PRELABEL_CVAT_WORKERS``: 1 never): after ``<meta>``, a forked worker parses from an ``<image>`` near
the middle to the end while this process parses the start, then hands its columns back (see :class:`_Split`).
The split is taken only where this process's own parser ends an image at depth 2 right before it; anything
unusual in the worker's part (an error, tracks, frame tags, an image listed twice or also listed earlier, a
skeleton missing from ``<meta>``, points kept as keypoints) makes this process parse that part itself, so the
dataset, the chunks, the report and every error are those of one process.

Example:
    >>> import tempfile, pathlib
    >>> from prelabel.report import Report
    >>> from prelabel.adapters.base import ReadOptions
    >>> xml = ('<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>'
    ...        '</labels></task></meta><image id="0" name="a.jpg" width="64" height="48">'
    ...        '<box label="car" occluded="0" xtl="1" ytl="2" xbr="11" ybr="22"/></image></annotations>')
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "annotations.xml"
    >>> _ = p.write_text(xml)
    >>> detect(p)
    0.95
    >>> ds = read(p, options=ReadOptions(), report=Report())
    >>> ds.boxes.tolist(), ds.annotations.loc[0, "attributes"]
    ([[1.0, 2.0, 10.0, 20.0]], {'occluded': False})
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

import numpy as np
import pandas as pd

from ..errors import ReadError, UsageError, option
from ..geometry import (
    angle_lerp,
    cvat_rle_to_coco,
    ellipse_polygon,
    keyframe_lerp,
    rle_bbox,
    rotated_box_center,
)
from ..junk import junk_reason
from ..model import Dataset
from ..paths import safe_join, safe_relative, why_unsafe
from ..report import Report
from ..workers import fork_worker, may_fork, stop_worker, wanted_workers
from .base import DEFAULT_CHUNK_ROWS, NeedsWholeRead, ReadOptions, frame_file_name

__all__ = ["DESCRIPTION", "NAME", "detect", "iter_chunks", "read"]

NAME = "cvat"
DESCRIPTION = "CVAT for images 1.1 / CVAT for video 1.1 XML (task, job and project exports)"

_CHUNK = 1 << 20
_HEAD = 64 * 1024
_MAX_SIDE = 2**31 - 1  # the largest image width/height accepted (int32, as pycocotools)
_MAX_FRAMES = 1_000_000  # a video task with more frames is a broken <meta> (each frame becomes an image row)
_SHAPES = frozenset({"box", "polygon", "polyline", "points", "ellipse", "mask", "skeleton", "cuboid"})
_UNSUPPORTED = frozenset({"polyline", "cuboid"})
_STEP_RE = re.compile(r"step\s*=\s*(\d+)")
_LINE_RE = re.compile(r"<line\b[^>]*>", re.IGNORECASE)
_CIRCLE_RE = re.compile(r"<circle\b[^>]*>", re.IGNORECASE)
_SVG_ATTR_RE = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')
_FIRST_TAG_RE = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_SPLIT_MIN = 16 * 2**20   # a file at least this large is parsed by two processes (see _Split) ...
_SPLIT_MAX = 96 * 2**20   # ... and at most this large: the worker's part is held in memory until it is merged
                          # (~2.3 MB per MB of XML; a 405 MB file peaked at 957 MB with the split, 248 MB without)
_SPLIT_SHARE = 0.42       # the part after </meta> that the reader parses itself (it also builds the chunks)
_SPLIT_RE = re.compile(rb"</image\s*>\s*(<image[\s/>])")
_ENCODING_RE = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")


class _Bad(Exception):
    """A malformed element; turned into a ReadError with the file and line by the parse loop."""


# ------------------------------------------------------------------------------------------------ detect
def _xml_root(head: bytes) -> bytes | None:
    """The root element name of an XML file from its first bytes (declaration and comments skipped)."""
    text = re.sub(rb"<\?.*?\?>|<!--.*?-->", b"", head, flags=re.DOTALL)
    m = _FIRST_TAG_RE.search(text)
    return m.group(1) if m else None


def _detect_file(path: Path) -> float:
    if path.suffix.lower() != ".xml" or not path.is_file():
        return 0.0
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if _xml_root(head) != b"annotations":
        return 0.0
    return 0.95 if (b"<version>" in head or b"<meta>" in head) else 0.3


def _xml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml" and junk_reason(p.name) is None
                  and p.is_file())


def detect(path: Path) -> float:
    """0.95 for an XML whose root is ``<annotations>`` with ``<version>`` or ``<meta>`` (0.9 for a folder
    holding one at its top level); 0.3 for a bare ``<annotations>`` root; else 0."""
    p = Path(path)
    if p.is_dir():
        scores = [_detect_file(f) for f in _xml_files(p)[:20]]
        return 0.9 if scores and max(scores) >= 0.95 else 0.0
    return _detect_file(p)


# ------------------------------------------------------------------------------------------------ read
def _inputs(p: Path, options: ReadOptions) -> tuple[list[Path], Path | None]:
    """The CVAT XML files that ``path`` names (one file, or those at the top of a folder) and the images root."""
    if p.is_dir():
        files = [f for f in _xml_files(p) if _detect_file(f) >= 0.95]
        if not files:
            raise ReadError(str(p), "no CVAT XML file (root <annotations> with <meta>) in this folder")
        return files, options.images or (p / "images" if (p / "images").is_dir() else None)
    if not p.is_file():
        raise ReadError(str(p), "no such file")
    return [p], options.images or (p.parent / "images" if (p.parent / "images").is_dir() else None)


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a CVAT XML file (or every CVAT XML at the top of a folder) into a Dataset (see the module doc)."""
    files, root = _inputs(Path(path), options)
    parts = [_Reader(f, options=options, report=report, images_root=root).run() for f in files]
    return parts[0] if len(parts) == 1 else Dataset.concat(parts, report=report)


def iter_chunks(path: Path, *, options: ReadOptions, report: Report,
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Dataset]:
    """``read()``'s dataset in chunks of whole images (the protocol of :mod:`prelabel.adapters.base`).

    A chunk is closed at the first ``</image>`` after which it holds ``chunk_rows`` annotation rows or images;
    the rows already handed out are released, so memory follows ``chunk_rows``, not the file. A folder is read
    file after file, as ``read()`` concatenates them. Raises :class:`NeedsWholeRead` for video exports
    (``<track>``, frame ``<tag>``), an image listed again after its chunk was handed out, and a category whose
    definition changes after a chunk naming it was handed out (a skeleton missing from ``<meta>``, the
    keypoint count of ``cvat_points="keypoints"`` growing); every drop and note goes to ``report`` as
    ``read()`` puts it, the aggregated ones with the last chunk.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    files, root = _inputs(Path(path), options)
    for f in files:
        yield from _Reader(f, options=options, report=report, images_root=root, chunk_rows=chunk_rows).chunks()


def _line_breaks(text: bytes) -> int:
    """The line breaks in ``text`` as expat counts them (``\\n``, ``\\r\\n`` and ``\\r``)."""
    return text.count(b"\n") + text.count(b"\r") - text.count(b"\r\n")


def _split_wanted(options: ReadOptions) -> bool:
    """Whether a worker process may parse part of a large file (the one worker policy,
    :func:`prelabel.workers.wanted_workers`: ``workers``, its alias ``cvat_workers``, ``PRELABEL_WORKERS``, its
    alias ``PRELABEL_CVAT_WORKERS``: 1 never, 2 where fork is safe; default: when this process may use two
    cores and has one OS thread)."""
    if not may_fork():
        return False  # fork only where it is cheap and safe: Linux, and no other thread that holds a lock
    want = wanted_workers(options.extra, "cvat_workers")
    if want is not None:
        return want >= 2
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus >= 2


class _Split:
    """A forked worker that parses a CVAT file from an ``<image>`` near the middle (``split``, right after the
    ``</image>`` at ``last_end``) to its end, with the ``<meta>`` its parent had read, and leaves its columns in
    shared memory (their size, then their pickle). It gives up (no result) on any error and on whatever its
    parent could not merge as if it had read on itself: the parent then parses that part, with its errors."""

    def __init__(self, pid: int, last_end: int, split: int, shm: mmap.mmap) -> None:
        self.pid = pid  # 0 once waited for
        self.last_end = last_end
        self.split = split
        self.shm = shm

    @classmethod
    def start(cls, reader: _Reader, mm: mmap.mmap, meta_end: int) -> _Split | None:
        n = len(mm)
        m = _SPLIT_RE.search(mm, meta_end + int((n - meta_end) * _SPLIT_SHARE))
        if m is None:
            return None
        split = m.start(1)
        started = fork_worker(4 * (n - split) + (16 << 20), lambda shm: _split_work(reader, mm, split, shm))
        if started is None:  # (a worker that fails leaves this part to this process, which reports its errors)
            return None
        return cls(started[0], m.start(), split, started[1])

    def stop(self) -> None:
        if self.pid:
            pid, self.pid = self.pid, 0
            stop_worker(pid)
        self.shm.close()

    def result(self) -> tuple[Any, ...] | None:
        """Wait for the worker: its columns, or None when it gave up."""
        try:
            pid, self.pid = self.pid, 0
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                return None
            size = int.from_bytes(self.shm[0:8], "little")
            if not size:
                return None
            state: tuple[Any, ...] = pickle.loads(self.shm[8:8 + size])
            return state
        except (OSError, ValueError, pickle.UnpicklingError, EOFError):  # then this process parses that part
            return None
        finally:
            self.shm.close()


def _split_work(reader: _Reader, mm: mmap.mmap, split: int, shm: mmap.mmap) -> None:
    """The worker: parse ``<annotations>`` + the file from ``split`` on (lines counted from there) and leave the
    columns in ``shm`` when its parent can merge them."""
    gc.disable()
    nodes = {k: list(v) for k, v in reader.nodes.items()}
    reader.chunk_rows = 0  # one piece: the parent cuts it into chunks
    p = reader._parser()
    reader.stack = []
    p.Parse(b"<annotations>", False)
    for pos in range(split, len(mm), _CHUNK):
        p.Parse(mm[pos:pos + _CHUNK], False)
    p.Parse(b"", True)
    r = reader
    if (r.repeated or r.has_tracks or r.frame_tags or r.pending_tracks or r.frame_rows or r.kp_k or r.sealed
            or r.nodes != nodes or r.kp_points_rows):
        return
    state = (list(r.img_key), r.img_name, r.img_w, r.img_h, r.img_attrs, r.img_line, r.a_box, r.a_il, r.a_cat,
             r.a_seg, r.a_kp, r.a_attr, r.clipped_rows, r.d_reason, r.d_cat, r.d_line, r.d_msg, r.tag_count,
             r.tag_line)
    shm.seek(8)
    pickle.dump(state, shm, protocol=pickle.HIGHEST_PROTOCOL)
    shm[0:8] = (shm.tell() - 8).to_bytes(8, "little")


class _TShape:
    """One listed shape of a track (tracks are few; their shapes are small objects)."""

    __slots__ = ("attrs", "frame", "keyframe", "kind", "line", "mask", "occluded", "outside", "rot", "vec",
                 "z_order")

    def __init__(self, frame: int, kind: str, vec: tuple[float, ...], rot: float, outside: bool,
                 occluded: bool, keyframe: bool, z_order: int | None, attrs: dict[str, Any], line: int,
                 mask: tuple[str, int, int, int, int] | None) -> None:
        self.frame, self.kind, self.vec, self.rot = frame, kind, vec, rot
        self.outside, self.occluded, self.keyframe, self.z_order = outside, occluded, keyframe, z_order
        self.attrs, self.line, self.mask = attrs, line, mask


class _Track:
    __slots__ = ("bad", "elements", "group_id", "id", "label", "line", "shapes", "source")

    def __init__(self, tid: str, label: str, group_id: str | None, source: str | None, line: int) -> None:
        self.id, self.label, self.group_id, self.source, self.line = tid, label, group_id, source, line
        self.shapes: list[_TShape] = []
        self.elements: list[_Track] = []
        self.bad: str | None = None  # why a shape of the track could not be read: the whole track is dropped


def _parse_points(text: str) -> tuple[float, ...]:
    """``"x,y;x,y"`` as a flat tuple of floats."""
    if not text.strip():
        return ()
    vals = tuple(float(v) for v in text.replace(";", ",").split(","))
    if len(vals) % 2:
        raise _Bad(f"points {text[:60]!r} has an odd number of coordinates")
    return vals


def _frame_step(text: str) -> int:
    m = _STEP_RE.search(text or "")
    return max(int(m.group(1)), 1) if m else 1


class _Cols:
    """The column lists of the images and rows not yet handed out (taken from the reader as one piece)."""

    __slots__ = ("a_attr", "a_box", "a_cat", "a_il", "a_kp", "a_seg", "clipped_rows", "img_attrs", "img_h",
                 "img_line", "img_name", "img_w", "kp_k", "kp_points_rows", "nodes")
    LISTS = ("a_attr", "a_box", "a_cat", "a_il", "a_kp", "a_seg", "clipped_rows", "img_attrs", "img_h",
             "img_line", "img_name", "img_w", "kp_points_rows")

    img_name: list[str]
    img_w: list[int]
    img_h: list[int]
    img_attrs: list[dict[str, Any] | None]
    img_line: list[int]
    a_box: array[float]
    a_il: array[int]
    a_cat: list[str]
    a_seg: list[Any]
    a_kp: list[Any]
    a_attr: list[dict[str, Any] | None]
    kp_points_rows: list[int]
    clipped_rows: list[int]

    def __init__(self, *, nodes: dict[str, list[str]], kp_k: dict[str, int]) -> None:
        self.nodes = nodes  # the skeleton node names known when the chunk closed
        self.kp_k = kp_k    # the keypoint counts of <points> known when the chunk closed


class _Reader:
    """One file's streaming parse: expat callbacks fill column lists; :meth:`run` builds the Dataset, and
    :meth:`chunks` hands the closed images out in pieces (``chunk_rows``) as the parse goes."""

    def __init__(self, path: Path, *, options: ReadOptions, report: Report, images_root: Path | None,
                 chunk_rows: int = 0) -> None:
        self.path = path
        self.file = str(path)
        self.options = options
        self.report = report
        self.images_root = images_root
        if options.cvat_points not in ("skip", "keypoints"):
            raise UsageError(f"{option('cvat_points')} must be 'skip' or 'keypoints', got {options.cvat_points!r}")
        self.points_as_kp = options.cvat_points == "keypoints"
        self.stack: list[str] = []
        self.parser: Any = None
        self.strs: dict[str, str] = {}  # labels, sources and attribute names: each value kept once
        # meta
        self.in_meta = False
        self.text: list[str] = []
        self.labels: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.meta_done = False
        self.attr_types: dict[str, dict[str, str]] = {}
        self.nodes: dict[str, list[str]] = {}
        # images
        self.img_key: dict[tuple[str, str], int] = {}
        self.img_name: list[str] = []
        self.img_w: list[int] = []
        self.img_h: list[int] = []
        self.img_attrs: list[dict[str, Any] | None] = []
        self.img_line: list[int] = []
        self.cur_img = -1
        self.repeated = False  # an image listed twice (its rows were added to the first one)
        self.by_subset = False  # a project export of several subsets: images are named <subset>/<name>
        # annotation columns: numbers in flat arrays (no Python object per number), one entry per row elsewhere
        self.a_box: array[float] = array("d")  # x0, y0, x1, y1 of each row
        self.a_il: array[int] = array("q")     # image, line of each row
        self.a_cat: list[str] = []
        self.a_seg: list[Any] = []
        self.a_kp: list[Any] = []
        self.a_attr: list[dict[str, Any] | None] = []
        self.kp_points_rows: list[int] = []  # rows holding <points> kept as keypoints (padded at the end)
        self.clipped_rows: list[int] = []    # masks cut at the image border
        # drops (counted in bulk at the end)
        self.d_reason: list[str] = []
        self.d_cat: list[str | None] = []
        self.d_line: list[int] = []
        self.d_msg: list[str] = []
        # current element state
        self.cur_attrs: dict[str, Any] | None = None  # where <attribute> children go
        self.shared_attrs: dict[tuple[str | None, ...], dict[str, Any]] = {}  # plain boxes' attributes, shared
        self.cur_shared_row = -1  # the row whose attributes dict is shared (copied before a child changes it)
        self.cur_label = ""
        self.attr_depth = 0
        self.attr_name = ""
        self.skel: dict[str, Any] | None = None
        self.track: _Track | None = None
        self.subtrack: _Track | None = None
        # video
        self.frame_tags: dict[int, list[str]] = {}
        self.tag_count = 0
        self.tag_line = 0
        self.max_frame: int | None = None
        self.frame_rows: dict[int, int] = {}
        self.frames_ready = False
        self.frame_list: list[int] = []
        self.frame_set: set[int] = set()
        self.fw = self.fh = 0
        self.pending_tracks: list[_Track] = []  # held only when <meta> gives no stop_frame nor size
        self.has_tracks = False
        self.mode = ""
        self.approx_tracks: list[str] = []
        # what the whole file decides (kept across chunks)
        self.used_cats: set[str] = set()    # category names of the rows built so far
        self.kp_k: dict[str, int] = {}      # <points> kept as keypoints: the largest count per category
        self.missing_images = 0             # images not found under the images root
        self.clip_rows: list[pd.DataFrame] = []  # category, src_file, src_line of masks cut at the border
        # streaming (chunk_rows > 0): chunks closed at an </image> once this many rows or images are pending
        self.chunk_rows = chunk_rows
        self.seal_due = False               # the next <image> starts a new chunk
        self.sealed: list[_Cols] = []       # closed chunks not yet built
        self.done_keys: set[tuple[str, str]] = set()  # images already handed out
        self.prev_cats: list[tuple[Any, Any, Any]] | None = None  # the category table of the last chunk

    # ------------------------------------------------------------------ driving the parser
    def _parser(self) -> Any:
        p = expat.ParserCreate()
        p.buffer_text = True
        p.buffer_size = 1 << 16
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._refuse_doctype
        p.EntityDeclHandler = self._refuse_entity
        p.ExternalEntityRefHandler = self._refuse_external
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        self.parser = p
        return p

    def _parse(self) -> Iterator[None]:
        """Feed the file to expat piece by piece; pause (yield) after each piece that closed a chunk."""
        p = self._parser()
        try:
            mapped = self._mapped()
            if mapped is not None:
                with mapped[0], mapped[1]:
                    yield from self._feed_split(p, mapped[1])
                return
            with open(self.path, "rb") as f:
                while True:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    p.Parse(chunk, False)
                    if self.sealed:
                        yield
                p.Parse(b"", True)
        except ReadError:
            raise
        except expat.ExpatError as e:
            raise ReadError(self.file, f"not well-formed XML: {expat.ErrorString(e.code)}",
                            line=e.lineno) from None
        except _Bad as e:
            raise ReadError(self.file, str(e), line=p.CurrentLineNumber, element=self._where()) from None
        except KeyError as e:
            raise ReadError(self.file, f"missing attribute {e.args[0]!r}", line=p.CurrentLineNumber,
                            element=self._where()) from None
        except (ValueError, TypeError, IndexError, OverflowError) as e:
            raise ReadError(self.file, f"bad value: {e}", line=p.CurrentLineNumber, element=self._where()) from None
        except OSError as e:
            raise ReadError(self.file, f"cannot read: {e}") from None
        except LookupError as e:  # an unknown encoding in the XML declaration
            raise ReadError(self.file, f"unsupported XML encoding: {e}", line=1) from None

    # ------------------------------------------------------------------ two processes (see _Split)
    def _mapped(self) -> tuple[Any, mmap.mmap] | None:
        """The open file and its memory map, when its parse is to be shared with a worker; else None."""
        if not _split_wanted(self.options):
            return None
        try:
            size = self.path.stat().st_size
            lo = int((self.options.extra or {}).get("cvat_split_min", _SPLIT_MIN))
            if not lo <= size <= _SPLIT_MAX:
                return None
            f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        except (OSError, ValueError, TypeError):
            return None
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            f.close()
            return None
        enc = _ENCODING_RE.match(mm, 3 if mm[:3] == b"\xef\xbb\xbf" else 0)
        if enc is not None and enc.group(1).lower().replace(b"-", b"").replace(b"_", b"") != b"utf8":
            mm.close()
            f.close()
            return None
        return f, mm

    def _feed_split(self, p: Any, mm: mmap.mmap) -> Iterator[None]:
        """``_parse`` for a mapped file: up to ``</meta>`` here, then a worker parses from an image near the
        middle while this process parses up to it; its columns are merged, or (anything unusual) this process
        parses the rest itself. Pauses (yields) after each piece that closed a chunk, as ``_parse``."""
        n = len(mm)
        pos = 0
        worker: _Split | None = None
        meta = mm.find(b"</meta>")
        try:
            if meta > 0:
                pos = meta + len(b"</meta>")
                p.Parse(mm[:pos], False)
                if (self.meta_done and not self.in_meta and self.stack == ["annotations"] and not self.img_name
                        and not self.done_keys and not self.sealed and not self.d_reason and not self.has_tracks
                        and not self.frame_tags and not self.tag_count):
                    worker = _Split.start(self, mm, pos)
            if worker is not None:
                while pos < worker.last_end:
                    end = min(pos + _CHUNK, worker.last_end)
                    p.Parse(mm[pos:end], False)
                    pos = end
                    if self.sealed:
                        yield
                ends: list[tuple[int, int]] = []

                def end_at(name: str) -> None:  # the </image> right before the split: where and on which line
                    if name == "image" and len(self.stack) == 2:
                        ends.append((p.CurrentByteIndex, p.CurrentLineNumber))
                    self._end(name)

                p.EndElementHandler = end_at
                p.Parse(mm[pos:worker.split], False)
                p.EndElementHandler = self._end
                pos = worker.split
                split, worker = worker, None
                if (ends and ends[-1][0] == split.last_end and self.stack == ["annotations"] and self.cur_img < 0
                        and not self.has_tracks and not self.frame_tags and not self.frame_rows
                        and not self.pending_tracks):
                    state = split.result()
                    line = ends[-1][1] + _line_breaks(mm[split.last_end:split.split])
                    if state is not None and self._merge(state, line - 1):
                        if self.sealed:
                            yield
                        return  # the worker parsed the rest of the file to its end without an error
                else:
                    split.stop()
            while pos < n:
                end = min(pos + _CHUNK, n)
                p.Parse(mm[pos:end], False)
                pos = end
                if self.sealed:
                    yield
            p.Parse(b"", True)
        finally:
            if worker is not None:
                worker.stop()

    def _merge(self, state: tuple[Any, ...], line_offset: int) -> bool:
        """Add the worker's columns as if this parser had read on (its lines are counted from the split:
        ``line_offset`` is added), sealing chunks where this parser would have; False (nothing changed) when
        an image of the worker's part is also in this one's."""
        (keys, names, ws, hs, iattrs, ilines, box, il, cat, seg, kp, attr, clipped, d_reason, d_cat, d_line, d_msg,
         tag_count, tag_line) = state
        if any(k in self.img_key or k in self.done_keys for k in keys):
            return False
        n_img, n_rows = len(names), len(cat)
        rows = np.frombuffer(il, dtype=np.int64).reshape(n_rows, 2) if n_rows else np.zeros((0, 2), np.int64)
        img_col = rows[:, 0]
        if n_rows and (n_img == 0 or bool((np.diff(img_col) < 0).any()) or img_col[0] < 0
                       or img_col[-1] >= n_img):
            return False
        ends = np.searchsorted(img_col, np.arange(n_img), side="right").tolist()  # rows once image i is closed
        cr = self.chunk_rows
        due = self.seal_due
        i0 = r0 = 0
        for i in range(n_img):
            if due:  # this image starts a new chunk
                r = ends[i - 1] if i else 0
                self._append(state, rows, i0, i, r0, r, line_offset)
                i0, r0 = i, r
                self._seal()
            if cr:
                due = len(self.a_cat) + ends[i] - r0 >= cr or len(self.img_name) + i + 1 - i0 >= cr
        self._append(state, rows, i0, n_img, r0, n_rows, line_offset)
        self.seal_due = due
        self.d_reason.extend(d_reason)
        self.d_cat.extend(d_cat)
        self.d_line.extend([x + line_offset for x in d_line])
        self.d_msg.extend(d_msg)
        if tag_count:
            if not self.tag_count:
                self.tag_line = tag_line + line_offset
            self.tag_count += tag_count
        return True

    def _append(self, state: tuple[Any, ...], rows: np.ndarray, i0: int, i1: int, r0: int, r1: int,
                line_offset: int) -> None:
        """Images i0:i1 and rows r0:r1 of the worker's columns, added to the pending ones."""
        keys, names, ws, hs, iattrs, ilines, box, _il, cat, seg, kp, attr, clipped = state[:13]
        base_img, base_row = len(self.img_name), len(self.a_cat)
        for j, key in enumerate(keys[i0:i1]):
            self.img_key[key] = base_img + j
        self.img_name.extend(names[i0:i1])
        self.img_w.extend(ws[i0:i1])
        self.img_h.extend(hs[i0:i1])
        self.img_attrs.extend(iattrs[i0:i1])
        self.img_line.extend([x + line_offset for x in ilines[i0:i1]])
        if r1 > r0:
            part = rows[r0:r1].copy()
            part[:, 0] += base_img - i0
            part[:, 1] += line_offset
            self.a_il.frombytes(part.tobytes())
            self.a_box.extend(box[4 * r0:4 * r1])
            self.a_cat.extend(cat[r0:r1])
            self.a_seg.extend(seg[r0:r1])
            self.a_kp.extend(kp[r0:r1])
            self.a_attr.extend(attr[r0:r1])
            self.clipped_rows.extend(r - r0 + base_row for r in clipped[bisect_left(clipped, r0):bisect_left(clipped, r1)])

    def run(self) -> Dataset:
        """The whole file as one Dataset."""
        for _ in self._parse():
            pass
        return self._build()

    def chunks(self) -> Iterator[Dataset]:
        """The file as Datasets of ``chunk_rows`` rows (or images) each, the last one closing the report."""
        for _ in self._parse():
            yield from self._built()
        yield from self._built()
        yield self._build()

    def _built(self) -> Iterator[Dataset]:
        while self.sealed:
            yield self._make(self.sealed.pop(0), final=False)

    def _seal(self) -> None:
        """Close the pending images and rows as one chunk (at an image boundary; nothing is open)."""
        self.seal_due = False
        self.sealed.append(self._take(nodes=dict(self.nodes), kp_k=dict(self.kp_k)))
        self.done_keys.update(self.img_key)
        self.img_key = {}

    def _take(self, *, nodes: dict[str, list[str]], kp_k: dict[str, int]) -> _Cols:
        """The pending images and rows (and what the categories depend on), leaving empty lists behind."""
        cols = _Cols(nodes=nodes, kp_k=kp_k)
        for name in _Cols.LISTS:
            old = getattr(self, name)
            setattr(cols, name, old)
            setattr(self, name, array(old.typecode) if isinstance(old, array) else [])
        return cols

    def _where(self) -> str:
        return self.stack[-1] if self.stack else ""

    def _refuse_doctype(self, *args: Any) -> None:
        raise ReadError(self.file, "DOCTYPE / DTD refused (entities and DTDs are not allowed in CVAT XML)",
                        line=self.parser.CurrentLineNumber,
                        hint="remove the <!DOCTYPE ...> declaration; CVAT never writes one")

    def _refuse_entity(self, *args: Any) -> None:
        raise ReadError(self.file, "entity declaration refused", line=self.parser.CurrentLineNumber)

    def _refuse_external(self, *args: Any) -> int:
        raise ReadError(self.file, "external entity refused", line=self.parser.CurrentLineNumber)

    def _capture(self) -> None:
        self.text = []
        self.parser.CharacterDataHandler = self.text.append

    def _release(self) -> str:
        self.parser.CharacterDataHandler = None
        return "".join(self.text)

    # ------------------------------------------------------------------ element starts
    def _start(self, name: str, attrs: dict[str, str]) -> None:
        stack = self.stack
        stack.append(name)
        d = len(stack)
        if d == 3 and self.cur_img >= 0:
            rows, skel = len(self.a_cat), self.skel
            try:
                self._image_shape(name, attrs)
            except (_Bad, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
                self._bad_shape(name, attrs, e, rows=rows, skel=skel)
            return
        if name == "attribute" and self.cur_attrs is not None and d == self.attr_depth:
            key = attrs["name"]
            self.attr_name = self.strs.setdefault(key, key)
            self._capture()
            return
        if self.in_meta:
            self._meta_start(name, d)
            return
        if d == 2:
            if name == "image":
                if self.seal_due:
                    self._seal()
                self._image_start(attrs)
            elif name == "track":
                self._track_start(attrs)
            elif name == "meta":
                self.in_meta = True
            elif name == "tag":
                self._video_tag(attrs)
            return
        if d == 1:
            if name != "annotations":
                raise ReadError(self.file, f"not a CVAT XML: the root element is <{name}>, expected <annotations>",
                                line=self.parser.CurrentLineNumber)
            return
        if self.track is not None:
            self._track_child(name, attrs, d)
            return
        if self.skel is not None and d == 4 and name == "points":
            self._skeleton_node(attrs)

    def _end(self, name: str) -> None:
        stack = self.stack
        d = len(stack)
        if self.in_meta:
            self._meta_end(name, d)
        elif name == "attribute" and self.cur_attrs is not None and d == self.attr_depth:
            if self.cur_shared_row >= 0:  # a shared dict (a plain box): this box gets its own copy
                self.cur_attrs = dict(self.cur_attrs)
                self.a_attr[self.cur_shared_row] = self.cur_attrs
                self.cur_shared_row = -1
            self.cur_attrs[self.attr_name] = self._attr_value(self.cur_label, self.attr_name, self._release())
        elif d == 3 and self.cur_img >= 0:
            if self.skel is not None:
                self._skeleton_end()
            self.cur_attrs = None
            self.cur_shared_row = -1
        elif d == 2:
            if name == "image":
                self.cur_img = -1
                self.cur_attrs = None
                if self.chunk_rows and (len(self.a_cat) >= self.chunk_rows or len(self.img_name) >= self.chunk_rows):
                    self.seal_due = True
            elif name == "track" and self.track is not None:
                self._track_end(self.track)
                self.track = None
                self.cur_attrs = None
            elif name == "tag":
                self.cur_attrs = None
        elif d == 3 and name == "track" and self.subtrack is not None:
            if self.track is not None:
                self.track.elements.append(self.subtrack)
            self.subtrack = None
        elif self.track is not None and name in _SHAPES:
            self.cur_attrs = None
        stack.pop()

    # ------------------------------------------------------------------ meta
    def _meta_start(self, name: str, d: int) -> None:
        stack = self.stack
        parent = stack[-2]
        if name == "label" and parent == "labels":
            self.labels.append({"name": "", "type": "", "parent": None, "svg": "", "attrs": {}})
        elif name == "attribute" and parent == "attributes" and d >= 4 and stack[-3] == "label":
            self.labels[-1]["attrs"][None] = ["", ""]  # name, input_type being read
        elif name in ("task", "job") and parent in ("meta", "tasks"):
            self.tasks.append({})
        self._capture()

    def _meta_end(self, name: str, d: int) -> None:
        stack = self.stack
        value = self._release()
        if name == "meta":
            self.in_meta = False
            self._finish_meta()
            return
        parent = stack[-2] if d >= 2 else ""
        if parent == "label" and self.labels:
            lab = self.labels[-1]
            if name in ("name", "type", "parent", "svg"):
                lab[name] = value.strip() if name != "svg" else value
        elif parent == "attribute" and d >= 5 and stack[-4] == "label" and self.labels:
            pending = self.labels[-1]["attrs"].get(None)
            if pending is not None:
                if name == "name":
                    pending[0] = value.strip()
                elif name == "input_type":
                    pending[1] = value.strip()
        elif name == "attribute" and parent == "attributes" and d >= 4 and stack[-3] == "label" and self.labels:
            attrs = self.labels[-1]["attrs"]
            pending = attrs.pop(None, None)
            if pending and pending[0]:
                attrs[pending[0]] = pending[1]
        elif parent in ("task", "job") and self.tasks and name in (
                "id", "name", "size", "mode", "start_frame", "stop_frame", "frame_filter", "subset"):
            self.tasks[-1][name] = value.strip()
        elif parent == "original_size" and d >= 3 and stack[-3] in ("task", "job") and self.tasks:
            if name in ("width", "height"):
                self.tasks[-1]["original_" + name] = value.strip()

    def _finish_meta(self) -> None:
        self.meta_done = True
        for lab in self.labels:
            lab["attrs"].pop(None, None)
            self.attr_types[lab["name"]] = dict(lab["attrs"])
        for lab in self.labels:
            if lab["parent"]:
                self.nodes.setdefault(lab["parent"], []).append(lab["name"])
        subsets = sorted({str(t["subset"]) for t in self.tasks if t.get("subset")})
        if len(subsets) > 1:  # the same name may be two pictures, one per subset (CVAT exports images/<subset>/)
            self.by_subset = True
            self.report.note("image.by_subset", self.file,
                             f"a project export of the subsets {', '.join(subsets)}: each image is named "
                             f"<subset>/<name> (the same name may be a different picture in each subset)",
                             severity="info")
        task = self._frame_task()
        self.mode = str(task.get("mode", "")) if task else ""
        for t in self.tasks:
            if not self.mode and t.get("mode"):
                self.mode = str(t["mode"])

    def _frame_task(self) -> dict[str, Any] | None:
        for t in self.tasks:
            if "original_width" in t or "start_frame" in t:
                return t
        return self.tasks[0] if self.tasks else None

    def _skeleton_edges(self, lab: dict[str, Any], nodes: dict[str, list[str]], *, notes: bool) -> list[list[int]]:
        names = nodes.get(lab["name"], [])
        index = {n: i + 1 for i, n in enumerate(names)}
        node_label: dict[str, str] = {}
        svg = lab["svg"] or ""
        for m in _CIRCLE_RE.finditer(svg):
            a = dict(_SVG_ATTR_RE.findall(m.group(0)))
            if "data-node-id" in a and "data-label-name" in a:
                node_label[a["data-node-id"]] = a["data-label-name"]
        edges: list[list[int]] = []
        for m in _LINE_RE.finditer(svg):
            a = dict(_SVG_ATTR_RE.findall(m.group(0)))
            ends = []
            for key in ("data-node-from", "data-node-to"):
                nid = a.get(key)
                if nid is None:
                    break
                if nid in node_label:
                    k = index.get(node_label[nid])
                else:  # no label names in the svg: node ids are 1-based positions
                    k = int(nid) if nid.isdigit() and 1 <= int(nid) <= len(names) else None
                if k is None:
                    break
                ends.append(k)
            if len(ends) == 2 and ends[0] != ends[1] and ends not in edges:
                edges.append(ends)
            elif len(ends) != 2 and notes:
                self.report.note("dropped.invalid", self.file,
                                 f"skeleton {lab['name']!r}: an svg edge names an unknown node; edge left out")
        return edges

    def _attr_value(self, label: str, name: str, text: str) -> Any:
        kind = self.attr_types.get(label, {}).get(name)
        if kind == "checkbox":
            low = text.strip().lower()
            if low in ("true", "false"):
                return low == "true"
        elif kind == "number":
            s = text.strip()
            try:
                return int(s)
            except ValueError:
                try:
                    return float(s)
                except ValueError:
                    return text
        return text

    # ------------------------------------------------------------------ images mode
    def _image_start(self, attrs: dict[str, str]) -> None:
        line = self.parser.CurrentLineNumber
        raw = attrs.get("name")
        if raw is None:
            raise _Bad("<image> without a name")
        name = safe_relative(raw)
        if name is None:
            raise ReadError(self.file, f"image name {raw!r} is unsafe: {why_unsafe(raw)}", line=line,
                            element="image", hint="image names must be relative paths inside the images folder")
        subset = attrs.get("subset", "")
        if self.by_subset and subset:
            qualified = safe_relative(f"{subset}/{name}")
            if qualified is None:
                raise ReadError(self.file, f"subset {subset!r} is not a safe folder name: {why_unsafe(subset)}",
                                line=line, element="image")
            name = qualified
        key = (subset, name)
        w, h = attrs.get("width"), attrs.get("height")
        if w is None or h is None:
            raise _Bad(f"<image name={raw!r}> has no width/height")
        wi, hi = int(float(w)), int(float(h))
        if wi < 1 or hi < 1 or wi > _MAX_SIDE or hi > _MAX_SIDE:
            raise _Bad(f"<image name={raw!r}> has size {w}x{h}")
        idx = self.img_key.get(key)
        if idx is not None:
            self.repeated = True
        if idx is None:
            if key in self.done_keys:
                raise NeedsWholeRead(f"{self.file}:{line}: image {name!r}"
                                     + (f" (subset {subset!r})" if subset else "")
                                     + " is listed again after its chunk was handed out")
            idx = len(self.img_name)
            self.img_key[key] = idx
            self.img_name.append(name)
            self.img_w.append(wi)
            self.img_h.append(hi)
            extra: dict[str, Any] = {}
            if "subset" in attrs:
                extra["subset"] = subset
            if "task_id" in attrs:
                tid = attrs["task_id"]
                extra["task_id"] = int(tid) if tid.isdigit() else tid
            self.img_attrs.append(extra or None)
            self.img_line.append(line)
        elif (self.img_w[idx], self.img_h[idx]) != (wi, hi):
            raise _Bad(f"image {name!r} appears twice with different sizes "
                       f"({self.img_w[idx]}x{self.img_h[idx]} and {wi}x{hi})")
        self.cur_img = idx

    def _common(self, a: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        v = a.get("occluded")
        if v is not None:
            out["occluded"] = v in ("1", "true", "True")
        v = a.get("z_order")
        if v is not None:
            out["z_order"] = int(v)
        v = a.get("group_id")
        if v is not None:
            out["group_id"] = int(v)
        v = a.get("source")
        if v is not None:
            out["source"] = self.strs.setdefault(v, v)
        v = a.get("track_id")  # datumaro's CVAT exporter: a shape of a track, written per image
        if v is not None:
            out["track_id"] = int(v) if v.lstrip("-").isdigit() else v
        v = a.get("keyframe")
        if v is not None:
            out["keyframe"] = v in ("1", "true", "True")
        return out

    def _drop(self, reason: str, label: str | None, line: int, message: str) -> None:
        self.d_reason.append(reason)
        self.d_cat.append(label)
        self.d_line.append(line)
        self.d_msg.append(message)

    def _bad_shape(self, name: str, a: dict[str, str], e: Exception, *, rows: int, skel: Any) -> None:
        """A shape of an ``<image>`` whose values cannot be read: dropped (``dropped.invalid``) at its line, with
        any row it had begun taken back; the rest of the file converts (``--strict`` fails on the drop)."""
        for arr, per in ((self.a_il, 2), (self.a_box, 4), (self.a_cat, 1), (self.a_seg, 1), (self.a_kp, 1),
                         (self.a_attr, 1)):
            del arr[rows * per:]
        self.skel = skel
        self.cur_shared_row = -1
        why = (f"missing attribute {e.args[0]!r}" if isinstance(e, KeyError) else str(e) if isinstance(e, _Bad)
               else f"bad value: {e}")
        label = a.get("label") or None
        self._listen({}, label or "", 4)  # its <attribute> children go nowhere
        self._drop("dropped.invalid", label, self.parser.CurrentLineNumber, f"<{name}>: {why}")

    def _image_shape(self, name: str, a: dict[str, str]) -> None:
        line = self.parser.CurrentLineNumber
        img = self.cur_img
        label = a.get("label", "")
        label = self.strs.setdefault(label, label)  # one str object per label, not one per row
        if a.get("outside", "0") in ("1", "true", "True") and name != "tag":
            # datumaro writes outside on every shape; an outside shape is not visible in this image
            self._listen({}, label, 4)
            self._drop("dropped.outside_frame", label or None, line, f'{name} marked outside="1": not visible in '
                       "this image")
            return
        if name == "box":
            x0, y0, x1, y1 = float(a["xtl"]), float(a["ytl"]), float(a["xbr"]), float(a["ybr"])
            rot = a.get("rotation")
            r = float(rot) if rot is not None else 0.0
            if not label or r % 360.0:
                attrs = self._common(a)
                self.cur_attrs, self.cur_label, self.attr_depth = attrs, label, 4  # as _listen(attrs, label, 4)
                if not label:
                    self._drop("dropped.unknown_category", None, line, "box with an empty label")
                else:
                    self._emit_shape("box", (x0, y0, x1, y1), r, None, img, label, attrs, line, False)
                return
            # the common case, straight to the row (as _emit_shape does for an unrotated box). Boxes with the
            # same occluded / z_order / group_id / source share one attributes dict; an <attribute> child
            # gives the box its own copy first (_end)
            key = (a.get("occluded"), a.get("z_order"), a.get("group_id"), a.get("source"), a.get("track_id"),
                   a.get("keyframe"))
            shared = self.shared_attrs.get(key)
            if shared is None:
                shared = self.shared_attrs[key] = self._common(a)
            attrs = shared
            self.cur_attrs, self.cur_label, self.attr_depth = attrs, label, 4
            self.cur_shared_row = len(self.a_attr)
            self.a_il.extend((img, line))
            self.a_box.extend((x0, y0, x1, y1))
            self.a_cat.append(label)
            self.a_seg.append(None)
            self.a_kp.append(None)
            self.a_attr.append(attrs)
            return
        if name == "tag":
            self._listen({}, label, 4)
            if not self.tag_count:
                self.tag_line = line
            self.tag_count += 1
            self._add_tag(img, label)
            return
        attrs = self._common(a)
        self._listen(attrs, label, 4)
        if name == "skeleton":
            self.skel = {"label": label, "attrs": attrs, "line": line, "nodes": {}}
            return
        if name not in _SHAPES:
            self._drop("dropped.unsupported", label or None, line, f"<{name}> is not a shape prelabel knows")
            return
        if not label:
            self._drop("dropped.unknown_category", None, line, f"{name} with an empty label")
            return
        if name == "mask":
            m = (a["rle"], int(float(a["left"])), int(float(a["top"])), int(float(a["width"])),
                 int(float(a["height"])))
            self._emit_mask(img, label, m, attrs, line)
            return
        vec: tuple[float, ...]
        if name == "ellipse":
            vec = (float(a["cx"]), float(a["cy"]), float(a["rx"]), float(a["ry"]))
            r = float(a.get("rotation", 0.0))
            self._emit_shape("ellipse", vec, r, None, img, label, attrs, line, False)
            return
        vec = _parse_points(a["points"]) if name != "cuboid" else ()  # a cuboid has xtl1.. corners, no points
        self._emit_shape(name, vec, 0.0, None, img, label, attrs, line, bool(attrs.get("occluded")))

    def _listen(self, attrs: dict[str, Any], label: str, depth: int) -> None:
        """Send the <attribute> children found at ``depth`` into ``attrs``."""
        self.cur_attrs = attrs
        self.cur_label = label
        self.attr_depth = depth

    def _add_tag(self, img: int, label: str) -> None:
        attrs = self.img_attrs[img]
        if attrs is None:
            attrs = {}
            self.img_attrs[img] = attrs
        attrs.setdefault("tags", []).append(label)

    def _skeleton_node(self, a: dict[str, str]) -> None:
        if self.skel is None:
            return
        vec = _parse_points(a.get("points", ""))
        outside = a.get("outside", "0") in ("1", "true", "True")
        occluded = a.get("occluded", "0") in ("1", "true", "True")
        if len(vec) >= 2:
            self.skel["nodes"][a.get("label", "")] = (vec[0], vec[1], outside, occluded)

    def _skeleton_end(self) -> None:
        sk = self.skel
        self.skel = None
        if sk is None:
            return
        label, line = sk["label"], sk["line"]
        if not label:
            self._drop("dropped.unknown_category", None, line, "skeleton with an empty label")
            return
        names = self.nodes.get(label) or list(sk["nodes"])
        if label not in self.nodes:
            self.nodes[label] = names
        kp = np.zeros((len(names), 3), dtype=np.float64)
        for i, n in enumerate(names):
            node = sk["nodes"].get(n)
            if node is None or node[2]:
                continue
            kp[i] = (node[0], node[1], 1.0 if node[3] else 2.0)
        self._emit_keypoints(self.cur_img, label, kp, sk["attrs"], line)

    # ------------------------------------------------------------------ emitting rows
    def _row(self, img: int, label: str, x0: float, y0: float, x1: float, y1: float, seg: Any,
             kp: np.ndarray | None, attrs: dict[str, Any], line: int) -> None:
        """Append one annotation row to the column lists."""
        self.a_il.extend((img, line))
        self.a_box.extend((x0, y0, x1, y1))
        self.a_cat.append(label)
        self.a_seg.append(seg)
        self.a_kp.append(kp)
        self.a_attr.append(attrs)

    def _emit_poly(self, img: int, label: str, poly: np.ndarray, attrs: dict[str, Any], line: int) -> None:
        xs, ys = poly[0::2], poly[1::2]
        self._row(img, label, float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()), [poly], None,
                  attrs, line)

    def _emit_keypoints(self, img: int, label: str, kp: np.ndarray, attrs: dict[str, Any], line: int) -> None:
        vis = kp[:, 2] > 0
        if vis.any():
            x0, y0 = float(kp[vis, 0].min()), float(kp[vis, 1].min())
            x1, y1 = float(kp[vis, 0].max()), float(kp[vis, 1].max())
        else:
            x0 = y0 = x1 = y1 = 0.0
        self._row(img, label, x0, y0, x1, y1, None, kp, attrs, line)

    def _emit_mask(self, img: int, label: str, m: tuple[str, int, int, int, int], attrs: dict[str, Any],
                   line: int) -> None:
        rle, left, top, width, height = m
        iw, ih = self.img_w[img], self.img_h[img]
        coco = cvat_rle_to_coco(rle, left=left, top=top, width=width, height=height, image_width=iw,
                                image_height=ih)
        if left < 0 or top < 0 or left + width > iw or top + height > ih:
            self.clipped_rows.append(len(self.a_cat))
        bx, by, bw, bh = rle_bbox(coco)
        self._row(img, label, bx, by, bx + bw, by + bh, coco, None, attrs, line)

    def _emit_shape(self, kind: str, vec: tuple[float, ...], rot: float, mask: tuple[str, int, int, int, int] | None,
                    img: int, label: str, attrs: dict[str, Any], line: int, occluded: bool) -> None:
        """One annotation row (or one counted drop) for a shape given by its kind and numbers."""
        if kind == "box":
            x0, y0, x1, y1 = vec
            if rot % 360.0:
                attrs["rotation"] = rot
                self._emit_poly(img, label, rotated_box_center(x0, y0, x1 - x0, y1 - y0, rot), attrs, line)
                return
            self._row(img, label, x0, y0, x1, y1, None, None, attrs, line)
        elif kind == "polygon":
            if len(vec) < 6:
                self._drop("dropped.degenerate", label, line, f"polygon with {len(vec) // 2} point(s)")
                return
            self._emit_poly(img, label, np.asarray(vec, dtype=np.float64), attrs, line)
        elif kind == "ellipse":
            cx, cy, rx, ry = vec
            if rot % 360.0:
                attrs["rotation"] = rot
            if not (rx > 0 and ry > 0):
                self._drop("dropped.degenerate", label, line, f"ellipse with radii {rx} x {ry}")
                return
            self._emit_poly(img, label, ellipse_polygon(cx, cy, rx, ry, rot), attrs, line)
        elif kind == "mask" and mask is not None:
            self._emit_mask(img, label, mask, attrs, line)
        elif kind == "points" and self.points_as_kp:
            if not vec:
                self._drop("dropped.degenerate", label, line, "points shape without points")
                return
            kp = np.empty((len(vec) // 2, 3), dtype=np.float64)
            kp[:, 0] = vec[0::2]
            kp[:, 1] = vec[1::2]
            kp[:, 2] = 1.0 if occluded else 2.0
            if self.kp_k.get(label, 0) < len(kp):
                self.kp_k[label] = len(kp)
            self.kp_points_rows.append(len(self.a_cat))
            self._emit_keypoints(img, label, kp, attrs, line)
        else:
            hint = f" (read them as keypoints with {option('cvat_points', 'keypoints')})" if kind == "points" else ""
            self._drop("dropped.unsupported", label, line, f"{kind} is not an area{hint}")

    # ------------------------------------------------------------------ video mode
    def _video_tag(self, a: dict[str, str]) -> None:
        if self.chunk_rows:
            raise NeedsWholeRead(f"{self.file}:{self.parser.CurrentLineNumber}: frame tags (CVAT for video) are "
                                 "placed on the task's frames only at the end of the file")
        self.cur_attrs = None
        frame = a.get("frame")
        if frame is None:
            return
        if not self.tag_count:
            self.tag_line = self.parser.CurrentLineNumber
        self.tag_count += 1
        self.frame_tags.setdefault(int(frame), []).append(a.get("label", ""))

    def _track_start(self, a: dict[str, str]) -> None:
        if self.chunk_rows:
            raise NeedsWholeRead(f"{self.file}:{self.parser.CurrentLineNumber}: tracks (CVAT for video) write "
                                 "rows on every frame, known only at the end of the file")
        self.has_tracks = True
        self.track = _Track(a.get("id", ""), a.get("label", ""), a.get("group_id"), a.get("source"),
                            self.parser.CurrentLineNumber)

    def _track_child(self, name: str, a: dict[str, str], d: int) -> None:
        if d == 3 and name == "track":
            self.subtrack = _Track(a.get("id", ""), a.get("label", ""), None, a.get("source"),
                                   self.parser.CurrentLineNumber)
            return
        target = self.track if d == 3 else (self.subtrack if d == 4 else None)
        if target is None or name == "attribute":
            return
        try:
            shape = self._tshape(name, a)
        except (_Bad, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
            # one malformed keyframe: its track cannot be interpolated, so the track is dropped (at the end)
            track = self.track
            if track is not None and track.bad is None:
                why = (f"missing attribute {e.args[0]!r}" if isinstance(e, KeyError) else str(e)
                       if isinstance(e, _Bad) else f"bad value: {e}")
                track.bad = f"<{name}> at line {self.parser.CurrentLineNumber}: {why}"
            self._listen({}, target.label, d + 1)  # its <attribute> children go nowhere
            return
        target.shapes.append(shape)
        if target is self.track:
            self._listen(target.shapes[-1].attrs, target.label, d + 1)

    def _tshape(self, name: str, a: dict[str, str]) -> _TShape:
        line = self.parser.CurrentLineNumber
        frame = int(a["frame"])
        outside = a.get("outside", "0") in ("1", "true", "True")
        occluded = a.get("occluded", "0") in ("1", "true", "True")
        keyframe = a.get("keyframe", "1") in ("1", "true", "True")
        z = a.get("z_order")
        z_order = int(z) if z is not None else None
        rot = float(a.get("rotation", 0.0))
        mask = None
        vec: tuple[float, ...] = ()
        if name == "box":
            vec = (float(a["xtl"]), float(a["ytl"]), float(a["xbr"]), float(a["ybr"]))
        elif name == "ellipse":
            vec = (float(a["cx"]), float(a["cy"]), float(a["rx"]), float(a["ry"]))
        elif name == "mask":
            mask = (a["rle"], int(float(a["left"])), int(float(a["top"])), int(float(a["width"])),
                    int(float(a["height"])))
        elif name in ("polygon", "polyline", "points"):
            vec = _parse_points(a.get("points", ""))
        return _TShape(frame, name, vec, rot, outside, occluded, keyframe, z_order, {}, line, mask)

    def _frames(self) -> tuple[list[int], int, int]:
        """(the task's frame numbers, width, height) of video frames."""
        task = self._frame_task() or {}
        try:
            start = int(task.get("start_frame") or 0)
            step = _frame_step(str(task.get("frame_filter", "")))
            stop_s, size_s = task.get("stop_frame"), task.get("size")
            if stop_s not in (None, ""):
                stop = int(str(stop_s))
            elif size_s not in (None, ""):
                stop = start + (int(str(size_s)) - 1) * step
            else:
                stop = self.max_frame if self.max_frame is not None else start - 1
            w = int(task.get("original_width") or 0)
            h = int(task.get("original_height") or 0)
        except ValueError as e:
            raise ReadError(self.file, f"bad frame information in <meta>: {e}", element="meta") from None
        if w < 1 or h < 1:
            raise ReadError(self.file, "a video export (tracks) needs <original_size> in <meta> for frame sizes",
                            element="meta")
        if w > _MAX_SIDE or h > _MAX_SIDE:
            raise ReadError(self.file, f"<original_size> {w}x{h} is larger than {_MAX_SIDE} pixels", element="meta")
        frames = range(start, stop + 1, step)
        if len(frames) > _MAX_FRAMES:
            raise ReadError(self.file, f"the task has {len(frames)} frames (start_frame {start}, stop_frame {stop}, "
                                       f"step {step}); more than {_MAX_FRAMES} is not a plausible video task",
                            element="meta", hint="check <start_frame>, <stop_frame> and <frame_filter> in <meta>")
        return list(frames), w, h

    def _frame_image(self, frame: int) -> int:
        idx = self.frame_rows.get(frame)
        if idx is None:
            idx = len(self.img_name)
            self.frame_rows[frame] = idx
            self.img_name.append("")  # named after the frame pattern when the tables are built
            self.img_w.append(self.fw)
            self.img_h.append(self.fh)
            self.img_attrs.append({"frame": frame})
            self.img_line.append(0)
        return idx

    def _stop_known(self) -> bool:
        task = self._frame_task() or {}
        return task.get("stop_frame") not in (None, "") or task.get("size") not in (None, "")

    def _ensure_frames(self) -> None:
        if self.frames_ready:
            return
        frames, self.fw, self.fh = self._frames()
        self.frame_list = frames
        self.frame_set = set(frames)
        self.frames_ready = True
        for f in frames:
            self._frame_image(f)

    def _track_end(self, track: _Track) -> None:
        if self.frames_ready or self._stop_known():
            self._expand_track(track)
        else:  # the last frame is the last frame any track names: wait for the end of the file
            for s in (*track.shapes, *(s for el in track.elements for s in el.shapes)):
                if self.max_frame is None or s.frame > self.max_frame:
                    self.max_frame = s.frame
            self.pending_tracks.append(track)

    def _expand_track(self, track: _Track) -> None:
        self._ensure_frames()
        label = track.label
        if track.bad is not None:
            self._drop("dropped.invalid", label or None, track.line,
                       f"track {track.id}: {track.bad}; the track is dropped (its frames cannot be interpolated)")
            return
        shapes = self._prepare(track, track.shapes)
        if not shapes:
            return
        base: dict[str, Any] = {"track_id": int(track.id) if track.id.lstrip("-").isdigit() else track.id}
        if track.group_id is not None:
            base["group_id"] = int(track.group_id)
        if track.source is not None:
            base["source"] = track.source
        skeleton = shapes[0].kind == "skeleton"
        elements: dict[str, tuple[list[int], list[_TShape]]] = {}
        if skeleton:
            for el in track.elements:
                es = self._prepare(el, el.shapes)
                elements[el.label] = ([s.frame for s in es], es)
            if label not in self.nodes:
                self.nodes[label] = [el.label for el in track.elements]
        frames = self.frame_list
        stop = frames[-1] if frames else -1
        n = len(shapes)
        for j, s0 in enumerate(shapes):
            if s0.outside:
                continue
            nxt = shapes[j + 1] if j + 1 < n else None
            end = nxt.frame if nxt is not None else stop + 1
            if s0.frame in self.frame_set:
                self._emit_state(track, label, base, s0, None, s0.frame, elements)
            else:
                self._drop("dropped.no_image", label or None, s0.line,
                           f"track {track.id}: frame {s0.frame} is not a frame of the task")
            for f in frames[bisect_right(frames, s0.frame):bisect_left(frames, end)]:
                self._emit_state(track, label, base, s0, nxt, f, elements)

    def _prepare(self, track: _Track, shapes: list[_TShape]) -> list[_TShape]:
        """Shapes sorted by frame, mutable attributes carried forward as CVAT does."""
        out = sorted(shapes, key=lambda s: s.frame)
        prev: dict[str, Any] = {}
        for i, s in enumerate(out):
            if i and s.frame == out[i - 1].frame:
                raise ReadError(self.file, f"track {track.id} has two shapes at frame {s.frame}", line=s.line)
            if prev:
                s.attrs = {**prev, **s.attrs}
            prev = s.attrs
            if self.max_frame is None or s.frame > self.max_frame:
                self.max_frame = s.frame
        return out

    def _interp(self, s0: _TShape, s1: _TShape | None, f: int, track_id: str) -> tuple[tuple[float, ...], float]:
        """(numbers, rotation) of the shape at frame ``f`` between listed shapes s0 and s1 (s1 None: repeat)."""
        if s1 is None or f == s0.frame:
            return s0.vec, s0.rot
        if s1.kind != s0.kind or s0.kind in ("mask", "skeleton", "cuboid") or len(s1.vec) != len(s0.vec):
            if s0.kind in ("polygon", "polyline", "points") and s1.kind == s0.kind and track_id not in \
                    self.approx_tracks:
                self.approx_tracks.append(track_id)
            return s0.vec, s0.rot
        t = (f - s0.frame) / (s1.frame - s0.frame)
        vec = tuple(keyframe_lerp(a, b, t) for a, b in zip(s0.vec, s1.vec, strict=True))
        rot = float(angle_lerp(s0.rot, s1.rot, t)) if (s0.rot or s1.rot) else 0.0
        return vec, rot

    def _state_at(self, frames: list[int], shapes: list[_TShape], f: int) -> tuple[float, float, bool] | None:
        """(x, y, occluded) of a skeleton node track at frame f, or None when it is outside or not started."""
        j = bisect_right(frames, f) - 1
        if j < 0:
            return None
        s0 = shapes[j]
        if s0.outside:
            return None
        vec, _ = self._interp(s0, shapes[j + 1] if j + 1 < len(shapes) else None, f, "")
        if len(vec) < 2:
            return None
        return vec[0], vec[1], s0.occluded

    def _emit_state(self, track: _Track, label: str, base: dict[str, Any], s0: _TShape, s1: _TShape | None,
                    f: int, elements: dict[str, tuple[list[int], list[_TShape]]]) -> None:
        img = self._frame_image(f)
        exact = f == s0.frame
        attrs = dict(base)
        attrs["keyframe"] = bool(s0.keyframe) if exact else False
        attrs["occluded"] = s0.occluded
        if s0.z_order is not None:
            attrs["z_order"] = s0.z_order
        attrs.update(s0.attrs)
        line = s0.line if exact else track.line
        if not label:
            self._drop("dropped.unknown_category", None, line, f"track {track.id} has an empty label")
            return
        if s0.kind == "skeleton":
            names = self.nodes.get(label, [])
            kp = np.zeros((len(names), 3), dtype=np.float64)
            for i, node in enumerate(names):
                el = elements.get(node)
                st = self._state_at(el[0], el[1], f) if el is not None else None
                if st is not None:
                    kp[i] = (st[0], st[1], 1.0 if st[2] else 2.0)
            self._emit_keypoints(img, label, kp, attrs, line)
            return
        vec, rot = self._interp(s0, s1, f, track.id)
        self._emit_shape(s0.kind, vec, rot, s0.mask, img, label, attrs, line, s0.occluded)

    # ------------------------------------------------------------------ building the Dataset
    def _build(self) -> Dataset:
        """After the whole file: tracks, frames and frame tags resolved, their notes, then the last Dataset."""
        for track in self.pending_tracks:
            self._expand_track(track)
        self.pending_tracks = []
        task = self._frame_task() or {}
        if self.has_tracks or self.frame_tags or (self.mode == "interpolation" and task.get("original_width")):
            self._ensure_frames()
        lost_tags = 0
        for f, tags in sorted(self.frame_tags.items()):
            if f in self.frame_set:
                img = self._frame_image(f)
                for t in tags:
                    self._add_tag(img, t)
            else:
                lost_tags += len(tags)
        if lost_tags:
            self.report.note("image.missing", self.file,
                             f"{lost_tags} tag(s) name frames the task does not have; left out")
        if self.tag_count - lost_tags:
            self.report.note("image.attribute", f"{self.file}:{self.tag_line}",
                             f"{self.tag_count - lost_tags} tag(s) kept as the image attribute 'tags' (not object annotations)",
                             severity="info")
        if self.approx_tracks:
            self.report.note("coordinates.suspect", self.file,
                             f"track(s) {', '.join(self.approx_tracks[:10])}: polygons with different point "
                             "counts between keyframes are repeated, not interpolated", severity="info")
        return self._make(self._take(nodes=self.nodes, kp_k=self.kp_k), final=True)

    def _make(self, c: _Cols, *, final: bool) -> Dataset:
        """The Dataset of one chunk's columns; ``final``: the last one, which also reports what the whole file
        decides (the aggregated notes, the drops, the clipped masks) as one ``read()`` reports them."""
        names = c.img_name
        if final and self.frame_rows:
            names = list(names)
            pattern = self.options.frame_pattern
            for f, idx in self.frame_rows.items():
                names[idx] = frame_file_name(pattern, f)
        paths = self._image_paths(names, c.img_attrs)
        if final and self.missing_images:
            self.report.note("image.missing", str(self.images_root),
                             f"{self.missing_images} image(s) named in {self.file} are not under the images folder")
        images = {
            "file_name": pd.Series(names, dtype=object),
            "width": np.asarray(c.img_w, dtype=np.int64),
            "height": np.asarray(c.img_h, dtype=np.int64),
            "path": pd.Series(paths, dtype=object),
            "attributes": pd.Series(c.img_attrs, dtype=object),
            "src_file": pd.Series([self.file] * len(names), dtype=object),
        }
        self.used_cats.update(c.a_cat)
        cats = self._categories(c, notes=final)
        if self.prev_cats is not None:  # names that only rows of earlier chunks brought, in their order
            known = set(cats["name"])
            for name, kp, sk in self.prev_cats:
                if name not in known:
                    cats["name"].append(name)
                    cats["keypoints"].append(kp)
                    cats["skeleton"].append(sk)
        n = len(c.a_cat)
        box = np.asarray(c.a_box, dtype=np.float64).reshape(n, 4)
        il = np.asarray(c.a_il, dtype=np.int64).reshape(n, 2)
        x0, y0 = box[:, 0], box[:, 1]  # views: the table copies them into its own blocks
        ann = {
            "image": il[:, 0],
            "category": pd.Series(c.a_cat, dtype=object),
            "x": x0, "y": y0,
            "w": box[:, 2] - x0,
            "h": box[:, 3] - y0,
            "iscrowd": np.zeros(n, dtype=np.int8),
            "segmentation": pd.Series(c.a_seg, dtype=object),
            "keypoints": pd.Series(c.a_kp, dtype=object),
            "attributes": pd.Series(c.a_attr, dtype=object),
            "src_file": pd.Series([self.file] * n, dtype=object),
            "src_line": il[:, 1],
        }
        self.report.add_read(n + (len(self.d_reason) if final else 0))
        ds = Dataset.build(images=images, categories=cats, annotations=ann, report=self.report)
        if self.chunk_rows:
            self._check_categories(ds)
        if c.clipped_rows:
            self.clip_rows.append(ds.annotations.iloc[c.clipped_rows][["category", "src_file", "src_line"]])
        if final and self.clip_rows:
            self.report.change("clipped", self.clip_rows[0] if len(self.clip_rows) == 1
                               else pd.concat(self.clip_rows, ignore_index=True),
                               "mask rectangle extends outside the image; cut at the border")
        if final and self.d_reason:
            drops = pd.DataFrame({"reason": self.d_reason, "category": self.d_cat,
                                  "src_file": [self.file] * len(self.d_reason), "src_line": self.d_line,
                                  "message": self.d_msg})
            for reason, rows in drops.groupby("reason", sort=True):
                self.report.drop(str(reason), rows)
        return ds

    def _check_categories(self, ds: Dataset) -> None:
        """Streaming: the chunks' category tables must grow by appending only, so that their union is the
        table ``read()`` builds once at the end; a name defined again differently needs the whole file."""
        cats = ds.categories
        table = list(zip(cats["name"], cats["keypoints"], cats["skeleton"], strict=True))
        prev = self.prev_cats or []
        for i, (old, new) in enumerate(zip(prev, table[:len(prev)], strict=False)):
            if old != new:
                what = (f"category {old[0]!r} is defined again ({new[1]!r} keypoints)" if old[0] == new[0]
                        else f"category {new[0]!r} takes the place of {old[0]!r} (position {i + 1})")
                raise NeedsWholeRead(f"{self.file}: {what} after a chunk was handed out: a skeleton label "
                                     "missing from <meta> or a keypoint count growing with cvat_points="
                                     "'keypoints' is known only at the end of the file")
        if len(table) < len(prev):
            raise NeedsWholeRead(f"{self.file}: categories of an earlier chunk are missing from a later one")
        self.prev_cats = table

    def _categories(self, c: _Cols, *, notes: bool) -> dict[str, list[Any]]:
        names: list[str] = []
        kps: list[Any] = []
        skel: list[Any] = []
        for lab in self.labels:
            if lab["parent"] or lab["type"] == "tag" or lab["name"] in names or not lab["name"]:
                continue
            names.append(lab["name"])
            if lab["type"] == "skeleton" or lab["name"] in c.nodes:
                kps.append(list(c.nodes.get(lab["name"], [])))
                skel.append(self._skeleton_edges(lab, c.nodes, notes=notes))
            else:
                kps.append(None)
                skel.append(None)
        known = set(names)
        used = self.used_cats
        for name, nodes in c.nodes.items():  # skeletons drawn with labels missing from <meta>
            if name not in known and name in used:
                names.append(name)
                kps.append(list(nodes))
                skel.append([])
                known.add(name)
        if c.kp_k:
            self._pad_points(names, kps, skel, c)
        return {"name": names, "keypoints": kps, "skeleton": skel}

    def _pad_points(self, names: list[str], kps: list[Any], skel: list[Any], c: _Cols) -> None:
        """<points> kept as keypoints: one K per category (the largest count), shorter shapes padded with v=0."""
        per_cat = dict(c.kp_k)
        for cat, k in per_cat.items():
            if cat in names:
                i = names.index(cat)
                if kps[i] is not None and len(kps[i]) >= k:
                    per_cat[cat] = len(kps[i])
                    continue
                kps[i] = [str(j + 1) for j in range(k)]
                skel[i] = []
            else:
                names.append(cat)
                kps.append([str(j + 1) for j in range(k)])
                skel.append([])
        for r in c.kp_points_rows:
            arr = c.a_kp[r]
            k = per_cat[c.a_cat[r]]
            if len(arr) < k:
                pad = np.zeros((k, 3), dtype=np.float64)
                pad[:len(arr)] = arr
                c.a_kp[r] = pad

    def _image_paths(self, names: list[str], img_attrs: list[dict[str, Any] | None]) -> list[str | None]:
        root = self.images_root
        if root is None or not Path(root).is_dir():
            return [None] * len(names)
        out: list[str | None] = []
        missing = 0
        for name, attrs in zip(names, img_attrs, strict=True):
            found: Path | None = None
            subset = (attrs or {}).get("subset")
            bare = name[len(subset) + 1:] if self.by_subset and subset and name.startswith(f"{subset}/") else None
            for cand in (name, f"{subset}/{name}" if subset and bare is None else bare):
                p = safe_join(root, cand) if cand else None
                if p is not None and p.is_file():
                    found = p
                    break
            if found is None:
                missing += 1
            out.append(str(found) if found is not None else None)
        self.missing_images += missing
        return out
