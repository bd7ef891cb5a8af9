"""Streaming the CVAT adapter: the engine's stream of its plan's parts (``PartStream``: byte ranges cut at
``<image>``) must give ``read()``'s dataset and report, cut into whole images; what needs the whole file is
planned as one part, or raises ``NeedsWholeRead`` for the pipeline to read it whole.

The reference is ``read()`` (the same parser over the whole file, where each part parses its own bytes); one
small case is also checked value by value against numbers worked out by hand from its XML.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from chunk_equality import datasets_equal, reports_equal, streamed

from prelabel.adapters import cvat
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.errors import ReadError
from prelabel.model import Dataset
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "cvat" / "annotations.xml"
CVAT = Path("cvat")
FIXTURE_FILES = [
    CVAT / "cvat-ai__datumaro/tests/assets/cvat_dataset/for_images",  # a folder: train.xml + images/
    CVAT / "cvat-ai__datumaro/tests/assets/cvat_dataset/for_images/train.xml",
    CVAT / "openvinotoolkit__datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml",
    CVAT / "openvinotoolkit__datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml",
    CVAT / "cvat-ai__cvat/site/content/en/docs/other/xml_format.md.example_annotation.xml",
]
FOR_VIDEO = CVAT / "cvat-ai__datumaro/tests/assets/cvat_dataset/for_video/annotations.xml"
SIZES = (1, 2, 3, 5, 10**6)


# ---------------------------------------------------------------------------------------------- comparing


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return cvat.read(path, options=ReadOptions(**opts), report=report), report


def _stream(path: Path, parts: int, **opts: Any) -> tuple[list[Dataset], Report]:
    return streamed(cvat, path, ReadOptions(**opts), parts=parts, workers=None)


def _check(path: Path, parts: int, **opts: Any) -> list[Dataset]:
    """Parts of whole images, rows grouped by image in order; their concatenation and the merged report equal
    ``read()``'s."""
    ds, rep = _whole(path, **opts)
    chunks, srep = _stream(path, parts, **opts)
    assert chunks
    for c in chunks:
        img = c.annotations["image"].to_numpy()
        assert ((img >= 0) & (img < len(c.images))).all()
        assert len(c.images) >= 1 or len(ds.images) == 0
    datasets_equal(Dataset.concat(chunks), ds)
    reports_equal(srep, rep)
    return chunks


# ---------------------------------------------------------------------------------------------- generated XML
META = """<meta><task><name>gen</name><mode>annotation</mode><labels>
<label><name>car</name><type>rectangle</type><attributes>
  <attribute><name>parked</name><input_type>checkbox</input_type></attribute>
  <attribute><name>speed</name><input_type>number</input_type></attribute></attributes></label>
<label><name>person</name><type>any</type></label>
<label><name>pts</name><type>points</type></label>
<label><name>day</name><type>tag</type></label>
<label><name>sk</name><type>skeleton</type><svg>&lt;line data-node-from="1" data-node-to="2"&gt;&lt;/line&gt;
&lt;line data-node-from="2" data-node-to="9"&gt;&lt;/line&gt;</svg></label>
<label><name>a</name><type>points</type><parent>sk</parent></label>
<label><name>b</name><type>points</type><parent>sk</parent></label>
<label><name>c</name><type>points</type><parent>sk</parent></label>
</labels></task></meta>"""


def _mask(rng: random.Random, w: int, h: int) -> str:
    """A CVAT RLE (background run first) covering ``w * h`` pixels."""
    total, runs = w * h, []
    while total > 0:
        r = min(total, rng.randint(0 if not runs else 1, 4))
        runs.append(r)
        total -= r
    return ", ".join(map(str, runs))


def _shape(rng: random.Random, kind: str, W: int, H: int) -> str:
    x, y = rng.randint(0, W - 10), rng.randint(0, H - 10)
    if kind == "box":
        return (f'<box label="car" occluded="{rng.randint(0, 1)}" source="manual" xtl="{x}.5" ytl="{y}" '
                f'xbr="{x + 7}" ybr="{y + 3}.25" z_order="{rng.randint(0, 3)}"><attribute name="parked">'
                f'{rng.choice(["true", "false"])}</attribute><attribute name="speed">{rng.randint(0, 90)}'
                '</attribute></box>')
    if kind == "rotated":
        return f'<box label="person" xtl="{x}" ytl="{y}" xbr="{x + 6}" ybr="{y + 4}" rotation="30.5"/>'
    if kind == "polygon":
        return f'<polygon label="person" occluded="0" points="{x},{y};{x + 5},{y};{x + 5},{y + 5}" group_id="3"/>'
    if kind == "polygon2":  # two points: dropped as degenerate
        return f'<polygon label="person" points="{x},{y};{x + 5},{y}"/>'
    if kind == "ellipse":
        return f'<ellipse label="car" cx="{x + 5}" cy="{y + 5}" rx="3" ry="{rng.choice([0, 2])}"/>'
    if kind == "mask":  # sometimes reaching past the right edge: cut at the border (a "clipped" change)
        left = rng.choice([x, W - 2])
        return f'<mask label="car" rle="{_mask(rng, 4, 3)}" left="{left}" top="{y}" width="4" height="3"/>'
    if kind == "skeleton":
        return (f'<skeleton label="sk" z_order="1"><points label="a" points="{x},{y}" outside="0" occluded="0"/>'
                f'<points label="b" points="{x + 2},{y + 1}" outside="1"/>'
                f'<points label="c" points="{x + 3},{y + 4}" occluded="1"/></skeleton>')
    if kind == "points":
        return f'<points label="pts" points="{x},{y};{x + 1},{y + 1};{x + 2},{y}" occluded="{rng.randint(0, 1)}"/>'
    if kind == "polyline":
        return f'<polyline label="person" points="{x},{y};{x + 3},{y + 3}"/>'
    if kind == "cuboid":
        return '<cuboid label="car" xtl1="0" ytl1="0" xbl1="0" ybl1="1" xtr1="1" ytr1="0" xbr1="1" ybr1="1"/>'
    if kind == "empty":
        return f'<box label="" xtl="{x}" ytl="{y}" xbr="{x + 2}" ybr="{y + 2}"/>'
    if kind == "bus":  # not declared in <meta>: appended to the categories where first seen
        return f'<box label="bus" xtl="{x}" ytl="{y}" xbr="{x + 4}" ybr="{y + 4}"/>'
    if kind == "truck":
        return f'<polygon label="truck" points="{x},{y};{x + 4},{y};{x},{y + 4}"/>'
    if kind == "tag":
        return '<tag label="day" source="manual"/>'
    raise AssertionError(kind)


KINDS = ["box", "box", "box", "rotated", "polygon", "polygon2", "ellipse", "mask", "skeleton", "points",
         "polyline", "cuboid", "empty", "bus", "truck", "tag"]


def _generate(path: Path, n_images: int, *, seed: int = 0, subsets: bool = False, kinds: list[str] = KINDS) -> Path:
    """A CVAT for images file of every shape kind, drops and clipped masks spread over many images, some
    images without shapes; ``bus`` first appears late, ``truck`` later still."""
    rng = random.Random(seed)
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>', META, "\n"]
    for i in range(n_images):
        W, H = rng.randint(20, 60), rng.randint(20, 60)
        subset = f' subset="{rng.choice(["train", "val"])}" task_id="7"' if subsets else ""
        parts.append(f'<image id="{i}" name="dir/img{i:04d}.jpg" width="{W}" height="{H}"{subset}>\n')
        if i == 0:  # <points> from the start: their keypoint count (3) is known from the first chunk on
            parts.append(_shape(rng, "points", W, H) + "\n")
        elif rng.random() < 0.25:
            parts.append("</image>\n")  # an image without shapes
            continue
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice(kinds)
            if kind == "bus" and i < n_images // 3 or kind == "truck" and i < 2 * n_images // 3:
                kind = "box"
            parts.append(_shape(rng, kind, W, H) + "\n")
        parts.append("</image>\n")
    parts.append("</annotations>\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("gen") / "annotations.xml", 60)


# ---------------------------------------------------------------------------------------------- equal to read()
@pytest.mark.parametrize("parts", SIZES)
def test_sample_data(parts: int) -> None:
    _check(SAMPLE, parts)
    _check(SAMPLE, parts, images=ROOT / "sample_data" / "images")  # paths found, some images missing


@pytest.mark.parametrize("name", FIXTURE_FILES, ids=lambda p: "/".join(p.parts[-3:]))
@pytest.mark.parametrize("parts", SIZES)
def test_fixtures(fixtures_dir: Path, name: Path, parts: int) -> None:
    _check(fixtures_dir / name, parts)
    try:
        _check(fixtures_dir / name, parts, cvat_points="keypoints")
    except NeedsWholeRead as e:  # points kept as keypoints: a label's count is known only at the end
        assert "keypoints" in e.reason, e.reason


@pytest.mark.parametrize("parts", SIZES)
def test_generated_every_shape(generated: Path, parts: int) -> None:
    chunks = _check(generated, parts)
    ds, rep = _whole(generated)
    # the file exercises what it is meant to: drops of several reasons, clipped masks, empty images, tags
    assert set(rep.dropped_counts()) == {"dropped.degenerate", "dropped.unknown_category", "dropped.unsupported"}
    assert rep.to_dict()["changed"]["clipped"] > 1
    assert (~ds.images.index.isin(ds.annotations["image"])).sum() > 5
    assert ds.category_names == ["car", "person", "pts", "sk", "bus", "truck"]
    if parts >= 5:
        assert len(chunks) == parts if parts < 60 else len(chunks) == 60  # at most one part an image
        # drops come from many parts, yet they are reported once, in file order, as read() does
        assert len(rep.drops) > len(rep.dropped_counts())


@pytest.mark.parametrize("parts", (1, 3))
def test_generated_points_as_keypoints(generated: Path, parts: int) -> None:
    """Points kept as keypoints pad every row to the largest count of the file: a part raises NeedsWholeRead
    (the pipeline then reads the file whole), and one part is read()."""
    if parts == 1:
        chunks = _check(generated, parts, cvat_points="keypoints")
        pts = Dataset.concat(chunks).categories.set_index("name").loc["pts"]
        assert pts.keypoints == ["1", "2", "3"]
    else:
        _raises(generated, parts, "keypoints", cvat_points="keypoints")


@pytest.mark.parametrize("parts", (1, 4, 10**6))
def test_generated_project_export_with_images_root(tmp_path: Path, parts: int) -> None:
    xml = _generate(tmp_path / "annotations.xml", 30, seed=3, subsets=True)
    images = tmp_path / "images"
    for i in range(0, 30, 3):  # every third image exists (under its subset folder or at the top)
        for sub in ("train", "val"):
            p = images / sub / "dir" / f"img{i:04d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
    _check(xml, parts)  # the images folder beside the file is found by both
    ds, rep = _whole(xml)
    assert ds.images["path"].notna().sum() == 10
    assert [d.code for d in rep.diagnostics].count("image.missing") == 1  # one note for all parts
    # 20 of the 30 not there, the first the second <image> element (img0001)
    starts = [k for k, t in enumerate(xml.read_text().splitlines(), 1) if t.lstrip().startswith("<image ")]
    assert 'name="dir/img0001.jpg"' in xml.read_text().splitlines()[starts[1] - 1]
    assert [(d.source, d.message) for d in rep.diagnostics if d.code == "image.missing"] == [
        (f"{xml}:{starts[1]}", f"20 image(s) not found under {images}")]


@pytest.mark.parametrize("parts", (1, 2, 10**6))
def test_folder_of_files(tmp_path: Path, parts: int) -> None:
    _generate(tmp_path / "a.xml", 8, seed=1)
    _generate(tmp_path / "b.xml", 9, seed=2)
    chunks = _check(tmp_path, parts)
    files = {str(tmp_path / "a.xml"), str(tmp_path / "b.xml")}
    for c in chunks:  # a part never mixes files (one part is the whole folder)
        assert len(set(c.images["src_file"])) <= (1 if parts > 1 else 2) and set(c.images["src_file"]) <= files


@pytest.mark.parametrize("parts", (1, 10**6))
def test_no_images(tmp_path: Path, parts: int) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text(f"<annotations><version>1.1</version>{META}</annotations>", encoding="utf-8")
    chunks = _check(p, parts)
    assert len(chunks) == 1 and len(chunks[0].images) == 0
    assert chunks[0].category_names == ["car", "person", "pts", "sk"]


def test_interpolation_task_images_export_adds_frames_last(tmp_path: Path) -> None:
    """A CVAT for images export of a video task: read() appends the task's frames after the <image> rows; the
    plan reads such a file as one part."""
    p = tmp_path / "annotations.xml"
    p.write_text('<annotations><version>1.1</version><meta><task><mode>interpolation</mode><size>3</size>'
                 '<start_frame>0</start_frame><stop_frame>2</stop_frame><original_size><width>20</width>'
                 '<height>10</height></original_size><labels><label><name>car</name></label></labels></task>'
                 '</meta>' + "".join(f'<image id="{i}" name="frame_{i:06d}" width="20" height="10">'
                                     f'<box label="car" xtl="1" ytl="1" xbr="{i + 2}" ybr="3"/></image>'
                                     for i in range(3)) + '</annotations>', encoding="utf-8")
    for n in (1, 2, 10**6):
        chunks = _check(p, n)
        assert len(chunks) == 1 and len(chunks[-1].images) >= 3


# ---------------------------------------------------------------------------------------------- by hand
HAND = """<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>
<label><name>dog</name></label></labels></task></meta>
<image id="0" name="a.jpg" width="10" height="8">
  <box label="car" occluded="1" xtl="1" ytl="2" xbr="4" ybr="6"/>
</image>
<image id="1" name="b.jpg" width="10" height="8">
  <polyline label="dog" points="0,0;1,1"/>
  <polygon label="dog" points="1,1;5,1;5,4"/>
  <box label="cat" xtl="0" ytl="0" xbr="2" ybr="2"/>
</image>
<image id="2" name="c.jpg" width="12" height="9">
</image>
<image id="3" name="d.jpg" width="10" height="8">
  <mask label="car" rle="0, 3, 1" left="8" top="7" width="2" height="2"/>
</image>
</annotations>
"""


def test_small_case_by_hand(tmp_path: Path) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text(HAND, encoding="utf-8")
    chunks, rep = _stream(p, 4)
    assert [n for c in chunks for n in c.images["file_name"]] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    a = Dataset.concat(chunks).annotations
    assert a["image"].tolist() == [0, 1, 1, 3]
    assert a["category"].tolist() == ["car", "dog", "cat", "car"]
    # box (1,2)-(4,6) -> [1, 2, 3, 4]; triangle (1,1) (5,1) (5,4) -> [1, 1, 4, 3]; box (0,0)-(2,2) -> [0, 0, 2, 2];
    # the mask 2x2 at (8, 7) in a 10x8 image, row-major runs 0 off, 3 on, 1 off: pixels (8,7) (9,7) (8,8) are
    # set; row 8 is outside the image, so what is left is (8,7) and (9,7): bbox [8, 7, 2, 1], "clipped"
    assert a[["x", "y", "w", "h"]].to_numpy().tolist() == [[1, 2, 3, 4], [1, 1, 4, 3], [0, 0, 2, 2], [8, 7, 2, 1]]
    assert a["src_line"].tolist() == [4, 8, 9, 14]  # lines counted from the file's start in every part
    assert a["attributes"].tolist()[:3] == [{"occluded": True}, {}, {}]
    # categories: <meta>'s car, dog in every part; cat appended where first seen
    assert Dataset.concat(chunks).category_names == ["car", "dog", "cat"]
    assert rep.read == 5 and rep.dropped_counts() == {"dropped.unsupported": 1}
    assert rep.drops["source"].tolist() == [f"{p}:7"]
    assert rep.changes[["reason", "source"]].values.tolist() == [["clipped", f"{p}:14"]]
    _check(p, 2)


@pytest.mark.parametrize("piece", (97, 4096))
def test_pieces_fed_to_the_parser(generated: Path, monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    """The file (or a part's bytes) fed to expat in small pieces: the result does not depend on where the
    pieces end."""
    monkeypatch.setattr(cvat, "_CHUNK", piece)
    for n in (1, 3, 10**6):
        _check(generated, n)


# ---------------------------------------------------------------------------------------------- whole file needed
def _raises(path: Path, parts: int, match: str, **opts: Any) -> None:
    """The file cannot be streamed in parts: the plan reads it as one part, or a part raises NeedsWholeRead
    (the pipeline then reads the whole file, and notes why)."""
    if len(cvat.plan(path, options=ReadOptions(**opts), parts=parts)) == 1:
        return
    with pytest.raises(NeedsWholeRead, match=match) as e:
        _stream(path, parts, **opts)
    assert e.value.reason == str(e.value)


def _one_part(path: Path, **opts: Any) -> None:
    """The plan reads the file as one part, however many are asked for; the stream is read()."""
    assert len(cvat.plan(path, options=ReadOptions(**opts), parts=8)) == 1
    _check(path, 8, **opts)


def test_video_tracks_need_the_whole_file(fixtures_dir: Path) -> None:
    _one_part(fixtures_dir / FOR_VIDEO)


def test_video_frame_tags_need_the_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text('<annotations><version>1.1</version><meta><task><mode>interpolation</mode><size>2</size>'
                 '<original_size><width>8</width><height>6</height></original_size><labels><label>'
                 '<name>day</name><type>tag</type></label></labels></task></meta>'
                 '<tag frame="1" label="day"/></annotations>', encoding="utf-8")
    _one_part(p)


def test_image_listed_again(tmp_path: Path) -> None:
    body = ('<image id="0" name="a.jpg" width="8" height="6"><box label="car" xtl="0" ytl="0" xbr="1" ybr="1"/>'
            '</image><image id="1" name="b.jpg" width="8" height="6"/>'
            '<image id="0" name="a.jpg" width="8" height="6"><box label="car" xtl="2" ytl="2" xbr="3" ybr="3"/>'
            '</image>')
    p = tmp_path / "annotations.xml"
    p.write_text(f"<annotations><version>1.1</version>{META}\n{body}</annotations>", encoding="utf-8")
    _one_part(p)
    ds = _check(p, 10**6)[0]  # the second listing merges into the first, as in read()
    assert ds.annotations["image"].tolist() == [0, 0] and len(ds.images) == 2


def test_skeleton_label_missing_from_meta(tmp_path: Path) -> None:
    def doc(first: str) -> str:
        return ('<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>'
                '</labels></task></meta>'
                f'<image id="0" name="a.jpg" width="8" height="6">{first}</image>'
                '<image id="1" name="b.jpg" width="8" height="6"><skeleton label="hand">'
                '<points label="p" points="1,1"/></skeleton></image></annotations>')

    p = tmp_path / "annotations.xml"
    p.write_text(doc('<box label="car" xtl="0" ytl="0" xbr="1" ybr="1"/>'), encoding="utf-8")
    _raises(p, 2, "skeleton")  # its nodes are known only where its first <skeleton> is
    _check(p, 1)
    ds, _ = _whole(p)
    assert ds.categories.set_index("name").loc["hand"].keypoints == ["p"]


def test_points_as_keypoints_count_growing(tmp_path: Path) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text('<annotations><version>1.1</version><meta><task><labels><label><name>pts</name></label>'
                 '</labels></task></meta>'
                 '<image id="0" name="a.jpg" width="8" height="6"><points label="pts" points="1,1;2,2"/></image>'
                 '<image id="1" name="b.jpg" width="8" height="6"><points label="pts" points="1,1;2,2;3,3"/>'
                 '</image></annotations>', encoding="utf-8")
    _raises(p, 2, "keypoints", cvat_points="keypoints")
    ds = _check(p, 1, cvat_points="keypoints")[0]
    assert ds.categories.set_index("name").loc["pts"].keypoints == ["1", "2", "3"]
    assert ds.annotations["keypoints"][0].tolist() == [[1, 1, 2], [2, 2, 2], [0, 0, 0]]  # padded with v=0
    _check(p, 2)  # skipped points: nothing to pad, streams


# ---------------------------------------------------------------------------------------------- errors
def test_errors_are_read_errors_as_read_raises_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _generate(tmp_path / "annotations.xml", 20, seed=5)
    text = p.read_text(encoding="utf-8")
    text, n = re.subn(r'(<image id="15" name="[^"]+" width=")\d+', r"\1x", text)
    assert n == 1
    line = text[:text.index('<image id="15"')].count("\n") + 1
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ReadError) as whole:
        _whole(p)
    assert f"annotations.xml:{line}#image: bad value" in str(whole.value)
    for piece in (64, 1 << 20):  # fed in small pieces or at once
        monkeypatch.setattr(cvat, "_CHUNK", piece)
        for parts in (1, 4, 20):
            with pytest.raises(ReadError) as streamed:
                _stream(p, parts)
            assert str(streamed.value) == str(whole.value)
    with pytest.raises(ReadError, match="no such file"):
        _stream(tmp_path / "nope.xml", 2)


def test_cuboid_is_dropped_not_an_error(tmp_path: Path) -> None:
    """A CVAT cuboid has corner attributes (xtl1, ...), no ``points``: counted and dropped as unsupported."""
    p = tmp_path / "annotations.xml"
    p.write_text('<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>'
                 '</labels></task></meta><image id="0" name="a.jpg" width="8" height="6">\n'
                 '<cuboid label="car" xtl1="0" ytl1="0" xbl1="0" ybl1="1" xtr1="1" ytr1="0" xbr1="1" ybr1="1" '
                 'xtl2="2" ytl2="0" xbl2="2" ybl2="1" xtr2="3" ytr2="0" xbr2="3" ybr2="1"/></image></annotations>',
                 encoding="utf-8")
    ds, rep = _whole(p)
    assert len(ds) == 0 and rep.read == 1
    assert rep.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.unsupported", f"{p}:2", "cuboid is not an area"]]
    _check(p, 1)


def test_plain_boxes_share_attributes_until_a_child_changes_one(tmp_path: Path) -> None:
    """Plain boxes with the same occluded/z_order/source share one attributes dict; a box with an <attribute>
    child gets its own copy, so the others keep theirs (checked by hand)."""
    from prelabel.adapters import cvat as cvat_mod
    from prelabel.adapters.base import ReadOptions as RO
    from prelabel.report import Report as Rep

    xml = tmp_path / "a.xml"
    xml.write_text(
        '<?xml version="1.0"?><annotations><version>1.1</version><meta><task><labels><label><name>cat</name>'
        '<attributes><attribute><name>color</name><input_type>text</input_type></attribute></attributes>'
        '</label></labels></task></meta>'
        '<image id="0" name="a.jpg" width="10" height="10">'
        '<box label="cat" occluded="0" xtl="1" ytl="1" xbr="2" ybr="2" z_order="0" source="manual"></box>'
        '<box label="cat" occluded="0" xtl="2" ytl="2" xbr="3" ybr="3" z_order="0" source="manual">'
        '<attribute name="color">red</attribute></box>'
        '<box label="cat" occluded="0" xtl="3" ytl="3" xbr="4" ybr="4" z_order="0" source="manual"></box>'
        '</image></annotations>', encoding="utf-8")
    ds = cvat_mod.read(xml, options=RO(), report=Rep())
    attrs = ds.annotations["attributes"].tolist()
    assert attrs == [{"occluded": False, "z_order": 0, "source": "manual"},
                     {"occluded": False, "z_order": 0, "source": "manual", "color": "red"},
                     {"occluded": False, "z_order": 0, "source": "manual"}]
    assert attrs[0] is attrs[2] and attrs[1] is not attrs[0]
