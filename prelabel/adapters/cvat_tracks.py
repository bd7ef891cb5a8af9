"""CVAT for video: tracks and frame tags placed on the task's frames. A track's shape at a frame is the listed
shape there, else a linear interpolation between the listed shapes around it, else (after its last listed shape)
that shape repeated to the end of the task, as CVAT does (the conventions of :mod:`prelabel.adapters.cvat`).
:class:`TrackRows` adds this to :class:`~prelabel.adapters.cvat_shapes.ShapeRows`.

Example:
    >>> frame_step("step=3"), frame_step("")
    (3, 1)
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReadError
from ..geometry import angle_lerp, keyframe_lerp
from ..imagesize import MAX_SIDE
from ..report import Report
from .base import NeedsWholeRead, ReadOptions
from .cvat_shapes import BadValue, ShapeRows, flag, parse_points

__all__ = ["TrackRows", "frame_step"]

_MAX_FRAMES = 1_000_000  # a video task with more frames is a broken <meta> (each frame becomes an image row)
_STEP_RE = re.compile(r"step\s*=\s*(\d+)")


class TShape:
    """One listed shape of a track (tracks are few; their shapes are small objects)."""

    __slots__ = ("attrs", "frame", "keyframe", "kind", "line", "mask", "occluded", "outside", "rot", "vec",
                 "z_order")

    def __init__(self, frame: int, kind: str, vec: tuple[float, ...], rot: float, outside: bool,
                 occluded: bool, keyframe: bool, z_order: int | None, attrs: dict[str, Any], line: int,
                 mask: tuple[str, int, int, int, int] | None) -> None:
        self.frame, self.kind, self.vec, self.rot = frame, kind, vec, rot
        self.outside, self.occluded, self.keyframe, self.z_order = outside, occluded, keyframe, z_order
        self.attrs, self.line, self.mask = attrs, line, mask


class Track:
    __slots__ = ("bad", "elements", "group_id", "id", "label", "line", "shapes", "source")

    def __init__(self, tid: str, label: str, group_id: str | None, source: str | None, line: int) -> None:
        self.id, self.label, self.group_id, self.source, self.line = tid, label, group_id, source, line
        self.shapes: list[TShape] = []
        self.elements: list[Track] = []
        self.bad: str | None = None  # why a shape of the track could not be read: the whole track is dropped


def frame_step(text: str) -> int:
    """The step of a CVAT ``frame_filter`` (``step=N``; 1 without one)."""
    m = _STEP_RE.search(text or "")
    return max(int(m.group(1)), 1) if m else 1


class TrackRows(ShapeRows):
    """:class:`ShapeRows` with the tracks and frame tags of a CVAT for video file: each track is expanded to the
    task's frames (images named by ``options.frame_pattern``) once it ends, or at the end of the file when
    ``<meta>`` does not say how many frames the task has."""

    def __init__(self, path: Path, *, options: ReadOptions, report: Report, images_root: Path | None,
                 part: bool = False, line0: int = 0) -> None:
        super().__init__(path, options=options, report=report, images_root=images_root, part=part, line0=line0)
        self.track: Track | None = None
        self.subtrack: Track | None = None
        self.frame_tags: dict[int, list[str]] = {}
        self.max_frame: int | None = None
        self.frame_rows: dict[int, int] = {}
        self.frames_ready = False
        self.frame_list: list[int] = []
        self.frame_set: set[int] = set()
        self.fw = self.fh = 0
        self.pending_tracks: list[Track] = []  # held only when <meta> gives no stop_frame nor size
        self.has_tracks = False
        self.approx_tracks: list[str] = []

    def _frame_task(self) -> dict[str, Any] | None:
        for t in self.tasks:
            if "original_width" in t or "start_frame" in t:
                return t
        return self.tasks[0] if self.tasks else None

    def _video_tag(self, a: dict[str, str]) -> None:
        if self.part:
            raise NeedsWholeRead(f"{self.file}:{self._line()}: frame tags (CVAT for video) are "
                                 "placed on the task's frames only at the end of the file")
        self.cur_attrs = None
        frame = a.get("frame")
        if frame is None:
            return
        if not self.tag_count:
            self.tag_line = self._line()
        self.tag_count += 1
        self.frame_tags.setdefault(int(frame), []).append(a.get("label", ""))

    def _track_start(self, a: dict[str, str]) -> None:
        if self.part:
            raise NeedsWholeRead(f"{self.file}:{self._line()}: tracks (CVAT for video) write "
                                 "rows on every frame, known only at the end of the file")
        self.has_tracks = True
        self.track = Track(a.get("id", ""), a.get("label", ""), a.get("group_id"), a.get("source"),
                            self._line())

    def _track_child(self, name: str, a: dict[str, str], d: int) -> None:
        if d == 3 and name == "track":
            self.subtrack = Track(a.get("id", ""), a.get("label", ""), None, a.get("source"),
                                   self._line())
            return
        target = self.track if d == 3 else (self.subtrack if d == 4 else None)
        if target is None or name == "attribute":
            return
        try:
            shape = self._tshape(name, a)
        except (BadValue, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
            # one malformed keyframe: its track cannot be interpolated, so the track is dropped (at the end)
            track = self.track
            if track is not None and track.bad is None:
                track.bad = f"<{name}> at line {self._line()}: {self._why(e)}"
            self._listen({}, target.label, d + 1)  # its <attribute> children go nowhere
            return
        target.shapes.append(shape)
        if target is self.track:
            self._listen(target.shapes[-1].attrs, target.label, d + 1)

    def _tshape(self, name: str, a: dict[str, str]) -> TShape:
        line = self._line()
        frame = int(a["frame"])
        outside = flag(a.get("outside"))
        occluded = flag(a.get("occluded"))
        keyframe = a.get("keyframe", "1") in ("1", "true", "True")
        z = a.get("z_order")
        z_order = int(z) if z is not None else None
        rot = float(a.get("rotation", 0.0))
        mask = None
        vec: tuple[float, ...] = ()
        if name == "box":
            vec = (float(a["xtl"]), float(a["ytl"]), float(a["xbr"]), float(a["ybr"]))
        elif name == "ellipse":
            vec = self._ellipse(a)
        elif name == "mask":
            mask = self._mask(a)
        elif name in ("polygon", "polyline", "points"):
            vec = parse_points(a.get("points", ""))
        return TShape(frame, name, vec, rot, outside, occluded, keyframe, z_order, {}, line, mask)

    def _frames(self) -> tuple[list[int], int, int]:
        """(the task's frame numbers, width, height) of video frames."""
        task = self._frame_task() or {}
        try:
            start = int(task.get("start_frame") or 0)
            step = frame_step(str(task.get("frame_filter", "")))
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
        if w > MAX_SIDE or h > MAX_SIDE:
            raise ReadError(self.file, f"<original_size> {w}x{h} is larger than {MAX_SIDE} pixels", element="meta")
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

    def _track_end(self, track: Track) -> None:
        if self.frames_ready or self._stop_known():
            self._expand_track(track)
        else:  # the last frame is the last frame any track names: wait for the end of the file
            for s in (*track.shapes, *(s for el in track.elements for s in el.shapes)):
                if self.max_frame is None or s.frame > self.max_frame:
                    self.max_frame = s.frame
            self.pending_tracks.append(track)

    def _expand_track(self, track: Track) -> None:
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
        elements: dict[str, tuple[list[int], list[TShape]]] = {}
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

    def _prepare(self, track: Track, shapes: list[TShape]) -> list[TShape]:
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

    def _interp(self, s0: TShape, s1: TShape | None, f: int, track_id: str) -> tuple[tuple[float, ...], float]:
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

    def _state_at(self, frames: list[int], shapes: list[TShape], f: int) -> tuple[float, float, bool] | None:
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

    def _emit_state(self, track: Track, label: str, base: dict[str, Any], s0: TShape, s1: TShape | None,
                    f: int, elements: dict[str, tuple[list[int], list[TShape]]]) -> None:
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
