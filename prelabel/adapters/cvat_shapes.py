"""CVAT shapes to annotation rows: the column lists one CVAT file's rows go to, and how each shape element of an
``<image>`` (box, rotated box, polygon, ellipse, mask, skeleton, points, tag, and the shapes that are not areas)
becomes a row or a counted drop. :class:`ShapeRows` is the base of the CVAT reader (:mod:`.cvat_reader`); the
conventions are those of :mod:`prelabel.adapters.cvat`.

Example:
    >>> parse_points("1,2;3,4.5")
    (1.0, 2.0, 3.0, 4.5)
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, option
from ..geometry import cvat_rle_to_coco, ellipse_polygon, rle_bbox, rotated_box_center
from ..report import Report
from .base import NeedsWholeRead, ReadOptions

__all__ = ["SHAPES", "BadValue", "ShapeRows", "parse_points"]

SHAPES = frozenset({"box", "polygon", "polyline", "points", "ellipse", "mask", "skeleton", "cuboid"})


class BadValue(Exception):
    """A malformed element; turned into a ReadError with the file and line by the parse loop."""


def parse_points(text: str) -> tuple[float, ...]:
    """``"x,y;x,y"`` as a flat tuple of floats (:class:`BadValue` for an odd number of coordinates).

    >>> parse_points("")
    ()
    """
    if not text.strip():
        return ()
    vals = tuple(float(v) for v in text.replace(";", ",").split(","))
    if len(vals) % 2:
        raise BadValue(f"points {text[:60]!r} has an odd number of coordinates")
    return vals


def flag(value: str | None) -> bool:
    """A CVAT boolean attribute ("1", "true", "True").

    >>> flag("1"), flag("0"), flag(None)
    (True, False, False)
    """
    return value in ("1", "true", "True")


class ShapeRows:
    """The columns of one CVAT file's images and rows (numbers in flat arrays, one entry per row elsewhere), its
    drops (counted in bulk at the end), what ``<meta>`` says about the labels, and the shape elements of an
    ``<image>`` turned into rows. ``part``: reading one part of a file (a plan's byte range): what depends on
    the rest of the file raises :class:`NeedsWholeRead`. ``line0``: the lines before the bytes parsed."""

    def __init__(self, path: Path, *, options: ReadOptions, report: Report, images_root: Path | None,
                 part: bool = False, line0: int = 0) -> None:
        self.path = path
        self.file = str(path)
        self.options = options
        self.report = report
        self.images_root = images_root
        self.part = part
        self.line0 = line0
        if options.cvat_points not in ("skip", "keypoints"):
            raise UsageError(f"{option('cvat_points')} must be 'skip' or 'keypoints', got {options.cvat_points!r}")
        self.points_as_kp = options.cvat_points == "keypoints"
        self.parser: Any = None
        self.strs: dict[str, str] = {}  # labels, sources and attribute names: each value kept once
        # what <meta> says
        self.labels: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.attr_types: dict[str, dict[str, str]] = {}
        self.nodes: dict[str, list[str]] = {}
        # images
        self.img_name: list[str] = []
        self.img_w: list[int] = []
        self.img_h: list[int] = []
        self.img_attrs: list[dict[str, Any] | None] = []
        self.img_line: list[int] = []
        self.cur_img = -1
        # annotation columns
        self.a_box: array[float] = array("d")  # x0, y0, x1, y1 of each row
        self.a_il: array[int] = array("q")     # image, line of each row
        self.a_cat: list[str] = []
        self.a_seg: list[Any] = []
        self.a_kp: list[Any] = []
        self.a_attr: list[dict[str, Any] | None] = []
        self.kp_points_rows: list[int] = []  # rows holding <points> kept as keypoints (padded at the end)
        self.clipped_rows: list[int] = []    # masks cut at the image border
        self.kp_k: dict[str, int] = {}       # <points> kept as keypoints: the largest count per category
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
        self.skel: dict[str, Any] | None = None
        self.tag_count = 0
        self.tag_line = 0

    def _line(self) -> int:
        """The file line of the element being parsed."""
        return int(self.parser.CurrentLineNumber) + self.line0

    def _whole_needed(self, why: str) -> None:
        """Reading a part: what follows depends on the rest of the file."""
        if self.part:
            raise NeedsWholeRead(f"{self.file}:{self._line()}: {why}")

    def _listen(self, attrs: dict[str, Any], label: str, depth: int) -> None:
        """Send the <attribute> children found at ``depth`` into ``attrs``."""
        self.cur_attrs = attrs
        self.cur_label = label
        self.attr_depth = depth

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
        label = a.get("label") or None
        self._listen({}, label or "", 4)  # its <attribute> children go nowhere
        self._drop("dropped.invalid", label, self._line(), f"<{name}>: {self._why(e)}")

    @staticmethod
    def _why(e: Exception) -> str:
        """Why a shape's values could not be read, for its drop message."""
        return (f"missing attribute {e.args[0]!r}" if isinstance(e, KeyError) else str(e)
                if isinstance(e, BadValue) else f"bad value: {e}")

    @staticmethod
    def _ellipse(a: dict[str, str]) -> tuple[float, ...]:
        """cx, cy, rx, ry of an ``<ellipse>``."""
        return (float(a["cx"]), float(a["cy"]), float(a["rx"]), float(a["ry"]))

    @staticmethod
    def _mask(a: dict[str, str]) -> tuple[str, int, int, int, int]:
        """rle, left, top, width, height of a ``<mask>``."""
        return (a["rle"], int(float(a["left"])), int(float(a["top"])), int(float(a["width"])),
                int(float(a["height"])))

    def _image_shape(self, name: str, a: dict[str, str]) -> None:
        line = self.parser.CurrentLineNumber + self.line0  # (inline: once a shape)
        img = self.cur_img
        label = a.get("label", "")
        label = self.strs.setdefault(label, label)  # one str object per label, not one per row
        if flag(a.get("outside")) and name != "tag":
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
            self._row(img, label, x0, y0, x1, y1, None, None, attrs, line)
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
        if name not in SHAPES:
            self._drop("dropped.unsupported", label or None, line, f"<{name}> is not a shape prelabel knows")
            return
        if not label:
            self._drop("dropped.unknown_category", None, line, f"{name} with an empty label")
            return
        if name == "mask":
            self._emit_mask(img, label, self._mask(a), attrs, line)
            return
        vec: tuple[float, ...]
        if name == "ellipse":
            vec = self._ellipse(a)
            r = float(a.get("rotation", 0.0))
            self._emit_shape("ellipse", vec, r, None, img, label, attrs, line, False)
            return
        vec = parse_points(a["points"]) if name != "cuboid" else ()  # a cuboid has xtl1.. corners, no points
        self._emit_shape(name, vec, 0.0, None, img, label, attrs, line, bool(attrs.get("occluded")))

    def _add_tag(self, img: int, label: str) -> None:
        attrs = self.img_attrs[img]
        if attrs is None:
            attrs = {}
            self.img_attrs[img] = attrs
        attrs.setdefault("tags", []).append(label)

    def _skeleton_node(self, a: dict[str, str]) -> None:
        if self.skel is None:
            return
        vec = parse_points(a.get("points", ""))
        outside = flag(a.get("outside"))
        occluded = flag(a.get("occluded"))
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
        if label not in self.nodes:  # its node names come from its first skeleton in the file
            self._whole_needed(f"skeleton {label!r} is missing from <meta>")
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
            self._whole_needed("points kept as keypoints take the largest count in the file")
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
