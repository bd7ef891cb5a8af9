"""The CVAT adapter's two-process parse (a forked worker parses the second half of a large file) must give
exactly what one process gives: the same chunks (same boundaries), the same ``read()`` dataset, the same
report, the same errors (text and line).

The reference is the same adapter with ``extra["cvat_workers"] = 1`` (one process, as before the split
existed); ``cvat_split_min = 0`` lets small generated files be split. Each case also checks which way the
split went (merged, or parsed again by this process), so that a test cannot pass by never splitting.
"""

from __future__ import annotations

import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from chunk_equality import datasets_equal, reports_equal

from prelabel.adapters import cvat
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.errors import ReadError
from prelabel.model import Dataset
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
ONE = {"cvat_workers": 1}
TWO = {"cvat_workers": 2, "cvat_split_min": 0}

pytestmark = pytest.mark.skipif(not cvat._split_wanted(ReadOptions(extra=TWO)) or threading.active_count() > 1,
                                reason="the split needs Linux, fork and no other thread")


# ---------------------------------------------------------------------------------------------- comparing
@pytest.fixture
def merges(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each split ended: "merged", "refused" (this process would not merge) or "gave up" (the worker)."""
    log: list[str] = []
    merge, result = cvat._Reader._merge, cvat._Split.result

    def _merge(self: Any, state: Any, offset: int) -> bool:
        ok: bool = merge(self, state, offset)
        log.append("merged" if ok else "refused")
        return ok

    def _result(self: Any) -> Any:
        state = result(self)
        if state is None:
            log.append("gave up")
        return state

    monkeypatch.setattr(cvat._Reader, "_merge", _merge)
    monkeypatch.setattr(cvat._Split, "result", _result)
    return log


def _chunks(path: Path, chunk_rows: int, extra: dict[str, Any], **opts: Any) -> tuple[list[Dataset], Report]:
    report = Report()
    options = ReadOptions(extra=extra, **opts)
    return list(cvat.iter_chunks(path, options=options, report=report, chunk_rows=chunk_rows)), report


def _read(path: Path, extra: dict[str, Any], **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return cvat.read(path, options=ReadOptions(extra=extra, **opts), report=report), report


def _check(path: Path, chunk_rows: int, **opts: Any) -> list[Dataset]:
    """Split and single-process results equal: chunk by chunk, concatenated, read() and the reports."""
    one, rep1 = _chunks(path, chunk_rows, ONE, **opts)
    two, rep2 = _chunks(path, chunk_rows, TWO, **opts)
    assert len(two) == len(one)
    for i, (a, b) in enumerate(zip(two, one, strict=True)):
        datasets_equal(a, b, f"chunk {i}: ")
    reports_equal(rep2, rep1)
    whole, rep = _read(path, ONE, **opts)
    datasets_equal(Dataset.concat(two), whole)
    reports_equal(rep2, rep)
    whole2, rep3 = _read(path, TWO, **opts)
    datasets_equal(whole2, whole)
    reports_equal(rep3, rep)
    return two


# ---------------------------------------------------------------------------------------------- generated XML
META = """<meta><task><name>gen</name><mode>annotation</mode><labels>
<label><name>car</name><type>rectangle</type><attributes>
  <attribute><name>parked</name><input_type>checkbox</input_type></attribute>
  <attribute><name>speed</name><input_type>number</input_type></attribute></attributes></label>
<label><name>person</name><type>any</type></label>
<label><name>pts</name><type>points</type></label>
<label><name>day</name><type>tag</type></label>
<label><name>sk</name><type>skeleton</type><svg>&lt;line data-node-from="1" data-node-to="2"&gt;&lt;/line&gt;</svg></label>
<label><name>a</name><type>points</type><parent>sk</parent></label>
<label><name>b</name><type>points</type><parent>sk</parent></label>
</labels></task></meta>"""


def _shape(rng: random.Random, kind: str, W: int, H: int) -> str:
    x, y = rng.randint(0, W - 10), rng.randint(0, H - 10)
    if kind == "box":  # plain boxes (attributes shared between boxes alike), some with <attribute> children
        extra = (f'<attribute name="parked">{rng.choice(["true", "false"])}</attribute>'
                 f'<attribute name="speed">{rng.randint(0, 90)}</attribute>') if rng.random() < 0.3 else ""
        return (f'<box label="car" occluded="{rng.randint(0, 1)}" source="manual" xtl="{x}.5" ytl="{y}" '
                f'xbr="{x + 7}" ybr="{y + 3}.25" z_order="{rng.randint(0, 1)}">{extra}</box>')
    if kind == "rotated":
        return f'<box label="person" xtl="{x}" ytl="{y}" xbr="{x + 6}" ybr="{y + 4}" rotation="30.5"/>'
    if kind == "polygon":
        return f'<polygon label="person" occluded="0" points="{x},{y};{x + 5},{y};{x + 5},{y + 5}" group_id="3"/>'
    if kind == "polygon2":  # two points: dropped as degenerate
        return f'<polygon label="person" points="{x},{y};{x + 5},{y}"/>'
    if kind == "ellipse":
        return f'<ellipse label="car" cx="{x + 5}" cy="{y + 5}" rx="3" ry="{rng.choice([0, 2])}"/>'
    if kind == "mask":  # half of them reaching past the right edge: cut at the border (a "clipped" change)
        left = rng.choice([x, W - 2])
        return f'<mask label="car" rle="3, 4, 5" left="{left}" top="{y}" width="4" height="3"/>'
    if kind == "skeleton":
        return (f'<skeleton label="sk" z_order="1"><points label="a" points="{x},{y}" outside="0" occluded="0"/>'
                f'<points label="b" points="{x + 3},{y + 4}" occluded="1"/></skeleton>')
    if kind == "points":
        return f'<points label="pts" points="{x},{y};{x + 1},{y + 1};{x + 2},{y}"/>'
    if kind == "polyline":
        return f'<polyline label="person" points="{x},{y};{x + 3},{y + 3}"/>'
    if kind == "cuboid":
        return '<cuboid label="car" xtl1="0" ytl1="0" xbl1="0" ybl1="1" xtr1="1" ytr1="0" xbr1="1" ybr1="1"/>'
    if kind == "empty":
        return f'<box label="" xtl="{x}" ytl="{y}" xbr="{x + 2}" ybr="{y + 2}"/>'
    if kind == "bus":  # not declared in <meta>
        return f'<box label="bus" xtl="{x}" ytl="{y}" xbr="{x + 4}" ybr="{y + 4}"/>'
    if kind == "tag":
        return '<tag label="day" source="manual"/>'
    raise AssertionError(kind)


KINDS = ["box", "box", "box", "rotated", "polygon", "polygon2", "ellipse", "mask", "skeleton", "points",
         "polyline", "cuboid", "empty", "bus", "tag"]


def _generate(path: Path, n_images: int, *, seed: int = 0, kinds: list[str] = KINDS, nl: str = "\n",
              late: dict[int, str] | None = None) -> Path:
    """A CVAT for images file; ``late``: extra XML put inside image i (an index) instead of its shapes."""
    rng = random.Random(seed)
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations><version>1.1</version>", META]
    for i in range(n_images):
        W, H = rng.randint(20, 60), rng.randint(20, 60)
        parts.append(f'<image id="{i}" name="dir/img{i:04d}.jpg" width="{W}" height="{H}">')
        if late and i in late:
            parts.append(late[i])
        elif rng.random() < 0.2:
            parts.append(" </image>")  # an image without shapes
            continue
        else:
            parts.extend(_shape(rng, rng.choice(kinds), W, H) for _ in range(rng.randint(1, 6)))
        parts.append("</image>")
    parts.append("</annotations>" + nl)
    path.write_bytes(nl.join(parts).replace("\n", nl).encode("utf-8"))
    return path


def _split_line(path: Path) -> int:
    """The line of the <image> where the worker starts (as _Split.start chooses it)."""
    raw = path.read_bytes()
    meta = raw.index(b"</meta>") + 7
    m = re.compile(rb"</image\s*>\s*(<image[\s/>])").search(raw, meta + int((len(raw) - meta) * cvat._SPLIT_SHARE))
    assert m is not None
    head = raw[:m.start(1)]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


# ---------------------------------------------------------------------------------------------- merged
@pytest.mark.parametrize("chunk_rows", [1, 7, 10**6])
@pytest.mark.parametrize("nl", ["\n", "\r\n"])
def test_every_shape_kind(tmp_path: Path, merges: list[str], chunk_rows: int, nl: str) -> None:
    path = _generate(tmp_path / "a.xml", 120, nl=nl)
    chunks = _check(path, chunk_rows)
    assert merges == ["merged"] * 2  # one stream and one read() with the worker
    ds, rep = _read(path, ONE)
    split = _split_line(path)
    # both sides of the split hold drops of every reason, clipped masks, tags, every kind of row
    drops = rep.drops
    lines = drops["source"].str.rsplit(":", n=1).str[1].astype(int)
    for side in (lines < split, lines > split):
        assert set(drops[side]["reason"]) == {"dropped.degenerate", "dropped.unknown_category",
                                              "dropped.unsupported"}
    changes = rep.changes[rep.changes["reason"] == "clipped"]
    clipped = changes["source"].str.rsplit(":", n=1).str[1].astype(int)
    assert (clipped < split).any() and (clipped > split).any()
    ann = ds.annotations
    for side in (ann[ann["src_line"] < split], ann[ann["src_line"] > split]):
        assert side["segmentation"].notna().any() and side["keypoints"].notna().any()
        assert side["attributes"].map(lambda a: "speed" in a).any()
    tagged = ds.images[ds.images["attributes"].map(lambda a: bool(a) and "tags" in a)]
    assert len(tagged) > 3
    if chunk_rows == 1:
        assert len(chunks) > 50


def test_plain_boxes_lines(tmp_path: Path, merges: list[str]) -> None:
    """Boxes only: each row's src_line is the line of its <box> in the file (counted here from the text)."""
    path = _generate(tmp_path / "a.xml", 200, kinds=["box"], seed=3)
    _check(path, 50)
    assert merges == ["merged"] * 2
    ds, _ = _read(path, TWO)
    lines = [i + 1 for i, text in enumerate(path.read_text().split("\n")) if text.startswith("<box ")]
    assert ds.annotations["src_line"].tolist() == lines
    starts = [i + 1 for i, text in enumerate(path.read_text().split("\n")) if text.startswith("<image ")]
    assert ds.images.index.size == len(starts) == 200


def test_tags_only_after_split(tmp_path: Path, merges: list[str]) -> None:
    """The info note names the first tag's line, here one the worker read."""
    n = 80
    path = _generate(tmp_path / "a.xml", n, kinds=["box"], late={n - 5: '<tag label="day"/>', n - 2: '<tag label="day"/>'})
    _check(path, 10)
    assert merges == ["merged"] * 2
    _, rep = _read(path, TWO)
    note = [d for d in rep.diagnostics if d.code == "image.attribute"]
    line = next(i + 1 for i, text in enumerate(path.read_text().split("\n")) if text.startswith("<tag "))
    assert line > _split_line(path)
    assert [d.source for d in note] == [f"{path}:{line}"]
    assert "2 tag(s)" in note[0].message


# ---------------------------------------------------------------------------------------------- this process again
@pytest.mark.parametrize("chunk_rows", [5, 10**6])
def test_image_repeated_across_split(tmp_path: Path, merges: list[str], chunk_rows: int) -> None:
    n = 60
    path = _generate(tmp_path / "a.xml", n, kinds=["box"])
    text = path.read_text()
    first = re.search(r'<image id="1" name="dir/img0001.jpg" width="\d+" height="\d+">', text)
    assert first is not None
    text = text.replace("</annotations>", first.group(0) + '\n<box label="person" xtl="1" ytl="1" xbr="2" ybr="2"/>'
                        "\n</image>\n</annotations>")
    path.write_text(text)
    if chunk_rows == 5:  # image 1's chunk was handed out before it comes again: the whole file is needed
        with pytest.raises(NeedsWholeRead) as one:
            _chunks(path, chunk_rows, ONE)
        with pytest.raises(NeedsWholeRead) as two:
            _chunks(path, chunk_rows, TWO)
        assert two.value.reason == one.value.reason
        assert merges == ["refused"]
        return
    _check(path, chunk_rows)
    assert merges == ["refused"] * 2
    ds, _ = _read(path, TWO)
    assert ds.annotations[ds.annotations["category"] == "person"]["image"].tolist() == [1]


def test_skeleton_missing_from_meta_after_split(tmp_path: Path, merges: list[str]) -> None:
    n = 60
    late = {n - 3: '<skeleton label="hand"><points label="f1" points="1,2"/><points label="f2" points="3,4"/>'
                   '</skeleton>'}
    path = _generate(tmp_path / "a.xml", n, kinds=["box", "skeleton"], late=late)
    _check(path, 10**6)
    assert merges == ["gave up"] * 2


def test_points_as_keypoints(tmp_path: Path, merges: list[str]) -> None:
    path = _generate(tmp_path / "a.xml", 60, kinds=["box", "points"])
    _check(path, 10**6, cvat_points="keypoints")
    assert merges == ["gave up"] * 2


@pytest.mark.parametrize(("bad", "message"), [
    ('<box label="car" xtl="1" ytl="2" xbr="3"/>', "<box>: missing attribute 'ybr'"),
    ('<box label="car" xtl="1" ytl="2" xbr="3" ybr="x"/>', "<box>: bad value: could not convert string to float: 'x'"),
    ('<polygon label="car" points="1,2,3"/>', "<polygon>: points '1,2,3' has an odd number of coordinates"),
])
def test_a_malformed_shape_after_split_is_dropped_alike(tmp_path: Path, merges: list[str], bad: str,
                                                       message: str) -> None:
    n = 60
    path = _generate(tmp_path / "a.xml", n, kinds=["box"], late={n - 4: bad})
    line = next(i + 1 for i, text in enumerate(path.read_text().split("\n")) if text == bad)
    assert line > _split_line(path)
    drops = []
    for extra in (ONE, TWO):
        _, rep = _chunks(path, 7, extra)
        drops.append(rep.drops[["reason", "source", "message"]].values.tolist())
        _, rep = _read(path, extra)
        drops.append(rep.drops[["reason", "source", "message"]].values.tolist())
    assert drops == [[["dropped.invalid", f"{path}:{line}", message]]] * 4
    assert merges == ["merged"] * 2  # the worker's half, with its drop, is used


def test_bad_xml_after_split(tmp_path: Path, merges: list[str]) -> None:
    n = 60
    bad = '<box label="car" xtl="1" ytl="2" xbr="3" ybr="4">'
    path = _generate(tmp_path / "a.xml", n, kinds=["box"], late={n - 4: bad})
    errors = []
    for extra in (ONE, TWO):
        with pytest.raises(ReadError) as e:
            _chunks(path, 7, extra)
        errors.append(e.value)
        with pytest.raises(ReadError) as e:
            _read(path, extra)
        errors.append(e.value)
    assert len({str(e) for e in errors}) == 1
    assert "not well-formed XML" in str(errors[0])
    assert merges == ["gave up"] * 2


def test_track_after_split(tmp_path: Path, merges: list[str]) -> None:
    n = 60
    path = _generate(tmp_path / "a.xml", n, kinds=["box"])
    text = path.read_text().replace("</annotations>", '<track id="0" label="car"><box frame="0" xtl="1" ytl="1" '
                                    'xbr="2" ybr="2" outside="0" occluded="0" keyframe="1"/></track>\n</annotations>')
    path.write_text(text)
    reasons = []
    for extra in (ONE, TWO):
        with pytest.raises(NeedsWholeRead) as e:
            _chunks(path, 7, extra)
        reasons.append(e.value.reason)
    assert reasons[0] == reasons[1]
    assert merges == ["gave up"]


def test_sample_data_not_split() -> None:
    """A file below the size threshold is read by one process whatever cvat_workers says; same result."""
    sample = ROOT / "sample_data" / "cvat" / "annotations.xml"
    a, ra = _read(sample, ONE)
    b, rb = _read(sample, {"cvat_workers": 2})
    datasets_equal(a, b)
    reports_equal(ra, rb)


def test_byte_order_mark(tmp_path: Path, merges: list[str]) -> None:
    """A UTF-8 byte order mark: the split is still checked against expat's own byte offsets."""
    path = _generate(tmp_path / "a.xml", 80, kinds=["box", "mask", "empty"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    _check(path, 9)
    assert merges == ["merged"] * 2


def test_other_encoding_not_split(tmp_path: Path, merges: list[str]) -> None:
    """The worker parses its part without the XML declaration: a file in another encoding is not split."""
    path = _generate(tmp_path / "a.xml", 80, kinds=["box"])
    text = path.read_text().replace('encoding="utf-8"', 'encoding="ISO-8859-1"').replace("img0050", "img\xe90050")
    path.write_bytes(text.encode("latin-1"))
    _check(path, 9)
    assert merges == []
    ds, _ = _read(path, TWO)
    assert "dir/img\xe90050.jpg" in set(ds.images["file_name"])
