"""Label Studio video (``videorectangle``): keyframes become per-frame boxes on frame images named as CVAT names
them (issue 15 item 13). Values worked out by hand in the comments."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from prelabel.adapters import cvat
from prelabel.adapters import labelstudio as ls
from prelabel.adapters import labelstudio_video as ls_video
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.engine import PartStream
from prelabel.errors import ReadError
from prelabel.model import Dataset
from prelabel.report import Report

W, H = 200, 100  # the video frame, pixels


def _kf(frame: int, x: float, y: float, w: float, h: float, *, enabled: bool = True, rot: float = 0.0) -> dict[str, Any]:
    return {"frame": frame, "x": x, "y": y, "width": w, "height": h, "rotation": rot, "enabled": enabled,
            "time": frame / 25.0}


def _task(seq: list[dict[str, Any]], *, frames: int | None = 10, size: bool = True, rid: str = "trk1",
          label: str = "car", tid: int = 1) -> dict[str, Any]:
    r: dict[str, Any] = {"id": rid, "type": "videorectangle", "from_name": "box", "to_name": "video", "origin": "manual",
                         "value": {"sequence": seq, "labels": [label]}}
    if frames is not None:
        r["value"].update(framesCount=frames, duration=frames / 25.0)
    if size:
        r.update(original_width=W, original_height=H)
    return {"id": tid, "data": {"video": "/data/upload/1/0a1b2c3d-clip.mp4"},
            "annotations": [{"id": 10 + tid, "result": [r]}]}


def _read(tmp_path: Path, tasks: list[dict[str, Any]], **opts: Any) -> Dataset:
    p = tmp_path / "export.json"
    p.write_text(json.dumps(tasks))
    return ls.read(p, options=ReadOptions(**opts), report=Report())


def _rows(ds: Dataset) -> list[tuple[str, float, float, float, float]]:
    names = ds.images["file_name"]
    return [(names[i], round(x, 9), round(y, 9), round(w, 9), round(h, 9)) for i, x, y, w, h in
            zip(ds.annotations["image"], ds.annotations["x"], ds.annotations["y"], ds.annotations["w"],
                ds.annotations["h"], strict=True)]


def _balanced(ds: Dataset) -> None:
    rep = ds.report
    rep.set_written(len(ds))
    assert rep.balanced and rep.read == len(ds) + rep.dropped
    d = rep.drops
    if not len(d):
        return
    assert d["reason"].str.len().gt(0).all() and d["message"].str.len().gt(0).all()
    assert d["source"].str.contains(r"export\.json:\d+$").all()


def test_keyframes_1_and_5_give_five_interpolated_boxes(tmp_path: Path) -> None:
    # keyframe 1: x 10% y 20% w 20% h 30% -> 20,20 40x30 px of 200x100
    # keyframe 5: x 30% y 40% w 30% h 50% -> 60,40 60x50 px, enabled: false (the box ends after frame 5)
    seq = [_kf(1, 10, 20, 20, 30), _kf(5, 30, 40, 30, 50, enabled=False)]
    ds = _read(tmp_path, [_task(seq)])
    # LS frames 1..5 are CVAT frames 0..4; t = (f-1)/4: x = 20 + 40t, y = 20 + 20t, w = 40 + 20t, h = 30 + 20t
    assert _rows(ds) == [
        ("frame_000000.png", 20.0, 20.0, 40.0, 30.0),   # t = 0
        ("frame_000001.png", 30.0, 25.0, 45.0, 35.0),   # t = 1/4
        ("frame_000002.png", 40.0, 30.0, 50.0, 40.0),   # t = 1/2
        ("frame_000003.png", 50.0, 35.0, 55.0, 45.0),   # t = 3/4
        ("frame_000004.png", 60.0, 40.0, 60.0, 50.0),   # t = 1, then disabled: nothing on frames 6..10
    ]
    assert ds.images["width"].tolist() == [W] * 5 and ds.images["height"].tolist() == [H] * 5
    assert [a["frame"] for a in ds.images["attributes"]] == [0, 1, 2, 3, 4]
    attrs = ds.annotations["attributes"].tolist()
    assert [a["keyframe"] for a in attrs] == [True, False, False, False, True]
    assert {a["track_id"] for a in attrs} == {"trk1"} and attrs[0]["annotation_id"] == 11
    assert ds.annotations["category"].tolist() == ["car"] * 5
    assert ds.report.read == 5
    _balanced(ds)


def test_enabled_false_ends_a_segment_and_the_region_reappears_and_is_held(tmp_path: Path) -> None:
    # frames 1..2 from 0% to 10% x (enabled), keyframe 3 disabled: drawn on 3 only; gap on 4..5;
    # keyframe 6 enabled again: held as it is until framesCount 8 (frames 6, 7, 8)
    seq = [_kf(1, 0, 0, 10, 10), _kf(3, 10, 0, 10, 10, enabled=False), _kf(6, 50, 50, 10, 10)]
    ds = _read(tmp_path, [_task(seq, frames=8)])
    # x px = 2 * x%: frame 1 -> 0, frame 2 (t=1/2) -> 10, frame 3 -> 20; frames 6..8 -> 100, y 50, 20x10
    assert _rows(ds) == [
        ("frame_000000.png", 0.0, 0.0, 20.0, 10.0),
        ("frame_000001.png", 10.0, 0.0, 20.0, 10.0),
        ("frame_000002.png", 20.0, 0.0, 20.0, 10.0),
        ("frame_000005.png", 100.0, 50.0, 20.0, 10.0),
        ("frame_000006.png", 100.0, 50.0, 20.0, 10.0),
        ("frame_000007.png", 100.0, 50.0, 20.0, 10.0),
    ]
    _balanced(ds)


def test_without_frames_count_nothing_after_the_last_keyframe(tmp_path: Path) -> None:
    seq = [_kf(2, 0, 0, 10, 10), _kf(4, 20, 0, 10, 10)]
    ds = _read(tmp_path, [_task(seq, frames=None)])
    # frames 2, 3 (halfway: x 10% -> 20 px), 4 (x 20% -> 40 px); none before the first keyframe
    assert _rows(ds) == [("frame_000001.png", 0.0, 0.0, 20.0, 10.0), ("frame_000002.png", 20.0, 0.0, 20.0, 10.0),
                         ("frame_000003.png", 40.0, 0.0, 20.0, 10.0)]


def test_frame_pattern_names_the_frames(tmp_path: Path) -> None:
    ds = _read(tmp_path, [_task([_kf(3, 0, 0, 10, 10, enabled=False)])], frame_pattern="clip/{frame:04d}.jpg")
    assert ds.images["file_name"].tolist() == ["clip/0002.jpg"]


def test_missing_size_is_dropped_naming_the_task(tmp_path: Path) -> None:
    seq = [_kf(1, 10, 20, 20, 30), _kf(5, 30, 40, 30, 50, enabled=False)]
    ds = _read(tmp_path, [_task(seq, size=False, tid=42)])
    assert len(ds) == 0 and ds.report.read == 1
    d = ds.report.drops
    assert d["reason"].tolist() == ["dropped.no_image"] and d["category"].tolist() == ["car"]
    assert d["source"].tolist() == [f"{tmp_path / 'export.json'}:1"]
    # the first frame's image (LS frame 1 is frame 0 of frame_pattern) in the one resolver's words
    assert d["message"][0] == ("task 42, annotation 52, region trk1: the video frame size is unknown (image "
                               "'frame_000000.png' has no known size: no original_width/height in the task, and no "
                               "images root (ReadOptions(images=...)) to read it from); 5 frame box(es) left out")
    _balanced(ds)


def _png(path: Path, w: int, h: int) -> None:
    def chunk(t: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x00" * w for _ in range(h))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_size_from_the_frame_files_under_images(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    for f in range(2):
        _png(root / f"frame_{f:06d}.png", W, H)
    ds = _read(tmp_path, [_task([_kf(1, 10, 20, 20, 30), _kf(2, 10, 20, 20, 30, enabled=False)], size=False)],
               images=root)
    assert _rows(ds) == [("frame_000000.png", 20.0, 20.0, 40.0, 30.0), ("frame_000001.png", 20.0, 20.0, 40.0, 30.0)]
    assert ds.images["path"].tolist() == [str(root / "frame_000000.png"), str(root / "frame_000001.png")]


def test_other_results_of_a_video_task_are_dropped_with_a_reason(tmp_path: Path) -> None:
    task = _task([_kf(1, 0, 0, 10, 10, enabled=False)])
    task["annotations"][0]["result"].append({"id": "seg1", "type": "labels", "from_name": "t", "to_name": "video",
                                             "value": {"start": 1, "end": 3, "labels": ["night"]}})
    ds = _read(tmp_path, [task])
    assert len(ds) == 1 and ds.report.dropped_counts() == {"dropped.unsupported": 1}
    assert "region seg1: a 'labels' result in a video task" in ds.report.drops["message"][0]
    _balanced(ds)


def test_bad_keyframe_is_an_error_naming_file_task_and_region(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match=r"export\.json.*task=1.*region 'trk1'.*sequence\[1\]\.frame"):
        _read(tmp_path, [_task([_kf(1, 0, 0, 10, 10), {"frame": "two", "x": 1}])])


# ------------------------------------------------------------------ the same track from CVAT and Label Studio
# One truth table, in pixels of a 200x100 video of 10 frames (0-based, CVAT's numbering):
#   frames 0..4: from keyframe A at 0 to keyframe B at 4 (linear), then gone on 5..6,
#   frames 7..8: keyframe C at 7, held, then gone from 9.
A, B, C = (10.0, 20.0, 40.0, 30.0), (50.0, 40.0, 60.0, 50.0), (100.0, 10.0, 20.0, 20.0)  # x, y, w, h px
TRUTH = [(0, A, True), (4, B, False), (7, C, True), (8, C, False)]  # (frame0, box, visible after this keyframe)


def _cvat_xml() -> str:
    # CVAT: a keyframe per row; a track ends with an outside="1" shape at the first frame it is gone
    def box(f: int, b: tuple[float, ...], outside: int) -> str:
        return (f'<box frame="{f}" outside="{outside}" occluded="0" keyframe="1" xtl="{b[0]}" ytl="{b[1]}" '
                f'xbr="{b[0] + b[2]}" ybr="{b[1] + b[3]}" z_order="0"/>')
    shapes = [box(0, A, 0), box(4, B, 0), box(5, B, 1), box(7, C, 0), box(9, C, 1)]
    return ("<annotations><version>1.1</version><meta><task><size>10</size><mode>interpolation</mode>"
            "<start_frame>0</start_frame><stop_frame>9</stop_frame><labels><label><name>car</name></label></labels>"
            f"<original_size><width>{W}</width><height>{H}</height></original_size></task></meta>"
            f'<track id="0" label="car" source="manual">{"".join(shapes)}</track></annotations>')


def _ls_sequence() -> list[dict[str, Any]]:
    # Label Studio: frame + 1; percent of 200x100; enabled: false on the last visible frame of a segment
    def pct(b: tuple[float, ...]) -> tuple[float, float, float, float]:
        return b[0] / W * 100, b[1] / H * 100, b[2] / W * 100, b[3] / H * 100
    return [_kf(f + 1, *pct(b), enabled=vis) for f, b, vis in TRUTH]


def test_same_track_from_cvat_and_label_studio_gives_the_same_boxes(tmp_path: Path) -> None:
    xml = tmp_path / "annotations.xml"
    xml.write_text(_cvat_xml())
    c = cvat.read(xml, options=ReadOptions(), report=Report())
    lsd = _read(tmp_path, [_task(_ls_sequence(), frames=10)])
    expected = [  # frame 1..3: t = f/4 from A to B: x 10+40t, y 20+20t, w 40+20t, h 30+20t
        ("frame_000000.png", 10.0, 20.0, 40.0, 30.0), ("frame_000001.png", 20.0, 25.0, 45.0, 35.0),
        ("frame_000002.png", 30.0, 30.0, 50.0, 40.0), ("frame_000003.png", 40.0, 35.0, 55.0, 45.0),
        ("frame_000004.png", 50.0, 40.0, 60.0, 50.0),
        ("frame_000007.png", 100.0, 10.0, 20.0, 20.0), ("frame_000008.png", 100.0, 10.0, 20.0, 20.0)]
    assert _rows(lsd) == expected
    assert _rows(c) == expected
    ck = [a["keyframe"] for a in c.annotations["attributes"]]
    lk = [a["keyframe"] for a in lsd.annotations["attributes"]]
    # the boxes agree; the keyframe flags differ where the tools do: Label Studio's last visible frame of a
    # segment is a (disabled) keyframe, CVAT's keyframe is the outside marker on the frame after it
    assert ck == [True, False, False, False, True, True, False]
    assert lk == [True, False, False, False, True, True, True]
    # CVAT lists every frame of the task as an image (0..9); Label Studio the frames that hold a box
    assert set(lsd.images["file_name"]) <= set(c.images["file_name"])
    _balanced(lsd)


def test_streaming_a_video_export_asks_for_a_whole_read(tmp_path: Path) -> None:
    """A part of a video export cannot be read alone: the pipeline reads the export whole."""
    p = tmp_path / "export.json"
    p.write_text(json.dumps([dict(_task([_kf(1, 0, 0, 10, 10)]), id=i) for i in range(1, 5)]))
    assert len(ls.plan(p, options=ReadOptions(), parts=2)) == 2
    with pytest.raises(NeedsWholeRead, match="is a video"):
        list(PartStream(ls, p, options=ReadOptions(), parts=2, workers=1))


def test_rotation_turns_along_the_shorter_arc_about_the_top_left_corner(tmp_path: Path) -> None:
    # 350 deg at frame 1 -> 30 deg at frame 3: the shorter arc is +40, so frame 2 is 350 + 20 = 370 = 10 deg
    seq = [_kf(1, 10, 10, 10, 10, rot=350), _kf(3, 10, 10, 10, 10, rot=30, enabled=False)]
    fb = ls_video.frame_boxes({"sequence": seq})
    assert [round(r, 9) for r in fb.geo[:, 4].tolist()] == [350.0, 10.0, 30.0]
    ds = _read(tmp_path, [_task([_kf(1, 10, 10, 10, 20, rot=90, enabled=False)])])
    # top-left (20, 10) px, 20 x 20 px turned 90 deg clockwise about it: x from 20 - 20 = 0 to 20, y 10..30
    assert _rows(ds) == [("frame_000000.png", 0.0, 10.0, 20.0, 20.0)]


def test_json_min_video_record(tmp_path: Path) -> None:
    # JSON-MIN: the value with "type" merged in, one record per annotation
    v = {"sequence": [_kf(1, 10, 20, 20, 30), _kf(2, 30, 40, 30, 50, enabled=False)], "framesCount": 4,
         "labels": ["car"], "type": "videorectangle", "original_width": W, "original_height": H}
    rec = {"video": "/data/upload/1/0a1b2c3d-clip.mp4", "id": 3, "box": [v], "annotator": 1, "annotation_id": 7,
           "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "lead_time": 1.0}
    ds = _read(tmp_path, [rec])
    assert _rows(ds) == [("frame_000000.png", 20.0, 20.0, 40.0, 30.0), ("frame_000001.png", 60.0, 40.0, 60.0, 50.0)]
    _balanced(ds)
