"""Streaming the Pascal VOC adapter: the engine's stream of its plan's parts (``PartStream``: runs of the sorted
XML files, read here or in a pool) must give ``read()``'s dataset and report, cut into whole images.

The reference is ``read()`` of the same source (the same parser, but one table built once every file is
parsed, where the parts build theirs run by run and their reports are merged at the end); one small case is
also checked value by value against numbers worked out by hand from its XML, and the streaming pipeline is
checked to write the bytes the whole-dataset pipeline writes.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from chunk_equality import converted, frames_equal, reports_equal, same_error, streamed
from PIL import Image

from prelabel.adapters import voc
from prelabel.adapters.base import ReadOptions
from prelabel.engine import PartStream
from prelabel.engine import stream as engine_stream
from prelabel.errors import ReadError, UsageError
from prelabel.model import Dataset
from prelabel.pipeline import convert
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "voc"
DATUMARO = Path("voc/openvinotoolkit__datumaro/tests/assets")
FIXTURES: list[tuple[Path, dict[str, Any]]] = [  # (folder under ../shared/fixtures, read options)
    (DATUMARO / "voc_dataset/voc_dataset1", {}),
    (DATUMARO / "voc_dataset/voc_dataset2", {"images": "IMAGES"}),  # no <size>: sizes from image headers
    (DATUMARO / "voc_dataset/voc_dataset3", {}),
    (DATUMARO / "roboflow_dataset/voc", {}),                 # 1-based reading: one suspect note per file
    (DATUMARO / "roboflow_dataset/voc", {"voc_origin": 0}),
    (DATUMARO / "roboflow_dataset/voc/train/train_002.xml", {}),  # one file
]
SIZES = (1, 2, 3, 5, 10**6)


# ---------------------------------------------------------------------------------------------- comparing


def _options(**opts: Any) -> ReadOptions:
    workers = opts.pop("workers", None)
    return ReadOptions(**opts, extra={"voc_workers": workers} if workers is not None else {})


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return voc.read(path, options=_options(**opts), report=report), report


def _stream(path: Path, parts: int, **opts: Any) -> tuple[list[Dataset], Report]:
    """The source streamed in ``parts`` parts (at most one a file), in a pool of ``workers`` when given."""
    return streamed(voc, path, _options(**opts), parts=parts, workers=opts.get("workers"))


def _check(path: Path, parts: int, **opts: Any) -> list[Dataset]:
    """Parts of whole images, rows grouped by image in order; their concatenation and the merged report equal
    ``read()``'s."""
    ds, rep = _whole(path, **opts)
    chunks, srep = _stream(path, parts, **opts)
    assert chunks
    for c in chunks:
        img = c.annotations["image"].to_numpy()
        assert ((img >= 0) & (img < len(c.images))).all()
        assert (np.diff(img) >= 0).all()  # rows grouped by image, in order
        # a part's categories: the names of its own rows, in first-seen order
        assert c.category_names == list(pd.unique(c.annotations["category"].to_numpy()))
    got = Dataset.concat(chunks, report=srep)
    for name in ("images", "categories", "annotations"):
        frames_equal(getattr(got, name), getattr(ds, name), name)
    assert got.category_names == ds.category_names
    reports_equal(srep, rep)
    return chunks


def _same_error(path: Path, parts: int, **opts: Any) -> ReadError:
    """read() and the stream raise the same ReadError."""
    return same_error(lambda: _whole(path, **opts), lambda: _stream(path, parts, **opts))


# ---------------------------------------------------------------------------------------------- generated VOC
CATS = ["person", "car", "dog", "bicycle", "cat", "bird"]


def _png(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path)


def _object(rng: random.Random, zero: bool) -> str:
    name = rng.choice(CATS)
    x0, y0 = rng.randint(0 if zero else 1, 60), rng.randint(1, 40)
    x1, y1 = x0 + rng.randint(-3, 30), y0 + rng.randint(0, 20)  # a few inverted boxes: kept for the clip step
    extra = ""
    if rng.random() < 0.5:
        extra += f"<pose>{rng.choice(['Left', 'Unspecified'])}</pose><truncated>{rng.randint(0, 1)}</truncated>"
    if rng.random() < 0.5:
        extra += f"<difficult>{rng.randint(0, 1)}</difficult><occluded>{rng.random():.2f}</occluded>"
    if rng.random() < 0.2:
        extra += ("<part><name>head</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>5.5</xmax><ymax>6</ymax>"
                  "</bndbox></part>")
    if rng.random() < 0.1:
        extra += "<actions><jumping>1</jumping><phoning>0</phoning></actions>"
    if rng.random() < 0.1:
        extra += "<attributes><attribute><name>color</name><value>red</value></attribute></attributes>"
    box = f"<bndbox><xmax>{x1}</xmax><xmin>{x0}</xmin><ymin>{y0}</ymin><ymax>{y1}</ymax></bndbox>"
    return f"  <object>\n    <name>{name}</name>{extra}\n    {box}\n  </object>\n"


def _generate(root: Path, n: int, *, seed: int, voc_root: bool = True) -> Path:
    """``n`` VOC files of every kind the adapter handles, in nested folders; a VOC root (``Annotations/`` +
    ``JPEGImages/``) or a plain folder with the images beside the XML files."""
    rng = random.Random(seed)
    ann = root / "Annotations" if voc_root else root
    ann.mkdir(parents=True)
    for i in range(n):
        sub = rng.choice(["", "", "", "set1/", "set1/deep/", "set2/"])
        xml = ann / f"{sub}f{i:03d}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        img_dir = root / "JPEGImages" if voc_root else xml.parent
        kind = rng.random()
        stem = f"img{i:03d}"
        filename = f"{stem}.png"
        size = f"<size><width>{rng.randint(50, 90)}</width><height>{rng.randint(30, 60)}</height></size>"
        n_obj = rng.choice([0, 0, 1, 2, 3, 5])
        if kind < 0.08:     # not a VOC file: skipped with a note
            xml.write_text("<?xml version='1.0'?>\n<somethingelse><a>1</a></somethingelse>\n")
            continue
        if kind < 0.16:     # no <size>, the image is there: size from its header
            size = ""
            _png(img_dir / filename, 64, 48)
        elif kind < 0.22:   # no <size>, no image, no objects: skipped with a note
            size, n_obj = "", 0
        elif kind < 0.28:   # an unsafe name
            filename = f"../../{stem}.png"
        elif kind < 0.34:   # a name without extension, matched by stem
            filename = stem
            _png(img_dir / f"{stem}.jpg", 8, 8)
        elif kind < 0.6:
            _png(img_dir / filename, 8, 8)
        # else: no image at all (a VOC root notes it missing)
        zero = rng.random() < 0.2  # a 0 coordinate now and then: looks 0-based when read 1-based
        comment = "<!-- <object> in a comment -->\n" if rng.random() < 0.1 else ""
        objects = "".join(_object(rng, zero) for _ in range(n_obj))
        xml.write_text(f"<?xml version='1.0'?>\n<annotation>\n{comment}  <folder>x</folder>\n"
                       f"  <filename>{filename}</filename>\n  {size}\n{objects}</annotation>\n")
    (ann / ".hidden.xml").write_text("<annotation/>")  # skipped with a note
    return root


@pytest.fixture(scope="module")
def gen_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("voc") / "root", 60, seed=1)


@pytest.fixture(scope="module")
def gen_plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("voc") / "plain", 40, seed=2, voc_root=False)


def _line(objects: list[str], head: str = "") -> str:
    return "<annotation>" + head + "\n" + "".join(o + "\n" for o in objects) + "</annotation>\n"


def _box(name: str, x0: object, y0: object, x1: object, y1: object, extra: str = "") -> str:
    return (f"<object><name>{name}</name>{extra}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>")


# ---------------------------------------------------------------------------------------------- by hand
def test_small_case_by_hand(tmp_path: Path) -> None:
    size = "<size><width>20</width><height>10</height></size>"
    (tmp_path / "a.xml").write_text(_line([_box("cat", 0, 2, 3, 4), _box("dog", 5, 6, 10, 8)],
                                          "<filename>a.jpg</filename>" + size))
    (tmp_path / "b.xml").write_text(_line([], "<filename>b.jpg</filename>" + size))
    (tmp_path / "c.xml").write_text(_line(
        [_box("bird", 2, 2, 3, 3, "<difficult>1</difficult><part><name>head</name><bndbox><xmin>2</xmin>"
              "<ymin>2</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>")],
        "<filename>../c.png</filename>" + size))
    chunks, report = _stream(tmp_path, 2)  # runs of files: a.xml, then b.xml and c.xml
    first, second = chunks
    assert first.images["file_name"].tolist() == ["a.jpg"]
    assert first.category_names == ["cat", "dog"]
    # cat 0,2,3,4 (1-based): x = 0-1 = -1, y = 1, w = 3-0+1 = 4, h = 4-2+1 = 3; dog 5,6,10,8: 4, 5, 6, 3
    assert first.boxes.tolist() == [[-1.0, 1.0, 4.0, 3.0], [4.0, 5.0, 6.0, 3.0]]
    assert first.annotations["src_line"].tolist() == [2, 3]  # one <object> per line after <annotation>
    assert second.images["file_name"].tolist() == ["b.jpg", "c.png"]  # ../c.png: c.xml's stem + .png
    assert second.images["src_file"].tolist() == ["b.xml", "c.xml"]
    assert second.category_names == ["bird"]
    # bird 2,2,3,3: x 1, y 1, w 2, h 2; head 2,2,2,2: 1, 1, 1, 1; c is image 1 of this chunk
    assert second.boxes.tolist() == [[1.0, 1.0, 2.0, 2.0]]
    assert second.annotations["image"].tolist() == [1]
    assert second.annotations.loc[0, "attributes"] == {"difficult": 1,
                                                      "parts": [{"name": "head", "bbox": [1.0, 1.0, 1.0, 1.0]}]}
    assert report.read == 3
    # read()'s order: the notes in file order (a.xml before c.xml), whatever the parts
    assert [(d.code, d.source) for d in report.diagnostics] == [("coordinates.suspect", "a.xml:2"),
                                                                ("image.unsafe_name", "c.xml")]
    assert "using 'c.png' instead" in report.diagnostics[1].message
    _check(tmp_path, 2)


# ---------------------------------------------------------------------------------------------- equal to read()
@pytest.mark.parametrize("parts", SIZES)
def test_sample_data(parts: int) -> None:
    chunks = _check(SAMPLE, parts)
    if parts >= 5:
        assert len(chunks) == 5  # one file a part (empty.xml has no objects: an image all the same)


@pytest.mark.parametrize("parts", SIZES)
@pytest.mark.parametrize("case", range(len(FIXTURES)))
def test_fixtures(fixtures_dir: Path, tmp_path: Path, case: int, parts: int) -> None:
    rel, opts = FIXTURES[case]
    if opts.get("images") == "IMAGES":
        _png(tmp_path / "a.jpg", 7, 9)
        opts = dict(opts, images=tmp_path)
    _check(fixtures_dir / rel, parts, **opts)


@pytest.mark.parametrize("parts", (1, 2, 3, 7, 10**6))
def test_generated_voc_root(gen_root: Path, parts: int) -> None:
    ds, rep = _whole(gen_root)
    codes = {d.code for d in rep.diagnostics}
    # the generated set has every note read() makes over the whole set
    assert codes == {"file.skipped", "image.unsafe_name", "image.missing", "image.size_from_header",
                     "coordinates.suspect"}
    assert len(ds.images) > 30 and len(ds) > 60
    assert ds.annotations["attributes"].map(lambda a: bool(a and "parts" in a)).any()
    assert (ds.annotations["w"] <= 0).any()  # inverted boxes are kept
    chunks = _check(gen_root, parts)
    assert len(chunks) > 1 or parts == 1


@pytest.mark.parametrize("parts", (1, 3, 10**6))
def test_generated_plain_folder(gen_plain: Path, parts: int) -> None:
    _check(gen_plain, parts)


@pytest.mark.parametrize("parts", (1, 4))
def test_generated_zero_based(gen_root: Path, parts: int) -> None:
    _check(gen_root, parts, voc_origin=0)


@pytest.mark.parametrize("parts", (2, 5, 10**6))
def test_generated_through_the_pool(tmp_path: Path, parts: int) -> None:
    """Two processes read the parts: the same dataset and report."""
    root = tmp_path / "pool"
    rng = random.Random(5)
    for i in range(150):
        objs = [_box(rng.choice(CATS), rng.randint(1, 9), 1, rng.randint(10, 20), 9)
                for _ in range(rng.choice([0, 1, 2, 4]))]
        path = root / f"d{i % 3}" / f"{i:04d}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_line(objs, f"<filename>{i}.jpg</filename><size><width>30</width><height>20</height>"
                                    "</size>"))
    _check(root, parts, workers=2)


class _FlakyPool:
    """A stand-in for the process pool: every other part comes back broken (``broken``), or no part can be
    submitted at all (``refuses``)."""

    def __init__(self, how: str) -> None:
        self.how, self.n = how, 0

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        self.n += 1
        if self.how == "refuses":
            raise OSError("no processes here")
        f: Future[Any] = Future()
        if self.n % 2:
            f.set_result(fn(*args))
        else:
            f.set_exception(BrokenProcessPool("a worker died"))
        return f

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


@pytest.mark.parametrize("how", ["broken", "refuses", "none"])
def test_pool_failures_fall_back_to_this_process(gen_plain: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A pool that breaks, refuses work or cannot start: the parts are read here, with the same result."""
    monkeypatch.setattr(engine_stream, "process_pool",
                        lambda workers, least=2: None if how == "none" else _FlakyPool(how))
    _check(gen_plain, 4, workers=2)


def test_many_objects_in_one_file(tmp_path: Path) -> None:
    """An image with many rows is read as any other: one part a file."""
    size = "<size><width>50</width><height>50</height></size>"
    for stem, k in [("a", 1), ("b", 9), ("c", 2)]:
        (tmp_path / f"{stem}.xml").write_text(_line([_box(f"c{j}", 1, 1, 5, 5) for j in range(k)],
                                                     f"<filename>{stem}.jpg</filename>" + size))
    chunks = _check(tmp_path, 3)
    assert [len(c.images) for c in chunks] == [1, 1, 1]
    assert [len(c) for c in chunks] == [1, 9, 2]


def test_one_file(tmp_path: Path) -> None:
    f = tmp_path / "one.xml"
    f.write_text(_line([_box("cat", 1, 1, 4, 4), _box("dog", 2, 2, 6, 6)],
                       "<filename>x.jpg</filename><size><width>9</width><height>9</height></size>"))
    chunks = _check(f, 1)
    assert len(chunks) == 1 and chunks[0].images["src_file"].tolist() == ["one.xml"]


def test_nothing_but_non_voc_files(tmp_path: Path) -> None:
    """No image at all: one empty chunk, as read() gives an empty dataset, with the skipped-file notes."""
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.xml").write_text("<other/>")
    chunks = _check(tmp_path, 1)
    assert len(chunks) == 1 and len(chunks[0].images) == 0
    assert [d.code for d in _stream(tmp_path, 1)[1].diagnostics] == ["file.skipped", "file.skipped"]


def test_skipped_image_at_the_end(tmp_path: Path) -> None:
    """The last file has no size, no image and no objects: its image is left out, the chunks before hold all."""
    size = "<size><width>9</width><height>9</height></size>"
    (tmp_path / "a.xml").write_text(_line([_box("cat", 1, 1, 4, 4)], "<filename>a.jpg</filename>" + size))
    (tmp_path / "b.xml").write_text(_line([], "<filename>b.jpg</filename>"))
    chunks = _check(tmp_path, 1)
    assert [c.images["file_name"].tolist() for c in chunks] == [["a.jpg"]]
    assert [d.code for d in _stream(tmp_path, 1)[1].diagnostics] == ["file.skipped"]


# ---------------------------------------------------------------------------------------------- errors
def _numbered(root: Path, n: int, *, bad: dict[int, str]) -> Path:
    """``n`` good files ``f000.xml`` ... with two objects each, except those in ``bad`` (index -> content)."""
    size = "<size><width>30</width><height>20</height></size>"
    for i in range(n):
        text = bad.get(i) or _line([_box("cat", 1, 1, 5, 5), _box("dog", 2, 2, 6, 6)],
                                   f"<filename>{i}.jpg</filename>" + size)
        (root / f"f{i:03d}.xml").write_text(text)
    return root


@pytest.mark.parametrize("workers", (1, 2))
def test_malformed_file_in_the_middle(tmp_path: Path, workers: int) -> None:
    root = _numbered(tmp_path, 30, bad={17: "<annotation>\n<filename>x.jpg</filename>\n<object>\n</annotation>\n"})
    err = _same_error(root, 5, workers=workers)
    assert err.file == "f017.xml" and err.line == 4


@pytest.mark.parametrize("bad", [
    "<?xml version='1.0'?>\n<!DOCTYPE a [<!ENTITY e 'x'>]>\n<annotation/>\n",    # a DTD
])
def test_other_read_errors(tmp_path: Path, bad: str) -> None:
    _same_error(_numbered(tmp_path, 8, bad={5: bad}), 1)


def test_missing_size_error_waits_for_a_later_malformed_file(tmp_path: Path) -> None:
    """read() raises a malformed file before a file without a size: the stream, whose part meets the size
    first, raises read()'s error."""
    no_size = _line([_box("cat", 1, 1, 5, 5)], "<filename>nowhere.jpg</filename>")
    root = _numbered(tmp_path, 12, bad={2: no_size, 9: "<annotation><object></annotation>"})
    err = _same_error(root, 12)
    assert err.file == "f009.xml"
    (root / "f009.xml").unlink()
    err = _same_error(root, 12)
    assert err.file == "f002.xml" and "no <size>" in str(err)


def test_bad_chunk_rows(tmp_path: Path) -> None:
    for bad in (0, -1, True, 2.0):
        with pytest.raises(UsageError):
            convert(SAMPLE, tmp_path / "o.json", stream=True, chunk_rows=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        _stream(SAMPLE, 2, voc_origin=2)
    with pytest.raises(ReadError):
        _stream(tmp_path, 2)  # no .xml


def test_progress_counts_files(gen_plain: Path) -> None:
    calls: list[tuple[int, int]] = []
    list(PartStream(voc, gen_plain, options=ReadOptions(), parts=3, progress=lambda d, t: calls.append((d, t))))
    n = len(list(gen_plain.rglob("[!.]*.xml")))
    assert calls[0] == (0, n) and calls[-1] == (n, n) and len(calls) == 4
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ---------------------------------------------------------------------------------------------- the pipeline
def _convert(tmp: Path, name: str, src: Path, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    return converted(tmp, name, src, fmt="voc", **kw)


@pytest.mark.parametrize("where", ["here", "child"])
def test_streamed_conversion_writes_the_whole_conversion(gen_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         where: str) -> None:
    """The CLI's streaming conversion writes the same bytes and report as reading whole (inverted boxes are
    dropped by the clip step, part by part), with the parts read here or a process ahead."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if where == "here" else "always")
    opts = ReadOptions(extra={"voc_workers": 1 if where == "here" else 2})
    whole, whole_rep = _convert(tmp_path, "whole", gen_root, options=opts)
    notes = [d.to_dict() for d in _whole(gen_root)[1].diagnostics]
    assert whole_rep["dropped"] and whole_rep["ledger"]["balanced"] is True
    for k in (1, 7):
        streamed, rep = _convert(tmp_path, f"stream{k}", gen_root, options=opts, stream=True, chunk_rows=k)
        assert streamed == whole
        assert not [d for d in rep["diagnostics"] if d["code"] == "stream.whole"]
        assert {**rep, "diagnostics": None} == {**whole_rep, "diagnostics": None}
        # the same entries; the reader's notes come first, in read()'s order (the steps' drops follow, chunk
        # by chunk in the stream, so their order may differ)
        key = json.dumps
        assert sorted(map(key, rep["diagnostics"])) == sorted(map(key, whole_rep["diagnostics"]))
        assert rep["diagnostics"][:len(notes)] == whole_rep["diagnostics"][:len(notes)] == notes
