"""Label Studio video: ``videorectangle`` keyframes become one box per frame, on frame images named as CVAT's.

Called by :mod:`prelabel.adapters.labelstudio` for a task whose results hold a ``videorectangle``.

The rule is Label Studio's own drawing (its editor, ``web/libs/editor/src/regions/VideoRectangleRegion.js``
``getShape``, ``VideoRegion.js`` ``isInLifespan``, ``utils/props.ts`` ``interpolateProp``):

- ``value.sequence`` lists keyframes ``{frame (1-based), x, y, width, height (percent of the frame),
  rotation, enabled}``, sorted here by frame.
- At a keyframe's frame the box is that keyframe. Between keyframe k and k+1 it is the straight line between
  them, ``t = (frame - frame_k) / (frame_k+1 - frame_k)`` (rotation along the shorter arc): the shared
  :func:`prelabel.geometry.keyframe_lerp` and :func:`~prelabel.geometry.angle_lerp` that CVAT tracks use.
  After the last keyframe the box stays as that keyframe until ``value.framesCount`` (without it, nothing
  after the last keyframe). Before the first keyframe there is no box.
- ``enabled: false`` on a keyframe: the box is drawn on that frame, and not after it until the next keyframe
  (a gap; the region may reappear at a later, enabled keyframe).
- Percent of the frame become pixels, and ``rotation`` turns the box about its top-left corner, as for
  ``rectanglelabels`` (``tags/object/Video/Rectangle.tsx`` draws a Konva ``Rect`` at ``x, y``): the rows go to
  the Label Studio reader's rectangle columns, converted with its rectangles.

Frames: Label Studio frame ``k`` (1-based) is CVAT frame ``k - 1`` (0-based), an image named
``frame_file_name(options.frame_pattern, k - 1)`` (default ``frame_000000.png``), as the CVAT video reader
names frames, so the same track exported from both tools lands on the same images with the same boxes.
Sizes: the task's ``original_width`` / ``original_height``, else the header of the region's first frame image
under ``options.images``, else the region is dropped (``dropped.no_image``) naming the task and the frame file.
Each frame a region writes counts as one annotation read (as CVAT's tracks). The attributes carry the region
id as ``track_id`` and ``keyframe`` (true on a keyframe's own frame), as CVAT's do.

Example:
    >>> seq = [{"frame": 1, "x": 10, "y": 10, "width": 20, "height": 20, "enabled": True},
    ...        {"frame": 3, "x": 30, "y": 10, "width": 20, "height": 20, "enabled": False}]
    >>> fb = frame_boxes({"sequence": seq, "framesCount": 10})
    >>> fb.frames.tolist(), fb.geo[:, 0].tolist(), fb.keyframe.tolist()
    ([0, 1, 2], [10.0, 20.0, 30.0], [True, False, True])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..geometry import angle_lerp, keyframe_lerp
from .base import NeedsWholeRead, frame_file_name
from .labelstudio_regions import is_region, source_name

if TYPE_CHECKING:
    from .labelstudio_reader import Reader

__all__ = ["VIDEO_TYPES", "FrameBoxes", "VideoDrop", "frame_boxes", "has_video", "read_video_task"]

VIDEO_TYPES = frozenset({"videorectangle"})
_MAX_FRAMES = 1_000_000  # as CVAT's reader: more frames than this is a broken file, not a video
_KEYS = ("x", "y", "width", "height", "rotation")


class VideoDrop(Exception):
    """A region that cannot become boxes: the ledger reason and the message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class FrameBoxes(NamedTuple):
    """The boxes of one region, one row a frame."""

    frames: np.ndarray    # int64: 0-based frame numbers (CVAT's), increasing
    geo: np.ndarray       # float64 (n, 5): x, y, width, height in percent of the frame, rotation in degrees
    keyframe: np.ndarray  # bool: the frame is a keyframe of the sequence


def has_video(groups: list[tuple[bool, list[Any], Any, Any, int]]) -> bool:
    """Whether any chosen result of a task is a video region."""
    for g in groups:  # a loop, not any() over a generator: this runs over every region of an export
        for r in g[1]:
            if type(r) is dict and r.get("type") in VIDEO_TYPES:
                return True
    return False


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} must be a number, got {v!r}")
    return float(v)


def frame_boxes(value: dict[str, Any]) -> FrameBoxes:
    """The per-frame boxes of a ``videorectangle`` value (see the module's rule). A sequence that is not a list of
    keyframe objects with numbers raises ValueError; an empty one raises :class:`VideoDrop`."""
    seq = value.get("sequence")
    if not isinstance(seq, list):
        raise ValueError(f"value.sequence must be a list of keyframes, got {type(seq).__name__}")
    if not seq:
        raise VideoDrop("dropped.invalid", "a video rectangle without keyframes (empty value.sequence)")
    rows = []
    for i, kf in enumerate(seq):
        if type(kf) is not dict:
            raise ValueError(f"value.sequence[{i}] must be an object, got {type(kf).__name__}")
        f = _number(kf.get("frame"), f"value.sequence[{i}].frame")
        if not f.is_integer() or f < 1:
            raise ValueError(f"value.sequence[{i}].frame must be a whole frame number from 1, got {kf.get('frame')!r}")
        vals = [_number(kf.get(k, 0.0) if k == "rotation" else kf.get(k), f"value.sequence[{i}].{k}")
                for k in _KEYS]
        rows.append((f, *vals, 0.0 if kf.get("enabled", True) is False else 1.0))
    kfs = np.array(rows, dtype=np.float64)
    if not np.isfinite(kfs).all():
        raise ValueError("value.sequence holds a number that is not finite")
    kfs = kfs[np.argsort(kfs[:, 0], kind="stable")]
    frames = kfs[:, 0].astype(np.int64)
    dup = np.flatnonzero(frames[1:] == frames[:-1])
    if dup.size:
        raise ValueError(f"value.sequence has two keyframes at frame {int(frames[dup[0]])}")
    count = value.get("framesCount")
    last = int(frames[-1])
    if count is not None:
        n = _number(count, "value.framesCount")
        if not n.is_integer() or n < 1:
            raise ValueError(f"value.framesCount must be a whole number of frames, got {count!r}")
        last = max(last, int(n))
    if last > _MAX_FRAMES:
        raise ValueError(f"the video has {last} frames; more than {_MAX_FRAMES} is not a plausible video")
    enabled = kfs[:, 6] > 0
    # frames each keyframe draws: to the next keyframe (exclusive; the last to the end) while enabled, else its own
    ends = np.append(frames[1:], last + 1)
    counts = np.where(enabled, ends - frames, 1)
    seg = np.repeat(np.arange(len(frames)), counts)
    offset = np.arange(seg.size) - np.repeat(np.cumsum(counts) - counts, counts)
    nxt = np.minimum(seg + 1, len(frames) - 1)
    span = frames[nxt] - frames[seg]
    t = np.where(span > 0, offset / np.where(span > 0, span, 1), 0.0)  # the last keyframe is held: t = 0
    v0, v1 = kfs[seg, 1:6], kfs[nxt, 1:6]
    geo = np.empty((seg.size, 5), dtype=np.float64)
    geo[:, :4] = keyframe_lerp(v0[:, :4], v1[:, :4], t[:, None])
    geo[:, 4] = angle_lerp(v0[:, 4], v1[:, 4], t)
    return FrameBoxes(frames[seg] + offset - 1, geo, offset == 0)


def read_video_task(host: Reader, groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]], *,
                    size: tuple[int, int] | None, url: str, tid: Any, label: str, line: int,
                    streaming: bool) -> None:
    """Append the boxes of a video task's chosen results to ``host``'s columns (images placed by frame name);
    other regions of the task are dropped as ``dropped.unsupported``. ``streaming``: the host hands out chunks of
    whole images, which a video's regions (each over many frames) do not make: NeedsWholeRead."""
    if streaming:
        raise NeedsWholeRead(f"{host.file}:{line}: {label} is a video; its frame images are placed by read()")
    merged: list[str] = []
    for is_pred, results, base, score0, gline in groups:
        src = source_name(base)
        for r in results:
            host.cur = r
            if type(r) is not dict or (type(r.get("type")) is str and not is_region(r)):
                continue  # a relation or a classification
            v = r.get("value")
            labs = v.get("labels") if type(v) is dict else None
            cat = labs[0] if isinstance(labs, list) and labs and isinstance(labs[0], str) else None
            msg = f"{label}, {src}, region {r.get('id')}"
            if r.get("type") not in VIDEO_TYPES or type(v) is not dict:
                host.drops.append(("dropped.unsupported", cat, host.file, gline,
                                   f"{msg}: a '{r.get('type')}' result in a video task is not a box on a frame"))
                continue
            if not cat or not cat.strip():
                host.drops.append(("dropped.invalid", None, host.file, gline, f"{msg}: a video rectangle without a label"))
                continue
            try:
                fb = frame_boxes(v)
            except VideoDrop as d:
                host.drops.append((d.reason, cat, host.file, gline, f"{msg}: {d.message}"))
                continue
            names = [frame_file_name(host.opts.frame_pattern, f) for f in fb.frames.tolist()]
            wh, path = size, None
            if wh is None and host.root is not None and names:
                known = host.img_of_name.get(names[0], -1)
                if known >= 0:
                    wh = (host.img_w[known], host.img_h[known])
                else:
                    placed = host.images.place(names[0], at=f"{host.file}:{gline}")
                    wh, path = placed.size, placed.path
            if wh is None:
                why = host.images.why_unsized(names[0], path, lacks="no original_width/height in the task")
                host.drops.append(("dropped.no_image", cat, host.file, gline,
                                   f"{msg}: the video frame size is unknown ({why}); {len(names)} frame box(es) "
                                   "left out"))
                continue
            imgs = []
            for fr, name in zip(fb.frames.tolist(), names, strict=True):
                img = host.img_of_name.get(name)
                if img is not None and img < 0:
                    raise NeedsWholeRead(f"{host.file}:{gline}: {label} names frame image {name!r}, whose chunk was "
                                         "already handed out (read() merges the tasks into one image)")
                if img is None:
                    placed = host.images.place(name, at=f"{host.file}:{gline}", size=wh)
                    img = host.add_image(name, wh, placed.path, {"url": url, "task_id": tid, "frame": fr})
                elif host.img_attrs[img].get("task_id") != tid and name not in merged:
                    merged.append(name)
                imgs.append(img)
            n = len(imgs)
            rid = r.get("id")
            labels = list(labs or ())
            extra = {} if len(labels) == 1 else {"labels": labels}
            kf_attrs = {**(base or {}), "track_id": rid, "keyframe": True, **extra}
            mid_attrs = {**kf_attrs, "keyframe": False}
            s = r.get("score") if is_pred else None
            score = float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else score0
            ow = float(r.get("original_width", wh[0]))
            oh = float(r.get("original_height", wh[1]))
            geo = np.column_stack([fb.geo, np.full((n, 2), (ow, oh))])
            host.r_geo.extend(map(tuple, geo.tolist()))
            host.r_img += imgs
            host.r_cat += [cat] * n
            host.r_pct += [True] * n
            host.r_seg += [None] * n
            host.r_score += [score if is_pred else float("nan")] * n
            host.r_attrs += [kf_attrs if k else mid_attrs for k in fb.keyframe.tolist()]
            host.r_file += [host.file] * n
            host.r_line += [gline] * n
    host.cur = None
    if merged:
        host.report.note("image.merged", host.file,
                         f"{label} names {len(merged)} frame image(s) an earlier task named (first {merged[0]!r}): "
                         "their boxes share those images", severity="warning")
