"""prelabel.images.ImageRoot: the one image resolver (names, places, sizes, the image.* tallies)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from prelabel.adapters.parts import merge
from prelabel.images import ImageRoot, Placed
from prelabel.model import Dataset
from prelabel.report import Report


def _notes(rep: Report) -> list[tuple[str, str, str, str]]:
    return [(d.code, d.source, d.message, d.severity) for d in rep.diagnostics]


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "a.png")
    # stored 60 wide and 20 high, EXIF orientation 6 (rotated 90 degrees): annotators see 20 x 60
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 20)).save(root / "sub" / "b.jpg", "JPEG", exif=exif.tobytes())
    return root


def test_names_made_safe_or_replaced_with_one_note(tmp_path: Path) -> None:
    rep = Report()
    images = ImageRoot(tmp_path, report=rep)
    assert images.name("sub/./b.jpg", at="x.json") == "sub/b.jpg"
    assert images.name("sub\\b.jpg", at="x.json") == "sub/b.jpg"
    # without a fallback an unsafe name is refused, and the reader decides what to note
    assert images.name("../x.png", at="x.json") is None
    assert images.name("/etc/x.png", at="x.json") is None
    assert rep.diagnostics == []
    assert images.name("../x.png", at="a.xml", fallback="a.png") == "a.png"
    assert images.name("/etc/x.png", at="b.xml:3", fallback="./b.png") == "b.png"  # the fallback made safe too
    assert images.name("C:\\data\\c.png", at="c.xml", fallback="..") == "image"  # nothing safe left
    assert _notes(rep) == [
        ("image.unsafe_name", "a.xml", "image name '../x.png' is unsafe ('..' segment escapes the root); "
                                       "using 'a.png' instead", "warning"),
        ("image.unsafe_name", "b.xml:3", "image name '/etc/x.png' is unsafe (absolute path); using 'b.png' "
                                         "instead", "warning"),
        ("image.unsafe_name", "c.xml", "image name 'C:\\\\data\\\\c.png' is unsafe (absolute path); using 'image' "
                                       "instead", "warning")]


def test_names_refused_with_a_note_and_urls_by_the_shared_rule(tmp_path: Path) -> None:
    rep = Report()
    images = ImageRoot(tmp_path, report=rep)
    left_out = "the image is left out and its annotations dropped"
    assert images.name("../x.png", at="gt.json#images[2]", refused=left_out) is None
    assert images.name("https://host/", at="gt.json#images[3]", refused=left_out, urls=True) is None
    assert images.name("s3://bucket/dir/a.png", at="gt.json#images[4]", urls=True) == "dir/a.png"
    assert images.name("https://host/x/b.jpg?sig=1", at="gt.json#images[5]", urls=True) == "b.jpg"
    assert _notes(rep) == [
        ("image.unsafe_name", "gt.json#images[2]", "image name '../x.png' is unsafe ('..' segment escapes the root); "
                                                   "the image is left out and its annotations dropped", "warning"),
        ("image.unsafe_name", "gt.json#images[3]", "image name 'https://host/' is unsafe (URL has no file name); the "
                                                   "image is left out and its annotations dropped", "warning")]
    assert images.path_of("dir/a.png") == str(tmp_path / "dir" / "a.png")  # not looked up
    assert ImageRoot(None, report=rep).path_of("a.png") is None


def test_a_tables_names_at_once(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    rep = Report()
    images = ImageRoot(root, report=rep)
    raws = ["a.jpg", "./sub//b.jpg", f"{root}/c/d.png", "/data/set/x/1.jpg", "../e.jpg", None, "/data/set/2.jpg",
            "s3://bkt/f.png"]
    named = images.relate_all(raws)
    assert named.names == ["a.jpg", "sub/b.jpg", "c/d.png", "x/1.jpg", None, None, "2.jpg", "f.png"]
    # paths under the root, not looked up (an absolute one under the root as written); none outside it
    assert named.paths == [str(root / "a.jpg"), str(root / "sub" / "b.jpg"), f"{root}/c/d.png", None, None, None,
                           None, str(root / "f.png")]
    assert named.why == {4: "unsafe image file name '../e.jpg': '..' segment escapes the root", 5: "no image name"}
    assert (named.outside, named.common, named.example) == ([3, 6], "/data/set", "'/data/set/x/1.jpg' -> 'x/1.jpg'")
    # a plan's common folder, for a part that holds only some of them
    assert images.relate_all(["/data/set/x/1.jpg"], common="/data").names == ["set/x/1.jpg"]
    assert rep.diagnostics == []   # the reader writes the one note, once for its source
    images.outside_note(2, "/data/set", named.example, at="p.csv")
    assert _notes(rep) == [("image.unsafe_name", "p.csv", "2 absolute image path(s) written relative to /data/set "
                            "(e.g. '/data/set/x/1.jpg' -> 'x/1.jpg'); give the images root (ReadOptions(images=...)) to choose",
                            "info")]


def test_lookup_never_leaves_the_root(tmp_path: Path) -> None:
    root = _root(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    images = ImageRoot(root, report=Report())
    assert images.lookup("a.png") == str(root / "a.png")
    assert images.lookup("sub/b.jpg") == str(root / "sub" / "b.jpg")
    assert images.lookup("../outside.png") is None and images.lookup(str(tmp_path / "outside.png")) is None
    assert images.lookup("sub") is None  # a folder is not an image file
    assert images.lookup("gone.png") is None
    assert ImageRoot(None, report=Report()).lookup("a.png") is None


def test_sizes_recorded_else_from_the_header_with_exif(tmp_path: Path) -> None:
    root = _root(tmp_path)
    rep = Report()
    images = ImageRoot(root, report=rep)
    assert images.place("a.png", at="f.json:2") == Placed("a.png", str(root / "a.png"), (40, 30))
    assert images.place("sub/b.jpg", at="f.json:5") == Placed("sub/b.jpg", str(root / "sub" / "b.jpg"), (20, 60))
    # a recorded size is kept as written: the header is not read
    assert images.place("a.png", at="f.json:9", size=(8, 6)) == Placed("a.png", str(root / "a.png"), (8, 6))
    assert (images.from_header, images.missing) == (2, 0)
    images.notes()
    assert _notes(rep) == [("image.size_from_header", "f.json:2", "2 image size(s) read from the image files' "
                                                                  "headers", "info")]


def test_missing_images_counted_only_under_a_named_root_and_when_kept(tmp_path: Path) -> None:
    root = _root(tmp_path)
    rep = Report()
    images = ImageRoot(root, report=rep)
    assert images.place("gone.png", at="f.json:3", size=(5, 5)) == Placed("gone.png", None, (5, 5))
    # no size: the image cannot be kept (the reader drops it with its reason); nothing counted
    assert images.place("gone2.png", at="f.json:4") == Placed("gone2.png", None, None)
    assert images.place("../a.png", at="f.json:6", size=(5, 5)).path is None  # an escaping name finds nothing
    assert images.missing == 2
    # an image beside the annotations (given=False) and one with no root: not counted
    beside = ImageRoot(root, report=rep, given=False)
    assert beside.place("gone.png", at="g.json", size=(5, 5)).path is None and beside.missing == 0
    nowhere = ImageRoot(None, report=rep)
    assert nowhere.place("a.png", at="h.json", size=(5, 5)) == Placed("a.png", None, (5, 5))
    assert nowhere.missing == 0
    # an image whose root was named, for a reader whose images lie in several places
    assert nowhere.settle("a.png", None, at="h.json:7", size=(5, 5), given=True).path is None
    assert nowhere.missing == 1
    images.notes()
    nowhere.notes()
    assert _notes(rep) == [("image.missing", "f.json:3", f"2 image(s) not found under {root}", "warning"),
                           ("image.missing", "h.json:7", "1 image(s) not found under the images folder", "warning")]


def test_embedded_data_after_the_file(tmp_path: Path) -> None:
    root = _root(tmp_path)
    rep = Report()
    images = ImageRoot(root, report=rep, given=False)
    calls: list[int] = []

    def embedded() -> tuple[int, int]:
        calls.append(1)
        return (7, 3)

    assert images.place("a.png", at="a.json", embedded=embedded).size == (40, 30) and calls == []
    assert images.place("gone.png", at="b.json", embedded=embedded).size == (7, 3) and calls == [1]
    images.notes()
    assert _notes(rep) == [
        ("image.size_from_header", "a.json", "1 image size(s) read from the image files' headers", "info"),
        ("image.size_from_header", "b.json", "1 image size(s) read from the header of the image data embedded in "
                                             "the annotation file", "info")]


def test_settle_all_reads_the_headers_in_threads(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for k in range(70):  # 64 or more: imagesize.image_sizes reads them in threads
        Image.new("L", (10 + k, 5)).save(root / f"{k}.png")
    names = [f"{k}.png" for k in range(70)] + ["gone.png", "gone2.png"]
    paths = [str(root / n) for n in names[:70]] + [None, None]
    sizes: list[tuple[int, int] | None] = [None] * 70 + [(9, 9), None]
    sizes[3] = (1, 2)  # recorded: kept, its header not read
    rep = Report()
    images = ImageRoot(root, report=rep)
    got = images.settle_all(names, paths, at=[f"x/{n}.xml" for n in names], sizes=sizes)
    assert [p.size for p in got] == [(1, 2) if k == 3 else (10 + k, 5) for k in range(70)] + [(9, 9), None]
    assert [p.path for p in got] == paths
    images.notes(end=2)
    assert _notes(rep) == [("image.missing", "x/gone.png.xml", f"1 image(s) not found under {root}", "warning"),
                           ("image.size_from_header", "x/0.png.xml", "69 image size(s) read from the image files' "
                                                                     "headers", "info")]
    assert [d.tally_end for d in rep.diagnostics] == [2, 3]


def test_parts_tallies_add_up_to_the_whole_reads(tmp_path: Path) -> None:
    """Two parts of one source: each counts its own; merged, one note a rule, shown at the first part that
    counted any, as one resolver over both would write it."""
    root = _root(tmp_path)
    reads = [("a.png", "f.json:2", None), ("gone.png", "f.json:8", (4, 4)), ("sub/b.jpg", "f.json:20", None),
             ("gone.png", "f.json:25", (4, 4))]
    whole = Report()
    one = ImageRoot(root, report=whole)
    for name, at, size in reads:
        one.place(name, at=at, size=size)
    one.notes(source="f.json", part=False)
    parts = []
    for chunk in (reads[:1], reads[1:]):  # the first part finds no missing image
        rep = Report()
        images = ImageRoot(root, report=rep)
        for name, at, size in chunk:
            images.place(name, at=at, size=size)
        images.notes(source="f.json", part=True)
        parts.append(Dataset.build(report=rep))
    assert [d.message for d in parts[0].report.diagnostics] == [
        f"0 image(s) not found under {root}", "1 image size(s) read from the image files' headers",
        "0 image size(s) read from the header of the image data embedded in the annotation file"]
    merged = merge(parts, report=Report()).report
    assert _notes(merged) == _notes(whole) == [
        ("image.missing", "f.json:8", f"2 image(s) not found under {root}", "warning"),
        ("image.size_from_header", "f.json:2", "2 image size(s) read from the image files' headers", "info")]
