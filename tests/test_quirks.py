"""Issue 15: the quirks that users' real exports have, each class over every format it touches.

Values are worked out by hand in the comments next to each assertion.
"""

from __future__ import annotations

from pathlib import Path

from prelabel.adapters import cvat
from prelabel.adapters.base import ReadOptions
from prelabel.model import Dataset
from prelabel.report import Report

CVAT_HEAD = ('<annotations><version>1.1</version><meta><task><mode>annotation</mode><labels>'
             '<label><name>car</name></label></labels></task></meta>\n')


def _balanced(ds: Dataset) -> None:
    r = ds.report
    r.set_written(len(ds))
    assert r.balanced, (r.read, len(ds), r.dropped)


# ------------------------------------------------------------------ 4. CVAT outside="1" inside <image>
def test_cvat_outside_shapes_in_images_are_dropped_and_track_attributes_kept(tmp_path: Path) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text(CVAT_HEAD +
                 '<image id="0" name="a.jpg" width="100" height="60">\n'
                 '<box label="car" xtl="1" ytl="2" xbr="11" ybr="22" occluded="0" outside="0" keyframe="1" '
                 'track_id="7" z_order="0"/>\n'
                 '<box label="car" xtl="5" ytl="5" xbr="9" ybr="9" occluded="0" outside="1" keyframe="0" '
                 'track_id="8" z_order="0"/>\n'
                 '<polygon label="car" points="1,1;9,1;9,5" outside="1" track_id="9"/>\n'
                 '</image></annotations>', encoding="utf-8")
    ds = cvat.read(p, options=ReadOptions(), report=Report())
    # one visible box (1,2)-(11,22): x y w h = 1 2 10 20
    assert ds.boxes.tolist() == [[1.0, 2.0, 10.0, 20.0]]
    assert ds.annotations.loc[0, "attributes"] == {"occluded": False, "z_order": 0, "track_id": 7,
                                                   "keyframe": True}
    drops = ds.report.drops
    assert drops["reason"].tolist() == ["dropped.outside_frame"] * 2
    assert drops["source"].tolist() == [f"{p}:4", f"{p}:5"]
    assert drops["message"].tolist() == ['box marked outside="1": not visible in this image',
                                         'polygon marked outside="1": not visible in this image']
    assert ds.report.read == 3
    _balanced(ds)
