"""LabelMe JSON: one ``.json`` file per image, or a folder of them (read recursively, in sorted path order).

What becomes what (``docs/formats/labelme.md`` has the full table):

- **Image.** ``imagePath`` is resolved against the JSON file's folder and kept as a safe name relative to the
  images root (``options.images``, else the source folder); a name that would escape both (absolute, or ``..``
  past the root) is replaced by its base name with an ``image.unsafe_name`` note. ``imageWidth`` and
  ``imageHeight`` are the size; the embedded ``imageData`` is never decoded when they are there. Without them
  the size comes from the image file's header, else from the first bytes of ``imageData`` (both
  ``image.size_from_header``); with neither, the image is left out and its shapes dropped
  (``dropped.no_image``). ``flags`` (image level) go to the image attributes (``image.attribute``).
- **Shapes.** ``rectangle`` (two corners, any order) is a box; ``polygon`` (and ``oriented_rectangle``) a
  polygon; ``circle`` (centre, a point on the circle) a 64-vertex polygon (:func:`prelabel.geometry.ellipse_polygon`,
  as CVAT ellipses); ``mask`` (a base64 PNG whose top-left pixel is the rounded first corner of its two points)
  a COCO RLE of the whole image. ``point``, ``line`` and ``linestrip`` are dropped (``dropped.unsupported``)
  unless ``options.points == "keypoints"``: then each is a keypoint annotation of its label (keypoints named
  ``"1".."K"``, K the largest count of the label; shorter ones padded with ``v=0``).
- **Grouping.** Shapes sharing a label and a non-null ``group_id`` are one annotation, as labelme's
  ``labelme2coco`` does: a multi-part polygon, or (with a mask among them) the union as one RLE. The ledger
  counts annotations, so a group counts once (``shape.grouped`` note). Shape ``flags``, ``description`` and
  ``group_id`` go to the annotation attributes.
- **Source locations** are ``file#shapes[i]`` (the group's first shape). Malformed JSON is a ReadError with
  the file and line; a malformed shape is dropped (``dropped.invalid``), a shape without a label
  (``dropped.unknown_category``), a polygon of fewer than 3 points or a circle of radius 0
  (``dropped.degenerate``).

Example:
    >>> import json, tempfile, pathlib
    >>> from prelabel.adapters.base import ReadOptions
    >>> from prelabel.report import Report
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> shapes = [{"label": "cat", "points": [[30, 40], [10, 20]], "shape_type": "rectangle", "group_id": None},
    ...           {"label": "cat", "points": [[0, 0], [4, 0], [4, 3]], "shape_type": "polygon", "group_id": None},
    ...           {"label": "tail", "points": [[1, 1], [2, 2]], "shape_type": "line", "group_id": None}]
    >>> doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "a.jpg", "imageData": "not read",
    ...        "imageHeight": 48, "imageWidth": 64}
    >>> _ = (d / "a.json").write_text(json.dumps(doc))
    >>> detect(d / "a.json"), detect(d)
    (0.95, 0.55)
    >>> ds = read(d, options=ReadOptions(), report=(rep := Report()))
    >>> ds.boxes.tolist(), ds.images["file_name"].tolist(), rep.dropped_counts()
    ([[10.0, 20.0, 20.0, 20.0], [0.0, 0.0, 4.0, 3.0]], ['a.jpg'], {'dropped.unsupported': 1})
    >>> rep.drops["source"].tolist()
    ['a.json#shapes[2]']
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import ReadError, UsageError, option
from ..geometry import (
    bbox_of_polygons,
    ellipse_polygon,
    paste_clipped,
    rle_bbox,
    rle_decode,
    rle_encode,
    rle_from_polygons,
)
from ..images import ImageRoot
from ..imagesize import HEADER_BYTES, MAX_SIDE, size_from_bytes
from ..junk import Skips, first_file, walk_files
from ..model import Dataset
from ..paths import safe_relative
from ..report import Report
from .base import ReadOptions
from .parts import FilesPart

__all__ = ["DESCRIPTION", "NAME", "auto_workers", "detect", "plan", "read", "read_part"]

NAME = "labelme"
DESCRIPTION = "LabelMe JSON: one file per image (rectangles, polygons, circles, masks), or a folder of them"

_DETECT_PARSE_LIMIT = 16 * 1024 * 1024  # larger files are judged by their first bytes
_POINT_KINDS = frozenset({"point", "line", "linestrip"})
_B64_HEAD = (HEADER_BYTES // 3 + 1) * 4  # base64 characters that decode to a little over HEADER_BYTES


# ---------------------------------------------------------------------------------------------- detect
def _is_labelme(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("shapes"), list) and (
        "imagePath" in doc or "imageData" in doc)


def _looks_like(p: Path) -> bool:
    if p.stat().st_size > _DETECT_PARSE_LIMIT:
        with open(p, "rb") as f:
            head = f.read(64 * 1024).lstrip()
        return head.startswith(b"{") and b'"shapes"' in head and (b'"version"' in head or b'"imagePath"' in head)
    try:
        return _is_labelme(orjson.loads(p.read_bytes().removeprefix(b"\xef\xbb\xbf")))  # a UTF-8 BOM is fine
    except orjson.JSONDecodeError:
        return False


def detect(path: Path) -> float:
    """0.95 for a LabelMe JSON file (a dict with a ``shapes`` list and ``imagePath`` or ``imageData``); 0.55 for
    a folder whose first JSON file (sorted, up to 4 levels down) is one: below every other folder detector, so
    a folder that also holds VOC or YOLO files is still read as it was before this format; else 0."""
    p = Path(path)
    if p.is_file():
        return 0.95 if p.suffix.lower() == ".json" and _looks_like(p) else 0.0
    if p.is_dir():
        first = first_file(p, ".json", depth=4)
        return 0.55 if first is not None and _looks_like(first) else 0.0
    return 0.0


# ---------------------------------------------------------------------------------------------- reading
def _list_json(root: Path, skips: Skips) -> Iterator[tuple[str, str]]:
    """(path, posix path relative to ``root``) of every ``.json`` file under ``root`` that is not junk
    (:mod:`prelabel.junk`, recorded in ``skips``), sorted."""
    return iter(sorted(walk_files(root, ".json", skips), key=lambda t: t[1]))


def _int_size(v: Any) -> int | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and float(v).is_integer() \
            and 1 <= v <= MAX_SIDE:
        return int(v)
    return None


def _data_size(data: Any) -> tuple[int, int] | None:
    """(width, height) from the first bytes of base64 ``imageData`` (only its head is decoded)."""
    if not isinstance(data, str) or not data:
        return None
    head = data[:_B64_HEAD]
    head = head[:len(head) - len(head) % 4] if len(head) < len(data) else head
    try:
        return size_from_bytes(base64.b64decode(head))
    except (binascii.Error, ValueError):
        return None


def _points(v: Any) -> np.ndarray | None:
    """The (n, 2) float64 array of ``points``, or None when it is not a list of finite [x, y] pairs."""
    if not isinstance(v, list) or not v:
        return None
    if not all(isinstance(p, list) and len(p) == 2 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in p) for p in v):
        return None
    arr = np.asarray(v, dtype=np.float64)
    return arr if np.isfinite(arr).all() else None


def _mask_array(b64: Any) -> np.ndarray:
    """The 2-D bool array of a base64 PNG mask; ValueError when it is not one."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(b64, str) or not b64:
        raise ValueError("no base64 'mask' string")
    try:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            arr = np.asarray(im)
    except (binascii.Error, OSError, UnidentifiedImageError) as e:
        raise ValueError(f"mask is not a base64 PNG ({e})") from None
    if arr.ndim != 2:
        raise ValueError(f"mask decodes to shape {arr.shape}, not a 2-D image")
    return arr.astype(bool)


@dataclass
class _Instance:
    """The shapes of one annotation: polygon parts, mask parts, or keypoints."""

    label: str
    first: int                       # index of its first shape
    attrs: dict[str, Any]
    polys: list[np.ndarray] = field(default_factory=list)
    masks: list[tuple[np.ndarray, int, int]] = field(default_factory=list)  # (bool mask, left, top)
    box: tuple[float, float, float, float] | None = None  # a lone rectangle (x0, y0, x1, y1)
    kp: np.ndarray | None = None
    shapes: int = 0


_FLAGS_NOTE = "{} image(s) with flags kept as the image attribute 'flags'"
_GROUPED_NOTE = ("{} shapes sharing a group_id and label were joined into {} annotation(s) (each counts once in "
                 "the ledger)")


class _Reader:
    def __init__(self, src: Path, options: ReadOptions, report: Report) -> None:
        if options.points not in ("skip", "keypoints"):
            raise UsageError(f"points must be 'skip' or 'keypoints', got {options.points!r}")
        self.keypoints = options.points == "keypoints"
        self.report = report
        self.src_root = os.path.abspath(src if src.is_dir() else src.parent)
        self.img_root = os.path.abspath(options.images) if options.images is not None else None
        # images are looked up under --images, else beside the JSON files (then one not there is not noted)
        self.images = ImageRoot(self.img_root or self.src_root, report=report, given=self.img_root is not None)
        self.img: dict[str, list[Any]] = {k: [] for k in ("file_name", "width", "height", "path", "attributes",
                                                           "src_file")}
        self.ann: dict[str, list[Any]] = {k: [] for k in ("image", "category", "x0", "y0", "x1", "y1",
                                                           "segmentation", "keypoints", "attributes", "src_file")}
        self.clipped: list[int] = []
        self.counts = {"flags": 0, "grouped": 0, "groups": 0}

    # ------------------------------------------------------------------ one file
    def file(self, path: str, rel: str, *, single: bool) -> None:
        raw = Path(path).read_bytes()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ReadError(path, f"not valid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
        del raw
        if not _is_labelme(doc):
            if single:
                raise ReadError(path, "not a LabelMe file: no 'shapes' list with 'imagePath' or 'imageData'")
            self.report.note("file.skipped", rel, "not a LabelMe file (no 'shapes' list with 'imagePath' or "
                             "'imageData')")
            return
        data = doc.pop("imageData", None)  # held only until the size is known
        w, h = _int_size(doc.get("imageWidth")), _int_size(doc.get("imageHeight"))
        image = self.images.place(self._name(doc.get("imagePath"), path, rel), at=rel,
                                  size=(w, h) if w is not None and h is not None else None,
                                  embedded=lambda: _data_size(data))
        data = None  # (the embedded image, held only until the size was known)
        name, local = image.name, image.path
        w, h = image.size if image.size is not None else (None, None)
        shapes = doc["shapes"]
        if w is None or h is None:
            why = self.images.why_unsized(name, local, lacks="no imageWidth/imageHeight or readable imageData")
            self.report.note("image.missing", rel, f"{why}; the image is left out")
            for i, s in enumerate(shapes):
                label = s.get("label") if isinstance(s, dict) else None
                self.report.drop_one("dropped.no_image", category=label if isinstance(label, str) else None,
                                     source_file=f"{rel}#shapes[{i}]", message=why)
            return
        flags = doc.get("flags")
        self.img["file_name"].append(name)
        self.img["width"].append(w)
        self.img["height"].append(h)
        self.img["path"].append(local)
        self.img["attributes"].append({"flags": dict(flags)} if isinstance(flags, dict) and flags else None)
        self.counts["flags"] += isinstance(flags, dict) and bool(flags)
        self.img["src_file"].append(rel)
        self._shapes(shapes, len(self.img["file_name"]) - 1, rel, w, h)

    def _name(self, raw: Any, path: str, rel: str) -> str:
        """The image's name relative to the images root: ``imagePath`` resolved against the JSON file's folder
        (``..`` is fine while it stays under a root); else its base name, or the JSON file's stem, as unsafe."""
        if not isinstance(raw, str) or not raw.strip():
            raise ReadError(path, f"imagePath must be a non-empty string, got {raw!r}", element="imagePath")
        norm = raw.replace("\\", "/")
        if "\x00" not in norm:  # safe_relative checks the rest
            joined = posixpath.normpath(posixpath.join(os.path.dirname(os.path.abspath(path)), norm))
            for root in (self.img_root, self.src_root):
                if root is not None and (joined + "/").startswith(root.rstrip("/") + "/"):
                    name = safe_relative(posixpath.relpath(joined, root))
                    if name is not None:
                        return name
                    break
        fallback = safe_relative(posixpath.basename(norm)) or Path(rel).stem
        return self.images.name(raw, at=rel, fallback=fallback) or fallback

    # ------------------------------------------------------------------ shapes
    def _drop(self, reason: str, label: Any, where: str, message: str) -> None:
        self.report.drop_one(reason, category=label if isinstance(label, str) and label else None,
                             source_file=where, message=message)

    def _shapes(self, shapes: list[Any], img: int, rel: str, w: int, h: int) -> None:
        instances: dict[tuple[str, Any], _Instance] = {}
        for i, s in enumerate(shapes):
            where = f"{rel}#shapes[{i}]"
            if not isinstance(s, dict):
                self._drop("dropped.invalid", None, where, "a shape must be a JSON object")
                continue
            label, kind, gid = s.get("label"), s.get("shape_type") or "polygon", s.get("group_id")
            pts = _points(s.get("points"))
            if not isinstance(label, str) or not label:
                self._drop("dropped.unknown_category", None, where, f"{kind} with no label")
                continue
            if pts is None:
                self._drop("dropped.invalid", label, where, "points must be a list of [x, y] number pairs")
                continue
            attrs = {k: v for k, v in (("flags", s.get("flags")), ("description", s.get("description")),
                                       ("group_id", gid)) if v not in (None, "", {})}
            key = (label, gid) if gid is not None and kind not in _POINT_KINDS else (label, ("shape", i))
            inst = instances.get(key) or _Instance(label=label, first=i, attrs={})
            why = self._add(inst, str(kind), pts, s)
            if why is not None:
                self._drop(why[0], label, where, why[1])
                continue
            inst.attrs = {**attrs, **inst.attrs}  # the group's first shape wins
            instances.setdefault(key, inst)
        for inst in instances.values():
            self._emit(inst, img, rel, w, h)

    def _add(self, inst: _Instance, kind: str, pts: np.ndarray, s: dict[str, Any]) -> tuple[str, str] | None:
        """Add one shape to its instance; (reason, message) when it is dropped instead."""
        n = len(pts)
        if kind in _POINT_KINDS:
            if not self.keypoints:
                return "dropped.unsupported", f"{kind} is not an area (keep it as keypoints with {option('points', 'keypoints')})"
            kp = np.empty((n, 3), dtype=np.float64)
            kp[:, :2], kp[:, 2] = pts, 2.0
            inst.kp = kp
        elif kind == "rectangle":
            if n < 2:
                return "dropped.degenerate", f"rectangle with {n} point(s)"
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            inst.box = (float(x0), float(y0), float(x1), float(y1))
            inst.polys.append(np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64))
        elif kind in ("polygon", "oriented_rectangle"):
            if n < 3:
                return "dropped.degenerate", f"{kind} with {n} point(s)"
            inst.polys.append(pts.ravel())
        elif kind == "circle":
            r = float(np.hypot(*(pts[-1] - pts[0]))) if n >= 2 else 0.0
            if not r > 0:
                return "dropped.degenerate", "circle with radius 0"
            inst.polys.append(ellipse_polygon(float(pts[0, 0]), float(pts[0, 1]), r, r))
        elif kind == "mask":
            try:
                m = _mask_array(s.get("mask"))
            except ValueError as e:
                return "dropped.invalid", str(e)
            x0, y0 = np.rint(pts.min(axis=0)).astype(int).tolist()
            inst.masks.append((m, x0, y0))
        else:
            return "dropped.unsupported", f"shape_type {kind!r} is not one prelabel knows"
        inst.shapes += 1
        return None

    def _emit(self, inst: _Instance, img: int, rel: str, w: int, h: int) -> None:
        seg: Any = None
        kp = inst.kp
        if kp is not None:
            x0, y0, x1, y1 = (float(kp[:, 0].min()), float(kp[:, 1].min()), float(kp[:, 0].max()),
                              float(kp[:, 1].max()))
        elif inst.masks:
            full = rle_decode(rle_from_polygons(inst.polys, h, w)).astype(bool) if inst.polys else \
                np.zeros((h, w), dtype=bool)
            for m, left, top in inst.masks:
                if paste_clipped(full, m, left, top):
                    self.clipped.append(len(self.ann["image"]))
            seg = rle_encode(full)
            bx, by, bw, bh = rle_bbox(seg)
            x0, y0, x1, y1 = bx, by, bx + bw, by + bh
        elif inst.box is not None and inst.shapes == 1:
            x0, y0, x1, y1 = inst.box
        else:
            seg = inst.polys
            bx, by, bw, bh = bbox_of_polygons(seg)
            x0, y0, x1, y1 = bx, by, bx + bw, by + bh
        if inst.shapes > 1:
            self.counts["grouped"] += inst.shapes
            self.counts["groups"] += 1
        a = self.ann
        for k, v in (("image", img), ("category", inst.label), ("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1),
                     ("segmentation", seg), ("keypoints", kp), ("attributes", inst.attrs or None),
                     ("src_file", f"{rel}#shapes[{inst.first}]")):
            a[k].append(v)

    # ------------------------------------------------------------------ the Dataset
    def build(self, src: Path, *, part: bool = False) -> Dataset:
        """The Dataset of the files read; the notes counted over them come last (``part``: a part of
        :func:`plan`, whose counts are written even when 0, for :func:`~prelabel.adapters.parts.merge` to add up)."""
        rep, c, a = self.report, self.counts, self.ann
        n = len(a["image"])
        rep.add_read(n)
        self.images.notes(source=str(src), part=part)
        for code, source, counts, template, severity in (
                ("image.attribute", str(src), (c["flags"],), _FLAGS_NOTE, "info"),
                ("shape.grouped", str(src), (c["grouped"], c["groups"]), _GROUPED_NOTE, "info")):
            if part or any(counts):
                rep.tally(code, source, template, counts, severity=severity)
        cats = self._categories()
        x0, y0 = np.asarray(a["x0"], dtype=np.float64), np.asarray(a["y0"], dtype=np.float64)
        ann = {"image": np.asarray(a["image"], dtype=np.int64), "category": pd.Series(a["category"], dtype=object),
               "x": x0, "y": y0, "w": np.asarray(a["x1"], dtype=np.float64) - x0,
               "h": np.asarray(a["y1"], dtype=np.float64) - y0,
               **{k: pd.Series(a[k], dtype=object) for k in ("segmentation", "keypoints", "attributes", "src_file")}}
        images = {k: (pd.Series(v, dtype=object) if k not in ("width", "height") else np.asarray(v, dtype=np.int64))
                  for k, v in self.img.items()}
        ds = Dataset.build(images=images, categories=cats, annotations=ann, report=rep)
        if self.clipped:
            rep.change("clipped", ds.annotations.iloc[self.clipped][["category", "src_file", "src_line"]],
                       "mask extends outside the image; cut at the border")
        return ds

    def _categories(self) -> dict[str, list[Any]]:
        """Labels in first-seen order; labels with keypoint rows get keypoints "1".."K" (rows padded to K)."""
        a = self.ann
        names = list(dict.fromkeys(a["category"]))
        k_of: dict[str, int] = {}
        for cat, kp in zip(a["category"], a["keypoints"], strict=True):
            if kp is not None:
                k_of[cat] = max(k_of.get(cat, 0), len(kp))
        for r, (cat, kp) in enumerate(zip(a["category"], a["keypoints"], strict=True)):
            if kp is not None and len(kp) < k_of[cat]:
                a["keypoints"][r] = np.vstack([kp, np.zeros((k_of[cat] - len(kp), 3), dtype=np.float64)])
        return {"name": names, "keypoints": [[str(j + 1) for j in range(k_of[c])] if c in k_of else None
                                             for c in names],
                "skeleton": [[] if c in k_of else None for c in names]}


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[FilesPart]:
    """A folder cut into up to ``parts`` runs of its sorted JSON files, each read by :func:`read_part`; their
    datasets merged in this order give :func:`read`'s (the notes counted over every file are added up by
    :func:`~prelabel.adapters.parts.merge`). One part (``files=()``: the whole source) for a single file, and
    with ``points="keypoints"``: a label's keypoint count is the largest of every file, which pads every row.

    >>> plan(Path("no-such-folder"), options=ReadOptions(), parts=2)
    [FilesPart(source='no-such-folder', files=(), context=None)]
    """
    src = Path(path)
    whole = [FilesPart(source=str(src), files=())]
    if parts <= 1 or not src.is_dir() or options.points == "keypoints":
        return whole
    skips = Skips()
    files = [rel for _, rel in _list_json(src, skips)]
    notes = Report()
    try:
        skips.flush(notes, str(src))
    except ReadError:
        return whole   # read() raises it
    n = min(parts, len(files))
    if n < 2:
        return whole
    cuts = [len(files) * k // n for k in range(n + 1)]
    return [FilesPart(source=str(src), files=tuple(files[a:b]), context=tuple(notes.diagnostics) if not k else ())
            for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))]


def read_part(part: FilesPart, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`: its files read as :func:`read` reads them (``files=()``: the whole source);
    the first part carries the folder walk's notes (``context``).

    >>> read_part(FilesPart(source="no-such-folder", files=()), options=ReadOptions())
    Traceback (most recent call last):
    ...
    prelabel.errors.ReadError: no-such-folder: no such file or folder
    """
    src = Path(part.source)
    report = Report()
    if not part.files:
        return read(src, options=options, report=report)
    report.diagnostics.extend(part.context or ())
    reader = _Reader(src, options, report)
    for rel in part.files:
        reader.file(os.path.join(src, rel), rel, single=False)
    return reader.build(src, part=True)


def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """1: the files are read in one process unless a worker count is asked for.

    >>> auto_workers(Path("."), options=ReadOptions())
    1
    """
    return 1


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read one LabelMe JSON file, or every LabelMe JSON file under a folder (see the module docstring)."""
    src = Path(path)
    reader = _Reader(src, options, report)
    if src.is_file():
        reader.file(str(src), src.name, single=True)
    elif src.is_dir():
        skips = Skips()
        files = list(_list_json(src, skips))
        skips.flush(report, str(src))
        if not files:
            raise ReadError(str(src), "no LabelMe .json files found here",
                            hint="give one LabelMe .json file or a folder of them")
        for p, rel in files:
            reader.file(p, rel, single=False)
    else:
        raise ReadError(str(src), "no such file or folder")
    return reader.build(src)
