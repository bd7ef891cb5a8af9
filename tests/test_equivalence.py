"""One reader, however it is run: for every format with a plan, ``read()`` and the same source read part by part
(the adapter's ``plan`` / ``read_part``, merged in plan order) in this process, in a process pool of 2 and on
Dask (``distributed.read_dask``, which ``engine.read_parts(engine="dask")`` is) write byte-identical COCO and the
same report JSON, on ``sample_data/`` and on generated sources with what splits badly (label files with no
image, images with no label file or no readable size, classes named by their index, notes about the whole
source, files whose reading depends on the rest of the source, malformed files in two parts); and the whole
conversion, map-only on Dask, writes and reports what the local conversion does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import SAMPLE
from PIL import Image

import prelabel
from prelabel import adapters
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.adapters.parts import merge, names_shared
from prelabel.engine import PartStream, read_parts
from prelabel.errors import PrelabelError, ReadError
from prelabel.model import Dataset
from prelabel.pipeline import prepare, write_dataset
from prelabel.report import Report

Reader = Callable[[], Dataset]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    pytest.importorskip("distributed")
    from prelabel.distributed import dask_client

    with dask_client(workers=2, processes=False) as c:
        yield c


def _written(read: Reader, out: Path) -> tuple[bytes, str] | str:
    """The COCO file's bytes and the report's JSON (without its output paths), or the error's text."""
    try:
        ds = read()
        res = write_dataset(prepare(ds), out, max_file_size=10**10)
    except PrelabelError as e:
        return f"{type(e).__name__}: {e}"
    doc = res.report.to_dict()
    doc.pop("output")
    return out.read_bytes(), json.dumps(doc, sort_keys=True, default=str)


def _in_process(src: Path, fmt: str, parts: int, opts: ReadOptions | None = None) -> Reader:
    """plan(parts=N), each part read in turn, merged in plan order (what every engine does, down to reading the
    whole source when a part raises NeedsWholeRead or ReadError)."""
    def run() -> Dataset:
        adapter: Any = adapters.get(fmt)
        options = opts or ReadOptions()
        try:
            got = [adapter.read_part(p, options=options) for p in adapter.plan(src, options=options, parts=parts)]
            if names_shared(adapter, got):
                raise NeedsWholeRead("an image is named in two parts")
        except (NeedsWholeRead, ReadError):
            return prelabel.read(src, fmt=fmt, options=options)
        ds = merge(got, report=Report(), kind_order=list(getattr(adapter, "KIND_NAMES", {}).values()))
        ds.report.input = {"format": fmt, "source": str(src)}
        return ds
    return run


def _streamed(src: Path, fmt: str, parts: int, workers: int, opts: ReadOptions | None = None) -> Reader:
    """The engine's streamed read (PartStream: the plan's parts in plan order, in a pool of ``workers``), the
    parts' tables concatenated with the stream's merged report; a part's error passes through as read()'s."""
    def run() -> Dataset:
        stream = PartStream(adapters.get(fmt), src, options=opts or ReadOptions(), parts=parts, workers=workers)
        try:
            tables = list(stream)
        except NeedsWholeRead:
            return prelabel.read(src, fmt=fmt, options=opts)
        shared = Report()
        ds = Dataset.concat([Dataset(images=i, categories=c, annotations=a, report=shared) for i, c, a in tables],
                            report=stream.report)
        ds.report.input = {"format": fmt, "source": str(src)}
        return ds
    return run


def _check(src: Path, fmt: str, tmp: Path, client: Any, *, parts: tuple[int, ...] = (2, 3, 4),
           opts: ReadOptions | None = None, processes: bool = True) -> bytes | str:
    """Every way of reading ``src`` against ``prelabel.read``; the COCO bytes (or the error) they agree on.
    ``processes=False``: the ways of this process only (the plan's parts merged, the stream on one worker). With a
    ``client``, the conversion map-only on Dask against the local conversion too."""
    from prelabel.distributed import read_dask

    want = _written(lambda: prelabel.read(src, fmt=fmt, options=opts), tmp / "want.json")
    ways: dict[str, Reader] = {f"plan(parts={n})": _in_process(src, fmt, n, opts) for n in parts}
    if not processes:
        ways["stream(parts=3, workers=1)"] = _streamed(src, fmt, 3, 1, opts)
        ways["stream(parts=7, workers=1)"] = _streamed(src, fmt, 7, 1, opts)
    else:
        ways |= {
            "workers=1": lambda: read_parts(src, fmt=fmt, options=opts, workers=1),
            "workers=2": lambda: read_parts(src, fmt=fmt, options=opts, workers=2),
            "read_dask": lambda: read_dask(src, fmt=fmt, options=opts, client=client, partitions=3),
            "stream(parts=3, workers=1)": _streamed(src, fmt, 3, 1, opts),
            "stream(parts=4, workers=2)": _streamed(src, fmt, 4, 2, opts),
        }
    for name, run in ways.items():
        got = _written(run, tmp / f"{name}.json")
        assert got == want, name
    if client is not None:  # the whole conversion, map-only on Dask (each partition reconciled, clipped,
        # serialized on a worker) against the local engine's: the same bytes, the same report
        local = _conversion(lambda out: prelabel.convert(src, out, fmt=fmt, options=opts), tmp / "local")
        got = _conversion(lambda out: prelabel.convert(src, out, fmt=fmt, options=opts, engine="dask",
                                                      client=client, partitions=3), tmp / "dask")
        assert got == local, "convert(engine=dask, partitions=3)"
    return want if isinstance(want, str) else want[0]


def _conversion(run: Callable[[Path], Any], out: Path) -> tuple[bytes, str] | str:
    """The COCO file's bytes and the report's JSON (without its output paths) of a conversion, or its error."""
    try:
        res = run(out / "out.json")
    except PrelabelError as e:
        return f"{type(e).__name__}: {e}"
    doc = res.report.to_dict()
    doc.pop("output")
    return b"".join(p.read_bytes() for p in res.paths), json.dumps(doc, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------- sample_data
@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_sample_data(fmt: str, tmp_path: Path, client: Any) -> None:
    coco = _check(SAMPLE / fmt, fmt, tmp_path, client)
    assert isinstance(coco, bytes)
    doc = json.loads(coco)
    assert (len(doc["images"]), len(doc["annotations"])) == (5, 7)


# ------------------------------------------------------------------------------------------- generated YOLO
def _png(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path)


def _yolo(root: Path, n: int, *, names: bool) -> Path:
    """n images in images/ with labels/: every 5th without a label file, every 7th a polygon file, every 9th an
    empty label file, image 11 not an image (no size), two label files with no image, a hidden file."""
    for i in range(n):
        stem = f"img_{i:03d}"
        if i == 11:
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "images" / f"{stem}.jpg").write_bytes(b"not a jpeg")
        else:
            _png(root / "images" / f"{stem}.png", 40 + i, 30)
        if i % 5 == 4:
            continue
        if i % 9 == 8:
            rows = ""
        elif i % 7 == 6:
            rows = f"{i % 4} 0.1 0.1 0.9 0.1 0.9 0.9 0.5 0.95 0.1 0.9 0.05 0.5\n"
        else:
            rows = "".join(f"{(i + k) % 6} 0.5 0.5 0.{k + 2} 0.25 0.{k + 5}\n" for k in range(i % 3 + 1))
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(rows)
    (root / "labels" / "zz_no_image.txt").write_text("3 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "aa_no_image.txt").write_text("")
    (root / "labels" / ".hidden.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    if names:
        (root / "classes.txt").write_text("cat\ndog\ncat\nbird\nfish\nfrog\n")  # class 2 repeats class 0's name
    return root


@pytest.mark.parametrize("names", [False, True], ids=["unnamed", "named"])
def test_yolo_generated(names: bool, tmp_path: Path, client: Any) -> None:
    src = _yolo(tmp_path / "ds", 40, names=names)
    coco = _check(src, "yolo", tmp_path, client)
    assert isinstance(coco, bytes)
    doc = json.loads(coco)
    # 40 images, less the one with no size; rows: 1-3 boxes per labelled image, 1 polygon per 7th
    assert len(doc["images"]) == 39
    boxes = sum(i % 3 + 1 for i in range(40) if i % 5 != 4 and i % 9 != 8 and i % 7 != 6 and i != 11)
    polygons = sum(1 for i in range(40) if i % 5 != 4 and i % 9 != 8 and i % 7 == 6 and i != 11)
    assert len(doc["annotations"]) == boxes + polygons == 42 + 4
    report = prelabel.read(src).report
    codes = [d.code for d in report.diagnostics]
    assert codes.count("image.unlabeled") == 8 and codes.count("image.missing") == 3
    assert report.dropped_counts() == {"dropped.no_image": 2 + 3}  # 2 rows with no image, 3 of the unsized one


def test_yolo_parts_cut_images_in_order_and_orphans_go_first(tmp_path: Path) -> None:
    from prelabel.adapters import yolo

    src = _yolo(tmp_path / "ds", 10, names=False)
    parts = yolo.plan(src, options=ReadOptions(), parts=3)
    assert [p.source for p in parts] == [str(src)] * 3
    assert [[f for f in p.files if f.startswith("images/")] for p in parts] == [
        ["images/img_000.png", "images/img_001.png", "images/img_002.png"],
        ["images/img_003.png", "images/img_004.png", "images/img_005.png"],
        ["images/img_006.png", "images/img_007.png", "images/img_008.png", "images/img_009.png"]]
    assert [f for f in parts[0].files if not f.startswith("images/")] == [
        "labels/img_000.txt", "labels/img_001.txt", "labels/img_002.txt",
        "labels/aa_no_image.txt", "labels/zz_no_image.txt"]
    assert [f for f in parts[1].files if not f.startswith("images/")] == ["labels/img_003.txt",
                                                                           "labels/img_005.txt"]


def test_yolo_part_read_where_its_files_were_copied(tmp_path: Path) -> None:
    """A part whose ``source`` names another folder (a Dask worker's copy of the part's files) reads it there."""
    import shutil
    from dataclasses import replace

    from prelabel.adapters import yolo

    src = _yolo(tmp_path / "ds", 12, names=True)
    parts = yolo.plan(src, options=ReadOptions(), parts=2)
    copy = tmp_path / "copy"
    for f in parts[1].files:  # (not classes.txt: the plan found the names)
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / f, copy / f)
    shutil.rmtree(src)
    ds = yolo.read_part(replace(parts[1], source=str(copy)), options=ReadOptions())
    assert ds.images["file_name"].tolist() == [f"img_{i:03d}.png" for i in range(6, 12) if i != 11]
    assert ds.images["path"].tolist() == [str(copy / "images" / f) for f in ds.images["file_name"]]
    # image 6: a polygon of class 2 (named cat, as class 0); 7: 2 boxes; 8: an empty file; 9: no label file;
    # 10: 2 boxes; 11: no size (its 3 rows dropped)
    assert ds.annotations["src_file"].tolist() == ["labels/img_006.txt"] + ["labels/img_007.txt"] * 2 + [
        "labels/img_010.txt"] * 2
    assert ds.annotations["category"].tolist() == ["cat", "dog", "cat", "fish", "frog"]
    assert ds.report.dropped_counts() == {"dropped.no_image": 3}


def test_yolo_first_part_without_label_rows(tmp_path: Path, client: Any) -> None:
    # the task note of the whole source stands before the image notes, though part 1 has no label row to count
    root = tmp_path / "ds"
    for i in range(6):
        _png(root / "images" / f"{i}.png", 20, 20)
        if i >= 3:
            (root / "labels").mkdir(exist_ok=True)
            (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _check(root, "yolo", tmp_path, client)
    notes = [(d.code, d.source) for d in prelabel.read(root).report.diagnostics]
    assert notes == [("category.unnamed", str(root)), ("task.inferred", str(root)),
                     ("image.unlabeled", "0.png"), ("image.unlabeled", "1.png"), ("image.unlabeled", "2.png"),
                     ("image.size_from_header", "images/0.png")]  # the resolver's tally, at the first image


@pytest.mark.parametrize("rest", ["segment", "detect"])
def test_yolo_nine_columns_read_as_one_part(rest: str, tmp_path: Path, client: Any) -> None:
    # a file of 9-column rows is a polygon when every other file is one, else dropped: a part cannot tell
    poly = "0 0.1 0.1 0.9 0.1 0.9 0.9 0.5 0.95 0.1 0.9 0.05 0.5\n"
    box = "0 0.5 0.5 0.2 0.2\n"
    rows = [poly if rest == "segment" else box] * 5 + ["0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"]
    for i, text in enumerate(rows):
        _png(tmp_path / "ds" / "images" / f"{i}.png", 20, 20)
        (tmp_path / "ds" / "labels").mkdir(exist_ok=True)
        (tmp_path / "ds" / "labels" / f"{i}.txt").write_text(text)
    _check(tmp_path / "ds", "yolo", tmp_path, client)
    dropped = prelabel.read(tmp_path / "ds").report.dropped_counts()
    assert dropped == ({} if rest == "segment" else {"dropped.ambiguous": 1})


def test_yolo_pose_with_an_inferred_kpt_shape_is_one_part(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import yolo

    root = tmp_path / "ds"
    for i in range(6):
        _png(root / "images" / f"{i}.png", 50, 50)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.4 0.4 0.3 0.3 2 0.6 0.6 1\n")
    (root / "data.yaml").write_text("names: [person]\ntrain: images\n")
    opts = ReadOptions(task="pose")
    assert len(yolo.plan(root, options=opts, parts=3)) == 1
    assert len(yolo.plan(root, options=ReadOptions(task="pose", extra={"kpt_shape": [2, 3]}), parts=3)) == 3


def test_yolo_malformed_rows_in_two_parts_are_dropped_as_read_drops_them(tmp_path: Path, client: Any) -> None:
    # a class with no name in part 1, a value that is not a number in the last part: both rows are dropped at
    # their file and line (issue 15 item 12), listed in file order however the files are split
    root = tmp_path / "ds"
    for i in range(6):
        _png(root / "images" / f"{i}.png", 20, 20)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("cat\n")
    (root / "labels" / "0.txt").write_text("7 0.5 0.5 0.2 0.2\n")      # a class with no name
    (root / "labels" / "5.txt").write_text("0 0.5 zero 0.2 0.2\n")     # not a number
    coco = _check(root, "yolo", tmp_path, client)
    assert isinstance(coco, bytes) and len(json.loads(coco)["annotations"]) == 4
    rep = prelabel.read(root, fmt="yolo").report
    assert rep.drops[["reason", "source"]].values.tolist() == [
        ["dropped.unknown_category", "labels/0.txt:1"], ["dropped.invalid", "labels/5.txt:1"]]


# ------------------------------------------------------------------------------------------- generated VOC
def _voc(root: Path, n: int) -> Path:
    """n VOC files; every 7th has no <size> (read from its image header), every 11th no object, categories in a
    shifting order, one file that is not VOC, a hidden file."""
    (root / "Annotations").mkdir(parents=True)
    names = ["cat", "dog", "car", "person", "bike"]
    for i in range(n):
        stem = f"img_{i:03d}"
        _png(root / "JPEGImages" / f"{stem}.png", 50 + i, 40)
        size = "" if i % 7 == 3 else f"<size><width>{50 + i}</width><height>40</height></size>"
        objs = "" if i % 11 == 10 else "".join(
            f"<object><name>{names[(i + k) % 5]}</name><bndbox><xmin>{1 + k}</xmin><ymin>2</ymin>"
            f"<xmax>{20 + k}</xmax><ymax>30</ymax></bndbox></object>" for k in range(i % 3 + 1))
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename>{size}{objs}</annotation>")
    (root / "Annotations" / "notes.xml").write_text("<notes>not VOC</notes>")
    (root / "Annotations" / ".hidden.xml").write_text("<annotation/>")
    return root


def test_voc_generated(tmp_path: Path, client: Any) -> None:
    src = _voc(tmp_path / "ds", 30)
    coco = _check(src, "voc", tmp_path, client)
    assert isinstance(coco, bytes)
    doc = json.loads(coco)
    assert len(doc["images"]) == 30
    assert len(doc["annotations"]) == sum(i % 3 + 1 for i in range(30) if i % 11 != 10)


# ------------------------------------------------------------------------------------------- prediction tables
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax,score\n"


def _table(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def _plan_sizes(src: Path, opts: ReadOptions | None = None) -> list[int]:
    from prelabel.adapters import predictions

    return [len(predictions.plan(src, options=opts or ReadOptions(), parts=n)) for n in (2, 3, 4)]


def test_predictions_sample(tmp_path: Path, client: Any) -> None:
    src = SAMPLE / "predictions" / "predictions.csv"
    assert _plan_sizes(src) == [2, 3, 4]
    _check(src, "predictions", tmp_path, client)
    _check(src, "predictions", tmp_path, client, opts=ReadOptions(images=SAMPLE / "images"))


def _spread_rows() -> list[str]:
    """Drops of every kind spread over the table, polygons whose box is recomputed or repaired, a blank line."""
    rows = []
    for i in range(40):
        name = f"img_{i:02d}.jpg"
        rows += [f"{name},64,48,{('cat', 'dog', 'car')[i % 3]},{1 + i % 5},2,{20 + i % 7},30,0.{i % 9 + 1},"
                 for _ in range(i % 3 + 1)]
        if i % 7 == 2:
            rows.append(",64,48,cat,1,1,5,5,0.5,")                 # no image name
        if i % 6 == 1:
            rows.append(f"{name},64,48,,1,1,5,5,0.5,")              # no category
        if i % 5 == 3:
            rows.append(f"{name},64,48,dog,nan,1,5,5,0.5,")         # a NaN box
        if i % 8 == 5:
            rows.append(f"{name},64,48,dog,1,1,5,5,0.5,\"[1,1,9,1,9,9]\"")   # box recomputed from the polygon
        if i % 9 == 4:
            rows.append(f"{name},64,48,dog,1,1,5,5,0.5,\"[1,1,9,1]\"")       # a polygon of 2 points removed
        if i == 17:
            rows += ["../up.jpg,64,48,cat,1,1,5,5,0.5,", "nosize.jpg,,,cat,1,1,5,5,0.5,", ""]
    return rows


def test_predictions_generated_with_drops_in_every_part(tmp_path: Path, client: Any) -> None:
    src = _table(tmp_path / "p.csv", _spread_rows(), header=HEADER.rstrip("\n") + ",polygon\n")
    assert _plan_sizes(src) == [2, 3, 4]
    coco = _check(src, "predictions", tmp_path, client)
    assert isinstance(coco, bytes)
    rep = prelabel.read(src).report
    assert set(rep.dropped_counts()) == {"dropped.no_image", "dropped.unknown_category", "dropped.nonfinite"}
    assert set(rep.changes["reason"]) == {"recomputed", "repaired"}
    # read() lists its drops reason by reason (then by line): the parts' drops are put back in that order
    reasons = rep.drops["reason"].tolist()
    assert reasons == sorted(reasons, key=["dropped.no_image", "dropped.unknown_category",
                                           "dropped.nonfinite"].index)


def test_predictions_parquet(tmp_path: Path, client: Any) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = [r.split(",") for r in _spread_rows() if r and r.split(",")[0]]
    df = pd.DataFrame([r[:9] for r in rows], columns=HEADER.strip().split(","))
    for c in ("width", "height", "xmin", "ymin", "xmax", "ymax", "score"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    src = tmp_path / "p.parquet"
    df.to_parquet(src, row_group_size=7)
    assert _plan_sizes(src) == [2, 3, 4]
    _check(src, "predictions", tmp_path, client)


@pytest.mark.parametrize("case", ["normalized", "normalized then pixels", "pixels first", "explicit normalized",
                                  "explicit normalized, largest dropped", "explicit normalized, small values",
                                  "polygon first", "pixels option"])
def test_predictions_normalized_decided_by_the_whole_table(case: str, tmp_path: Path, client: Any) -> None:
    norm = [f"i{k}.jpg,64,48,cat,0.1,0.2,0.{3 + k % 5},0.9,0.5," for k in range(8)]
    pix = "z.jpg,64,48,cat,1,2,30,40,0.5,"
    dropped = "y.jpg,64,48,,1,2,90,40,0.5,"  # the largest value, on a row dropped (no category): not in the note
    rows, opts = {
        "normalized": (norm, None),
        "normalized then pixels": ([*norm, pix], None),
        "pixels first": ([pix, *norm], None),
        "explicit normalized": ([*norm, pix], ReadOptions(normalized=True)),
        "explicit normalized, largest dropped": ([*norm[:4], dropped, *norm[4:], pix], ReadOptions(normalized=True)),
        "explicit normalized, small values": (norm, ReadOptions(normalized=True)),
        "polygon first": (['p.jpg,64,48,cat,,,,,0.5,"[0.1,0.1,0.9,0.1,0.9,0.9]"', *norm], None),
        "pixels option": ([*norm, pix], ReadOptions(normalized=False)),
    }[case]
    src = _table(tmp_path / "p.csv", rows, header=HEADER.rstrip("\n") + ",polygon\n")
    _check(src, "predictions", tmp_path, client, opts=opts)
    assert _plan_sizes(src, opts) == [2, 3, 4]
    notes = [d.message for d in prelabel.read(src, options=opts).report.diagnostics]
    if case.startswith("explicit normalized"):  # the note names the largest value of a row read() keeps
        assert notes == ([] if case.endswith("small values") else
                         ["ReadOptions(normalized=True) but box values reach 40: are they pixels? "
                          "(ReadOptions(normalized=False))"])


@pytest.mark.parametrize("normalized", [None, True, False])
def test_predictions_bbox_column(normalized: bool | None, tmp_path: Path, client: Any) -> None:
    # one "[x, y, w, h]" column (Kaggle style): split into parts as the four columns are, cell by cell
    rows = [f'i{k // 2}.jpg,64,48,cat,"[{k % 5}, 2, {10 + k}, 3]"' for k in range(14)]
    rows[5] = 'i2.jpg,64,48,cat,"[1, 2, 3]"'              # three numbers: dropped as a missing coordinate
    rows[9] = 'i4.jpg,64,48,dog,"[0.1 0.2 0.3 0.4 0.5]"'  # five numbers: not a box
    src = _table(tmp_path / "p.csv", rows, header="filename,width,height,class,bbox\n")
    opts = ReadOptions(normalized=normalized)
    assert _plan_sizes(src, opts) == [2, 3, 4]
    _check(src, "predictions", tmp_path, client, opts=opts)
    rep = prelabel.read(src, options=opts).report
    assert rep.drops[["reason", "source"]].values.tolist() == [["dropped.nonfinite", f"{src}:7"],
                                                              ["dropped.nonfinite", f"{src}:11"]]
    norm = [_table(tmp_path / "n.csv", [f'i{k}.jpg,64,48,cat,"[0.1, 0.2, 0.{k + 3}, 0.5]"' for k in range(6)],
                   header="filename,width,height,class,bbox\n")]
    assert _plan_sizes(norm[0], opts) == [2, 3, 4]
    _check(norm[0], "predictions", tmp_path, client, opts=opts)


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_predictions_blank_lines_and_quoted_line_breaks(end: str, tmp_path: Path, client: Any) -> None:
    # the plan cuts at record ends: a line break inside quotes is in its record, a line of blanks is no row
    rows = []
    for k in range(12):
        rows.append(f'i{k // 3}.jpg,64,48,cat,1,1,5,5,0.5,"[1, 1,{end}9, 1, 9, 9]"' if k % 4 == 1 else
                    f"i{k // 3}.jpg,64,48,dog,1,1,5,5,0.5,")
        if k % 5 == 2:
            rows.append("   " if k % 2 else "")
    src = tmp_path / "p.csv"
    src.write_bytes((HEADER.rstrip("\n") + ",polygon" + end + "".join(r + end for r in rows)).encode())
    assert _plan_sizes(src) == [2, 3, 4]
    _check(src, "predictions", tmp_path, client)
    assert prelabel.read(src).annotations["src_line"].tolist()[-1] == 13


def test_predictions_not_grouped_by_image_is_one_part(tmp_path: Path, client: Any) -> None:
    rows = [f"{n}.jpg,64,48,cat,1,1,5,5,0.5" for n in ("a", "b", "c", "./a", "d", "e")]
    src = _table(tmp_path / "p.csv", rows)
    assert _plan_sizes(src) == [1, 1, 1]
    _check(src, "predictions", tmp_path, client)


def test_predictions_absolute_names_and_header_sizes(tmp_path: Path, client: Any) -> None:
    # absolute names outside the images root: named from the whole table's common folder; sizes from headers
    # (noted with the count of every part's)
    for k in range(6):
        _png(tmp_path / "imgs" / f"h{k}.png", 30 + k, 20)
    rows = [f"{tmp_path}/far/{d}/x{k}.jpg,64,48,cat,1,1,5,5,0.5" for k, d in enumerate("aabbcc")]
    rows += [f"h{k}.png,,,dog,1,1,5,5,0.5" for k in range(6)]
    src = _table(tmp_path / "p.csv", rows)
    opts = ReadOptions(images=tmp_path / "imgs")
    assert _plan_sizes(src, opts) == [2, 3, 4]
    _check(src, "predictions", tmp_path, client, opts=opts)
    notes = [d.message for d in prelabel.read(src, options=opts).report.diagnostics]
    assert notes[1] == "6 image size(s) read from the image files' headers"


@pytest.mark.parametrize("bad", ["a.jpg,64,48,cat,1,abc,5,5,0.5", "a.jpg,64,48,cat,1,1,5,5,0.5,extra",
                                 "a.jpg,64,48,cat,1,1,5,5,high", "a.jpg,true,48,cat,1,1,5,5,0.5"])
def test_predictions_malformed_rows(bad: str, tmp_path: Path, client: Any) -> None:
    rows = [f"i{k // 2}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(12)]
    rows[9] = bad.replace("a.jpg", "i4.jpg")
    _check(_table(tmp_path / "p.csv", rows), "predictions", tmp_path, client)


def _hostile_ids(*fmts: str) -> list[str]:
    from hostile import CASES

    return [k for k in CASES if k.rpartition(":")[2] in fmts]


@pytest.mark.parametrize("case_id", _hostile_ids("predictions", "labelme"))
def test_hostile_tables_and_labelme(case_id: str, tmp_path: Path, client: Any) -> None:
    # the hostile inputs: read in parts, each gives what read() gives (or the same error)
    from hostile import CASES

    case = CASES[case_id](tmp_path)
    _check(case.src, case.fmt, tmp_path, client, opts=case.options, parts=(2, 3))


@pytest.mark.parametrize("case_id", _hostile_ids("yolo", "yolo-yaml", "voc", "voc-nosize", "cvat", "labelstudio",
                                                 "labelstudio-config", "labelstudio-nosize", "coco", "coco-nosize"))
def test_hostile_inputs_of_every_format(case_id: str, tmp_path: Path, client: Any) -> None:
    # the hostile inputs of the other formats (COCO's included): the plan's parts merged and the stream, in this
    # process (their pools run the same parts), each what read() gives or the same error; and the conversion
    # map-only on Dask, what the local conversion writes and reports (or the same error)
    from hostile import CASES

    case = CASES[case_id](tmp_path)
    assert case.fmt is not None and hasattr(adapters.get(case.fmt), "plan")
    _check(case.src, case.fmt, tmp_path, client, opts=case.options, parts=(2, 3, 7), processes=False)


# ------------------------------------------------------------------------------------------- LabelMe
def _labelme(root: Path, n: int) -> Path:
    """n LabelMe files (some in a subfolder) with every note a part counts: sizes from the image header and from
    imageData, images not under the images folder, flags, groups; drops (lines, no label, bad points, no size),
    masks overhanging the image, unsafe image paths, a file that is not LabelMe, a hidden folder."""
    import base64
    import io

    def mask_b64(w: int, h: int) -> str:
        buf = io.BytesIO()
        Image.new("L", (w, h), 255).save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode("ascii")

    for i in range(n):
        sub = "sub/" if i % 4 == 3 else ""
        shapes: list[dict[str, Any]] = [
            {"label": ("cat", "dog", "car")[i % 3], "points": [[30, 40], [10 + i % 5, 20]], "shape_type": "rectangle",
             "group_id": None, "flags": {}},
            {"label": "tree", "points": [[0, 0], [9, 0], [9, 7 + i % 3]], "shape_type": "polygon",
             "group_id": None, "flags": {"big": bool(i % 2)}}]
        if i % 3 == 1:  # a group of two polygons, one annotation
            shapes += [{"label": "part", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon", "group_id": 7},
                       {"label": "part", "points": [[8, 8], [12, 8], [12, 12]], "shape_type": "polygon",
                        "group_id": 7}]
        if i % 5 == 2:
            shapes += [{"label": "tail", "points": [[1, 1], [2, 2]], "shape_type": "line", "group_id": None},
                       {"label": "", "points": [[1, 1], [2, 2]], "shape_type": "rectangle", "group_id": None},
                       {"label": "bad", "points": [[1, "x"]], "shape_type": "polygon", "group_id": None}]
        if i % 6 == 4:
            shapes.append({"label": "blob", "points": [[60, 40], [70, 50]], "shape_type": "mask", "group_id": None,
                           "mask": mask_b64(10, 10)})
        if i % 4 == 2:
            shapes.append({"label": "ring", "points": [[20, 20], [25, 20]], "shape_type": "circle", "group_id": None})
        doc: dict[str, Any] = {"version": "5.5.0", "flags": {"ok": True} if i % 3 == 0 else {}, "shapes": shapes,
                               "imagePath": f"img_{i:02d}.png", "imageData": None,
                               "imageHeight": 48, "imageWidth": 64}
        if i % 7 == 5:      # no size: the image file's header
            del doc["imageHeight"], doc["imageWidth"]
            _png(root / sub / f"img_{i:02d}.png", 40 + i, 30)
        elif i % 7 == 6:    # no size: the embedded imageData
            del doc["imageHeight"], doc["imageWidth"]
            doc["imageData"] = mask_b64(20 + i, 12)
        elif i == 9:        # no size at all: its shapes are dropped
            del doc["imageHeight"]
        if i == 11:
            doc["imagePath"] = "../../../etc/x.png"
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / f"f_{i:02d}.json").write_text(json.dumps(doc))
    (root / "notes.json").write_text('{"something": "else"}')
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.json").write_text("{}")
    return root


@pytest.mark.parametrize("images", [False, True], ids=["beside", "images root"])
def test_labelme_generated(images: bool, tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import labelme

    src = _labelme(tmp_path / "ds", 26)
    opts = ReadOptions(images=tmp_path / "ds" / "sub") if images else None
    assert [len(labelme.plan(src, options=opts or ReadOptions(), parts=n)) for n in (2, 3, 4)] == [2, 3, 4]
    coco = _check(src, "labelme", tmp_path, client, opts=opts)
    assert isinstance(coco, bytes) and len(json.loads(coco)["images"]) == 25 - 2 * images  # (headers not found)
    codes = [d.code for d in prelabel.read(src, options=opts).report.diagnostics]
    assert {"image.size_from_header", "image.attribute", "shape.grouped", "file.skipped"} <= set(codes)
    assert codes.count("image.missing") == 1 + 3 * images  # no size (image 9; 5, 12: headers not found) + the tally


def test_labelme_keypoints_and_single_files_are_one_part(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import labelme

    src = _labelme(tmp_path / "ds", 6)
    opts = ReadOptions(points="keypoints")
    assert len(labelme.plan(src, options=opts, parts=3)) == 1
    _check(src, "labelme", tmp_path, client, opts=opts)
    assert len(labelme.plan(src / "f_00.json", options=ReadOptions(), parts=3)) == 1
    _check(src / "f_02.json", "labelme", tmp_path, client)


def test_labelme_malformed_json_in_a_later_part(tmp_path: Path, client: Any) -> None:
    src = _labelme(tmp_path / "ds", 8)
    (src / "f_06.json").write_text('{"shapes": [')
    got = _check(src, "labelme", tmp_path, client)
    assert isinstance(got, str) and "not valid JSON" in got


# ------------------------------------------------------------------------------------------- chunk sizes
SOURCES = {"yolo": SAMPLE / "yolo", "voc": SAMPLE / "voc", "cvat": SAMPLE / "cvat" / "annotations.xml",
           "labelstudio": SAMPLE / "labelstudio" / "export.json", "coco": SAMPLE / "coco" / "instances.json",
           "predictions": SAMPLE / "predictions" / "predictions.csv"}


def _converted(src: Path, fmt: str, out: Path, **kw: Any) -> tuple[bytes, dict[str, Any]]:
    """The COCO bytes and the report (without its output paths) of one conversion."""
    from prelabel.pipeline import convert

    opts = ReadOptions() if fmt in ("yolo", "voc") else ReadOptions(images=SAMPLE / "images")
    out.mkdir(parents=True)
    convert(src, out / "out.json", fmt=fmt, options=opts, report_path=out / "report.json", **kw)
    rep = json.loads((out / "report.json").read_text())
    rep.pop("output", None)
    return (out / "out.json").read_bytes(), rep


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_chunk_sizes_and_workers_write_the_same_bytes(fmt: str, tmp_path: Path) -> None:
    # the one conversion loop: a whole read, and streamed chunks of 1, 7 and unbounded rows, with 1 or 2 workers,
    # give byte-identical COCO and the same report
    want, want_rep = _converted(SOURCES[fmt], fmt, tmp_path / "whole", stream=False)
    assert want_rep["ledger"]["balanced"] and want_rep["ledger"]["written"] == len(json.loads(want)["annotations"])
    for name, kw in {"1": {"chunk_rows": 1}, "7": {"chunk_rows": 7}, "unbounded": {"chunk_rows": 10**9},
                     "1, workers 2": {"chunk_rows": 1, "workers": 2}}.items():
        got, rep = _converted(SOURCES[fmt], fmt, tmp_path / name.replace(", ", "_"), stream=True, **kw)
        assert got == want, name
        assert rep == want_rep, name


@pytest.mark.parametrize("names", [False, True], ids=["unnamed", "named"])
def test_yolo_generated_chunk_sizes_write_the_same_bytes(names: bool, tmp_path: Path) -> None:
    # YOLO streams through the engine (PartStream over its plan): label files with no image, images without a
    # label file or a size, classes named by their index, polygon files; chunks of 1, 7 and unbounded rows
    src = _yolo(tmp_path / "ds", 40, names=names)
    want, want_rep = _converted(src, "yolo", tmp_path / "whole", stream=False)
    assert len(json.loads(want)["annotations"]) == 42 + 4  # as test_yolo_generated counts them
    for name, kw in {"1": {"chunk_rows": 1}, "7": {"chunk_rows": 7}, "unbounded": {"chunk_rows": 10**9},
                     "7, workers 2": {"chunk_rows": 7, "workers": 2}}.items():
        got, rep = _converted(src, "yolo", tmp_path / name.replace(", ", "_"), stream=True, **kw)
        assert got == want, name
        assert rep == want_rep, name


# ------------------------------------------------------------------------------------------- CVAT
CVAT_FIXTURES = [
    "cvat/cvat-ai__datumaro/tests/assets/cvat_dataset/for_images",  # a folder: train.xml + images/
    "cvat/cvat-ai__datumaro/tests/assets/cvat_dataset/for_images/train.xml",
    "cvat/cvat-ai__datumaro/tests/assets/cvat_dataset/for_video/annotations.xml",  # tracks: one part
    "cvat/openvinotoolkit__datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml",
    "cvat/openvinotoolkit__datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml",
    "cvat/cvat-ai__cvat/site/content/en/docs/other/xml_format.md.example_annotation.xml",
]
CVAT_META = """<meta><task><name>gen</name><mode>annotation</mode><labels>
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


def _cvat_shape(rng: Any, kind: str, w: int, h: int) -> str:
    x, y = rng.randint(0, w - 10), rng.randint(0, h - 10)
    shapes = {
        "box": (f'<box label="car" occluded="{rng.randint(0, 1)}" source="manual" xtl="{x}.5" ytl="{y}" '
                f'xbr="{x + 7}" ybr="{y + 3}.25" z_order="{rng.randint(0, 1)}">'
                + (f'<attribute name="parked">true</attribute><attribute name="speed">{x}</attribute>'
                   if rng.random() < 0.3 else "") + "</box>"),
        "rotated": f'<box label="person" xtl="{x}" ytl="{y}" xbr="{x + 6}" ybr="{y + 4}" rotation="30.5"/>',
        "polygon": f'<polygon label="person" occluded="0" points="{x},{y};{x + 5},{y};{x + 5},{y + 5}" group_id="3"/>',
        "polygon2": f'<polygon label="person" points="{x},{y};{x + 5},{y}"/>',  # degenerate
        "ellipse": f'<ellipse label="car" cx="{x + 5}" cy="{y + 5}" rx="3" ry="{rng.choice([0, 2])}"/>',
        "mask": f'<mask label="car" rle="3, 4, 5" left="{rng.choice([x, w - 2])}" top="{y}" width="4" height="3"/>',
        "skeleton": (f'<skeleton label="sk" z_order="1"><points label="a" points="{x},{y}" outside="0" '
                     f'occluded="0"/><points label="b" points="{x + 3},{y + 4}" occluded="1"/></skeleton>'),
        "points": f'<points label="pts" points="{x},{y};{x + 1},{y + 1};{x + 2},{y}"/>',
        "polyline": f'<polyline label="person" points="{x},{y};{x + 3},{y + 3}"/>',
        "cuboid": '<cuboid label="car" xtl1="0" ytl1="0" xbl1="0" ybl1="1" xtr1="1" ytr1="0" xbr1="1" ybr1="1"/>',
        "empty": f'<box label="" xtl="{x}" ytl="{y}" xbr="{x + 2}" ybr="{y + 2}"/>',
        "bus": f'<box label="bus" xtl="{x}" ytl="{y}" xbr="{x + 4}" ybr="{y + 4}"/>',  # not in <meta>
        "tag": '<tag label="day" source="manual"/>',
        "outside": f'<box label="car" outside="1" xtl="{x}" ytl="{y}" xbr="{x + 4}" ybr="{y + 4}"/>',
    }
    return shapes[kind]


CVAT_KINDS = ["box", "box", "box", "rotated", "polygon", "polygon2", "ellipse", "mask", "skeleton", "points",
              "polyline", "cuboid", "empty", "bus", "tag", "outside"]


def _cvat(path: Path, n_images: int, *, seed: int = 0, kinds: list[str] = CVAT_KINDS, nl: str = "\n",
          late: dict[int, str] | None = None, subsets: bool = False) -> Path:
    """A CVAT for images file of every shape kind (``late``: XML put in image i instead of its shapes)."""
    import random

    rng = random.Random(seed)
    meta = CVAT_META.replace("<meta><task>", "<meta><tasks><task><subset>val</subset></task></tasks><task>"
                             "<subset>train</subset>") if subsets else CVAT_META
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations><version>1.1</version>", meta]
    for i in range(n_images):
        w, h = rng.randint(20, 60), rng.randint(20, 60)
        subset = f' subset="{("train", "val")[i % 2]}" task_id="{i % 2 + 1}"' if subsets else ""
        parts.append(f'<image id="{i}" name="dir/img{i:05d}.jpg"{subset} width="{w}" height="{h}">')
        if late and i in late:
            parts.append(late[i])
        elif rng.random() < 0.2:
            parts.append(" </image>")  # no shapes
            continue
        else:
            parts.extend(_cvat_shape(rng, rng.choice(kinds), w, h) for _ in range(rng.randint(1, 6)))
        parts.append("</image>")
    parts.append("</annotations>\n")
    path.write_bytes("\n".join(parts).replace("\n", nl).encode("utf-8"))
    return path


def _cvat_same(src: Path, tmp: Path, options: ReadOptions, parts: tuple[int, ...] = (2, 3, 4)) -> bytes | str:
    """read() against plan(parts=N) merged and engine.read_parts with 1 and 2 workers, with ``options``."""
    from prelabel.adapters import cvat

    def in_process(n: int) -> Reader:
        def run() -> Dataset:
            try:
                got = [cvat.read_part(p, options=options) for p in cvat.plan(src, options=options, parts=n)]
            except (NeedsWholeRead, ReadError):
                return prelabel.read(src, fmt="cvat", options=options)
            ds = merge(got, report=Report())
            ds.report.input = {"format": "cvat", "source": str(src)}
            return ds
        return run

    want = _written(lambda: prelabel.read(src, fmt="cvat", options=options), tmp / "want.json")
    ways: dict[str, Reader] = {f"plan(parts={n})": in_process(n) for n in parts}
    ways |= {f"workers={n}": (lambda n=n: read_parts(src, fmt="cvat", options=options, workers=n)) for n in (1, 2)}
    for name, run in ways.items():
        assert _written(run, tmp / f"{name}.json") == want, name
    return want if isinstance(want, str) else want[0]


def test_cvat_sample_data(tmp_path: Path, client: Any) -> None:
    coco = _check(SAMPLE / "cvat" / "annotations.xml", "cvat", tmp_path, client)
    assert isinstance(coco, bytes) and len(json.loads(coco)["annotations"]) > 0
    _cvat_same(SAMPLE / "cvat", tmp_path / "images", ReadOptions(images=SAMPLE / "images"))


@pytest.mark.parametrize("name", CVAT_FIXTURES, ids=lambda p: "/".join(p.split("/")[-3:]))
def test_cvat_fixtures(name: str, fixtures_dir: Path, tmp_path: Path, client: Any) -> None:
    _check(fixtures_dir / name, "cvat", tmp_path, client)
    _cvat_same(fixtures_dir / name, tmp_path / "kp", ReadOptions(cvat_points="keypoints"))


@pytest.mark.parametrize("nl", ["\n", "\r\n"])
def test_cvat_generated_every_shape(nl: str, tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import cvat

    src = _cvat(tmp_path / "a.xml", 300, nl=nl)
    assert len(cvat.plan(src, options=ReadOptions(), parts=4)) == 4
    coco = _check(src, "cvat", tmp_path, client)
    assert isinstance(coco, bytes)
    rep = prelabel.read(src, fmt="cvat").report
    assert set(rep.dropped_counts()) == {"dropped.degenerate", "dropped.unknown_category", "dropped.unsupported",
                                         "dropped.outside_frame"}
    lines = [int(s.rsplit(":", 1)[1]) for s in rep.drops["source"]]
    assert lines == sorted(lines)  # in file order, however the file is cut
    notes = [d for d in rep.diagnostics if d.code == "image.attribute"]
    assert len(notes) == 1 and notes[0].message.startswith(f"{src.read_text().count('<tag ')} tag(s)")
    # every row at the line of its element in the file
    text = src.read_bytes().decode().split(nl)
    ds = prelabel.read(src, fmt="cvat")
    assert all(text[line - 1].startswith(("<box", "<polygon", "<ellipse", "<mask", "<skeleton", "<points"))
               for line in ds.annotations["src_line"])
    # cvat_points="keypoints" makes the parts that hold points read the whole file
    _cvat_same(src, tmp_path / "kp", ReadOptions(cvat_points="keypoints"))


def test_cvat_malformed_records_in_several_parts(tmp_path: Path, client: Any) -> None:
    n = 200
    bad, badvalue = '<box label="car" xtl="1" ytl="2" xbr="3"/>', '<polygon label="car" points="1,2,3"/>'
    late = {5: bad, 70: badvalue, 130: bad, 190: badvalue}  # malformed: each dropped.invalid at its line
    src = _cvat(tmp_path / "a.xml", n, kinds=["box", "polygon2"], late=late, seed=3)
    _check(src, "cvat", tmp_path, client)
    rep = prelabel.read(src, fmt="cvat").report
    invalid = rep.drops[rep.drops["reason"] == "dropped.invalid"]
    assert invalid["message"].tolist() == ["<box>: missing attribute 'ybr'",
                                           "<polygon>: points '1,2,3' has an odd number of coordinates"] * 2
    text = src.read_text().split("\n")
    assert [text[int(s.rsplit(":", 1)[1]) - 1] for s in invalid["source"]] == [late[i] for i in sorted(late)]


def test_cvat_project_export_with_images_root(tmp_path: Path, client: Any) -> None:
    src = _cvat(tmp_path / "annotations.xml", 60, seed=2, subsets=True)
    for i in range(0, 60, 3):  # every third image exists
        p = tmp_path / "images" / ("train", "val")[i % 2] / "dir" / f"img{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    _check(src, "cvat", tmp_path, client)
    codes = [d.code for d in prelabel.read(src, fmt="cvat").report.diagnostics]
    assert codes.count("image.missing") == 1 and codes.count("image.by_subset") == 1


def test_cvat_generated_file_of_a_few_megabytes(tmp_path: Path) -> None:
    from prelabel.adapters import cvat

    src = _cvat(tmp_path / "big.xml", 12_000, kinds=["box"] * 8 + CVAT_KINDS, seed=7)
    assert src.stat().st_size > 3 * 2**20
    parts = cvat.plan(src, options=ReadOptions(), parts=3)
    sizes = [p.stop - p.start for p in parts]
    assert len(parts) == 3 and max(sizes) < 1.01 * min(sizes)  # about equal bytes
    raw = src.read_bytes()
    assert parts[0].start == raw.index(b"</meta>") + 7 and parts[-1].stop == len(raw)  # <meta>: read by the plan
    assert all(raw[p.start:p.start + 7] == b"<image " and p.start == q.stop for q, p in zip(parts, parts[1:], strict=False))
    assert _cvat_same(src, tmp_path, ReadOptions(), parts=(3,))


def test_cvat_what_needs_the_whole_file(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import cvat

    n = 40
    # an image listed again in another part: one part
    src = _cvat(tmp_path / "again.xml", n, kinds=["box"])
    text = src.read_text()
    first = re.search(r'<image id="1" name="dir/img00001.jpg" width="\d+" height="\d+">', text)
    assert first is not None
    src.write_text(text.replace("</annotations>", first.group(0) + '<box label="person" xtl="1" ytl="1" '
                                'xbr="2" ybr="2"/></image>\n</annotations>'))
    assert len(cvat.plan(src, options=ReadOptions(), parts=2)) == 1
    _check(src, "cvat", tmp_path / "again", client)
    src.write_text(src.read_text().replace('name="dir/img00001.jpg"', 'name="dir/./img00001.jpg"', 1))  # the same
    assert len(cvat.plan(src, options=ReadOptions(), parts=2)) == 1
    _check(src, "cvat", tmp_path / "again2", client)
    # a skeleton missing from <meta> in a later part; a track; a frame tag; a bad XML element
    late = {n - 3: '<skeleton label="hand"><points label="f1" points="1,2"/><points label="f2" points="3,4"/>'
                   '</skeleton>'}
    _check(_cvat(tmp_path / "hand.xml", n, kinds=["box", "skeleton"], late=late), "cvat", tmp_path / "hand", client)
    src = _cvat(tmp_path / "track.xml", n, kinds=["box"])
    src.write_text(src.read_text().replace("</annotations>", '<track id="0" label="car"><box frame="0" xtl="1" '
                                           'ytl="1" xbr="2" ybr="2" outside="0" occluded="0" keyframe="1"/></track>'
                                           "\n</annotations>"))
    assert len(cvat.plan(src, options=ReadOptions(), parts=2)) == 1
    _check(src, "cvat", tmp_path / "track", client)
    src = _cvat(tmp_path / "tag.xml", n, kinds=["box"])
    src.write_text(src.read_text().replace("</annotations>", '<tag frame="0" label="day"/>\n</annotations>'))
    _check(src, "cvat", tmp_path / "tag", client)
    bad = _cvat(tmp_path / "bad.xml", n, kinds=["box"], late={n - 4: '<box label="car" xtl="1" ytl="2" xbr="3" ybr="4">'})
    assert "not well-formed XML" in str(_check(bad, "cvat", tmp_path / "bad", client))


def test_cvat_other_encoding_and_byte_order_mark(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import cvat

    src = _cvat(tmp_path / "bom.xml", 80, kinds=["box", "mask", "empty"])
    src.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    assert len(cvat.plan(src, options=ReadOptions(), parts=2)) == 2
    _check(src, "cvat", tmp_path / "bom", client)
    src = _cvat(tmp_path / "latin.xml", 80, kinds=["box"])
    text = src.read_text().replace('encoding="utf-8"', 'encoding="ISO-8859-1"').replace("img00050", "img\xe900050")
    src.write_bytes(text.encode("latin-1"))
    assert len(cvat.plan(src, options=ReadOptions(), parts=2)) == 1
    _check(src, "cvat", tmp_path / "latin", client)


def test_cvat_auto_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prelabel.adapters import cvat

    src = tmp_path / "a.xml"
    src.write_bytes(b"<annotations><meta/>" + b" " * (17 * 2**20) + b"</annotations>")
    monkeypatch.delenv("PRELABEL_WORKERS", raising=False)
    monkeypatch.delenv("PRELABEL_CVAT_WORKERS", raising=False)
    from prelabel.engine.run import how_many

    assert cvat.auto_workers(src, options=ReadOptions()) == 2
    assert cvat.auto_workers(SAMPLE / "cvat", options=ReadOptions()) == 1
    assert how_many(cvat, src, ReadOptions(extra={"cvat_workers": 1})) == 1  # the old switches, read by the engine
    monkeypatch.setenv("PRELABEL_CVAT_WORKERS", "1")
    assert how_many(cvat, src, ReadOptions()) == 1


def test_cvat_folder_of_files(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import cvat

    src = tmp_path / "ds"
    src.mkdir()
    _cvat(src / "a.xml", 50, seed=1)
    b = _cvat(src / "b.xml", 20, seed=2)
    b.write_text(b.read_text().replace('name="dir/', 'name="other/'))
    assert [len(cvat.plan(src, options=ReadOptions(), parts=n)) for n in (1, 2, 4, 6)] == [1, 2, 3, 5]
    _check(src, "cvat", tmp_path, client, parts=(2, 4, 6))


# ------------------------------------------------------------------------------------------- Label Studio
def test_labelstudio_sample(tmp_path: Path, client: Any) -> None:
    coco = _check(SAMPLE / "labelstudio" / "export.json", "labelstudio", tmp_path, client)
    assert isinstance(coco, bytes) and len(json.loads(coco)["annotations"]) > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_labelstudio_generated(tmp_path: Path, client: Any, seed: int) -> None:
    """A random export of every kind of task the reader handles (plain rectangles beside polygons, brushes,
    choices, several annotators, predictions, odd values), cut into runs of tasks."""
    from test_labelstudio_speed_equivalence import _export  # the generator of that suite

    src = tmp_path / "export.json"
    src.write_bytes(orjson.dumps(_export(seed)))
    for opts in (None, ReadOptions(ls_select="both"), ReadOptions(ls_select="predictions", ls_annotator="latest")):
        coco = _check(src, "labelstudio", tmp_path, client, opts=opts)
        assert isinstance(coco, bytes) and len(json.loads(coco)["annotations"]) > 300


def test_labelstudio_image_named_in_two_parts(tmp_path: Path, client: Any) -> None:
    """Tasks 1 and 300 name the same image: read() makes one image of them (an image.merged note), which no
    part can see: every engine then reads the export whole, and the result is read()'s."""
    from test_labelstudio_speed_equivalence import _plain

    tasks = [_plain(i) for i in range(1, 301)]
    tasks[299]["data"]["image"] = tasks[0]["data"]["image"]
    src = tmp_path / "export.json"
    src.write_bytes(orjson.dumps(tasks))
    assert len(adapters.get("labelstudio").plan(src, options=ReadOptions(), parts=3)) == 3  # it does split
    coco = _check(src, "labelstudio", tmp_path, client)
    assert isinstance(coco, bytes)
    doc = json.loads(coco)
    # 300 tasks, 299 distinct images; the first image holds task 1's 2 boxes and task 300's 2
    assert len(doc["images"]) == 299 and len(doc["annotations"]) == 600
    assert sum(a["image_id"] == doc["images"][0]["id"] for a in doc["annotations"]) == 4


def test_labelstudio_notes_counted_over_the_export_add_up_across_parts(tmp_path: Path, client: Any) -> None:
    """Image-level choices, relations, image_rotation and sizes from image headers are noted once over the whole
    export; each part counts its own and the parts' counts add up (the export is not read whole for them)."""
    from test_labelstudio_speed_equivalence import _plain

    tasks = [_plain(i) for i in range(1, 121)]

    def add(i: int, result: dict[str, Any]) -> None:
        tasks[i - 1]["annotations"][0]["result"].append(result)

    def choice(i: int, name: str) -> None:
        add(i, {"id": f"c{i}", "type": "choices", "from_name": name, "to_name": "image",
                "value": {"choices": ["yes"]}})

    choice(10, "quality")
    choice(50, "weather")
    choice(90, "weather")
    choice(100, "quality")
    for i in (20, 110):
        add(i, {"type": "relation", "from_id": f"r{i}", "to_id": f"s{i}", "direction": "right"})
    for i in (60, 70):
        tasks[i - 1]["annotations"][0]["result"][0]["image_rotation"] = 90
    images = tmp_path / "images"
    images.mkdir()
    for i in range(1, 121):
        Image.new("RGB", (64, 48)).save(images / f"i{i}.jpg")
    for i in (30, 95):
        for r in tasks[i - 1]["annotations"][0]["result"]:
            del r["original_width"], r["original_height"]
    src = tmp_path / "export.json"
    src.write_bytes(orjson.dumps(tasks))
    opts = ReadOptions(images=images)
    adapter: Any = adapters.get("labelstudio")
    parts = adapter.plan(src, options=opts, parts=3)
    assert [p.context.first for p in parts] == [1, 42, 82]  # part 3 names weather (90) before quality (100)
    got = [adapter.read_part(p, options=opts) for p in parts]  # no part needs the whole export
    assert not names_shared(adapter, got)
    coco = _check(src, "labelstudio", tmp_path, client, opts=opts)
    assert isinstance(coco, bytes)
    notes = [(d.code, d.source, d.message) for d in merge(got, report=Report()).report.diagnostics]
    f = str(src)
    assert notes == [
        ("image.attribute", f"{f}:10", "choices 'quality' of 2 annotation(s) kept as image attributes "
                                       "(attributes['choices']['quality'])"),
        ("image.attribute", f"{f}:50", "choices 'weather' of 2 annotation(s) kept as image attributes "
                                       "(attributes['choices']['weather'])"),
        ("dropped.unsupported", f, "2 relation(s) between regions not kept (COCO has no relations)"),
        ("coordinates.suspect", f"{f}:60", "2 task(s) record an image_rotation: their coordinates are read as "
                                           "given, against original_width x original_height"),
        ("image.size_from_header", f"{f}:30", "2 image size(s) read from the image files' headers"),  # 30, 95
    ]


# ------------------------------------------------------------------------------------------- COCO
COCO_FIXTURES = [
    "coco/openvinotoolkit__datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_train.json",
    "coco/openvinotoolkit__datumaro/tests/assets/coco_dataset/coco_instances/annotations/instances_val.json",
    "coco/openvinotoolkit__datumaro/tests/assets/coco_dataset/coco_person_keypoints/annotations/"
    "person_keypoints_train.json",
    "coco/openvinotoolkit__datumaro/tests/assets/coco_dataset/coco_person_keypoints/annotations/"
    "person_keypoints_val.json",
    "coco/cvat-ai__datumaro/tests/assets/coco_dataset/coco_person_keypoints/annotations/person_keypoints_val.json",
]


def _part_needs_the_whole_file(src: Path, k: int) -> None:
    """The COCO plan cuts ``src`` in 2 parts, and part ``k`` alone raises NeedsWholeRead."""
    from prelabel.adapters import coco

    parts = coco.plan(src, options=ReadOptions(), parts=2)
    assert len(parts) == 2
    with pytest.raises(NeedsWholeRead):
        coco.read_part(parts[k], options=ReadOptions())


def _coco_plan_sizes(src: Path, opts: ReadOptions | None = None) -> list[int]:
    from prelabel.adapters import coco

    return [len(coco.plan(src, options=opts or ReadOptions(), parts=n)) for n in (2, 3, 4)]


def test_coco_sample(tmp_path: Path, client: Any) -> None:
    src = SAMPLE / "coco" / "instances.json"
    coco = _check(src, "coco", tmp_path, client)
    assert isinstance(coco, bytes) and len(json.loads(coco)["annotations"]) == 7  # the file's 7, none dropped
    _check(src, "coco", tmp_path, client, opts=ReadOptions(images=SAMPLE / "images"))


@pytest.mark.parametrize("name", COCO_FIXTURES, ids=lambda p: "/".join(p.split("/")[-4:]))
def test_coco_fixtures(name: str, fixtures_dir: Path, tmp_path: Path, client: Any) -> None:
    _check(fixtures_dir / name, "coco", tmp_path, client)


def _coco_spread(n_images: int = 60) -> dict[str, Any]:
    """A COCO document in image order with what a read reports, spread over the file: annotations of unknown
    images and categories, malformed ones (a list, no image_id, a bad bbox or iscrowd), an RLE of the wrong size,
    images with an unsafe name or no size, polygons with a short part (repaired), stored boxes and areas that
    differ (recomputed), iscrowd as strings (coerced), compressed and uncompressed RLE, keypoints of a category
    that names them, string ids, a category name given twice, a 0-based skeleton, and strings with brackets,
    quotes and backslashes in them."""
    images: list[dict[str, Any]] = []
    annotations: list[Any] = []
    for i in range(n_images):
        image: dict[str, Any] = {"id": str(i + 1) if i % 9 == 4 else i + 1, "file_name": f"dir/img_{i:03d}.jpg",
                                 "width": 64, "height": 48}
        if i % 17 == 5:
            image["file_name"] = f"../up_{i}.jpg"        # unsafe: its annotations dropped (no image)
        if i % 19 == 7:
            del image["width"]                           # no size, no images root: left out
        if i % 13 == 2:
            image["attributes"] = {"note": 'a "quoted" ]}, {"id": 5 \\ text'}
        images.append(image)
        for k in range(i % 4 + 1):
            x = 1 + (i + k) % 9
            a: dict[str, Any] = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1 + (i + k) % 3,
                                 "bbox": [x, 2, 10, 12], "iscrowd": 0, "area": 120}
            kind = (i * 4 + k) % 23
            if kind == 1:
                a["segmentation"] = [[x, 2, x + 10, 2, x + 10, 14, x, 14], [1, 1, 2, 2]]   # a short part
                a["bbox"] = [x, 2, 10, 12]
            elif kind == 2:
                a["segmentation"] = {"size": [48, 64], "counts": [100, 20, 3000 - 120, 3072 - 3000]}
                a["iscrowd"] = "1"
            elif kind == 3:
                a["segmentation"] = {"size": [48, 64], "counts": "PPYo0"}
                a["iscrowd"] = True
            elif kind == 4:
                a["segmentation"] = {"size": [10, 10], "counts": [100]}                  # not the image's size
            elif kind == 5:
                a["bbox"] = [x, 2, "wide", 12]                                            # malformed
            elif kind == 6:
                a["image_id"] = 10_000 + i                                                # no such image
            elif kind == 7:
                a["category_id"] = 99                                                     # no such category
            elif kind == 8:
                a["iscrowd"] = "maybe"                                                    # malformed
            elif kind == 9:
                del a["image_id"]                                                         # malformed
            elif kind == 10:
                a["area"] = 7                                                             # recomputed
            elif kind == 11:
                a["category_id"] = 4
                a["keypoints"] = [x, 3, 2, x + 2, 5, 1]
            elif kind == 12:
                a["attributes"] = {"text": '}, {"id": 7, "image_id": 1}] \\" ['}
            elif kind == 13:
                a["segmentation"] = [[x, 2, x + 12, 2, x + 12, 14, x, 14]]                # bbox recomputed
            annotations.append(a)
        if i % 11 == 6:
            annotations.append([1, 2, 3])                                                 # not an object
    categories = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": "2", "name": "dog"},
                  {"id": 3, "name": "cat"}, {"id": 4, "name": "person", "keypoints": ["a", "b"],
                                             "skeleton": [[0, 1]]}]
    return {"info": {"description": "spread"}, "images": images, "annotations": annotations,
            "categories": categories}


def test_coco_generated_with_drops_in_every_part(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import coco

    src = tmp_path / "spread.json"
    src.write_bytes(orjson.dumps(_coco_spread()))
    assert _coco_plan_sizes(src) == [2, 3, 4]
    parts = coco.plan(src, options=ReadOptions(), parts=4)
    raw = src.read_bytes()
    # each part starts at an annotation's "{" and ends after one's "}", numbered as the file numbers them
    assert all(raw[p.start:p.start + 1] == b"{" and raw[p.stop - 1:p.stop] == b"}" for p in parts)
    doc = json.loads(raw)
    text = raw.decode()  # (ASCII: character and byte offsets agree)
    assert [p.context.first for p in parts] == [0] + [
        doc["annotations"].index(json.JSONDecoder().raw_decode(text, p.start)[0]) for p in parts[1:]]
    assert sum(p.context.count for p in parts) == len(doc["annotations"])
    coco_bytes = _check(src, "coco", tmp_path, client)
    assert isinstance(coco_bytes, bytes)
    rep = prelabel.read(src, fmt="coco").report
    assert rep.dropped_counts().keys() == {"dropped.invalid", "dropped.no_image", "dropped.unknown_category"}
    assert set(rep.changes["reason"]) == {"recomputed", "repaired"}
    # read() lists its drops reason by reason, the reasons in the order of their first annotation: image 1's
    # RLE of the wrong size (invalid), image 5's unsafe name (no image), image 13's category 99
    reasons = rep.drops["reason"].tolist()
    order = ["dropped.invalid", "dropped.no_image", "dropped.unknown_category"]
    assert reasons == sorted(reasons, key=order.index)
    first = {r: min(int(s.rsplit("[", 1)[1][:-1]) for s, q in zip(rep.drops["source"], reasons, strict=True)
                    if q == r) for r in set(reasons)}
    assert sorted(first, key=first.__getitem__) == order
    # (image 5's first annotation; image 13's second, after image 6's list)
    assert [first[r] for r in order] == [1, sum(i % 4 + 1 for i in range(5)), sum(i % 4 + 1 for i in range(13)) + 1 + 1]
    codes = [d.code for d in rep.diagnostics]
    # unsafe names: images 5, 22, 39, 56; no size: 7, 26, 45
    assert codes.count("image.unsafe_name") == 4 and codes.count("image.missing") == 3
    # iscrowd "1" and true: annotation kinds 2 and 3 of 23 (i * 4 + k), none on an image left out
    coerced = sum(1 for i in range(60) for k in range(i % 4 + 1) if (i * 4 + k) % 23 in (2, 3))
    assert [d.message for d in rep.diagnostics if d.code == "value.coerced" and d.source == str(src)] == [
        f"iscrowd written as a string or boolean in {coerced} annotation(s): read as 0/1"]


def test_coco_results_list_in_parts(tmp_path: Path, client: Any) -> None:
    """A results list (--images-from GT.json) is cut like a COCO file's annotations, its images and categories
    the ground truth's: each part reads its detections with the images of its run, and what every way reads is
    what read() reads; a drop is named file#[i], as read() names it."""
    from prelabel.adapters import coco

    doc = _coco_spread()
    gt = tmp_path / "gt.json"
    gt.write_bytes(orjson.dumps(doc))
    results = [a if not isinstance(a, dict) else {**a, "score": 0.5 + (a["id"] % 5) / 10} for a in doc["annotations"]]
    src = tmp_path / "results.json"
    src.write_bytes(orjson.dumps(results))
    opts = ReadOptions(images_from=gt)
    assert _coco_plan_sizes(src, opts) == [2, 3, 4]
    parts = coco.plan(src, options=opts, parts=3)
    assert [p.context.prefix for p in parts] == ["", "", ""]
    assert sum(p.context.count for p in parts) == len(results)
    got = _check(src, "coco", tmp_path, client, opts=opts)
    assert isinstance(got, bytes)
    # the same detections as the ground truth's annotations: the same ones dropped, for the same reasons, named
    # by their place in the list; the notes about the images are the ground truth's
    res = prelabel.read(src, fmt="coco", options=opts).report
    ann = prelabel.read(gt, fmt="coco").report
    assert res.drops["source"].tolist() == [s.replace(f"{gt}#annotations[", f"{src}#[")
                                            for s in ann.drops["source"]]
    assert res.drops["reason"].tolist() == ann.drops["reason"].tolist()
    assert [(d.code, d.source) for d in res.diagnostics if d.code.startswith("image.")] == [
        (d.code, d.source) for d in ann.diagnostics if d.code.startswith("image.")]
    assert len(json.loads(got)["annotations"]) == len(json.loads(_check(gt, "coco", tmp_path, None))["annotations"])


@pytest.mark.parametrize("case", ["by score", "bytes after the list", "no ground truth"])
def test_coco_results_list_read_whole(case: str, tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import coco

    doc = _coco_spread(0)
    doc["images"] = [{"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 20} for i in range(30)]
    gt = tmp_path / "gt.json"
    gt.write_bytes(orjson.dumps(doc))
    results = [{"image_id": i // 2, "category_id": 1, "bbox": [1, 1, 5, 5], "score": (i * 7 % 60) / 60}
               for i in range(60)]
    opts: ReadOptions | None = ReadOptions(images_from=gt)
    if case == "by score":  # a detector's list sorted by score: images come back, the plan finds it at its cuts
        results.sort(key=lambda r: -r["score"])
    raw = orjson.dumps(results)
    if case == "bytes after the list":
        raw += b" []"
    elif case == "no ground truth":
        opts = None
    src = tmp_path / "results.json"
    src.write_bytes(raw)
    if case == "by score":  # where its cuts happen to go forward, a part finds another part's image
        plans = [coco.plan(src, options=opts or ReadOptions(), parts=n) for n in (2, 3, 4)]
        assert [len(p) for p in plans] == [2, 1, 4]
        for parts in (plans[0], plans[2]):
            with pytest.raises(NeedsWholeRead):
                for part in parts:
                    coco.read_part(part, options=opts or ReadOptions())
    else:
        assert _coco_plan_sizes(src, opts) == [1, 1, 1]
    got = _check(src, "coco", tmp_path, client, opts=opts)
    if case == "by score":
        assert isinstance(got, bytes) and len(json.loads(got)["annotations"]) == 60
    else:
        want = {"bytes after the list": f"ReadError: {src}:1: not valid JSON: unexpected content after document",
                "no ground truth": f"ReadError: {src}: a COCO results list (no images or categories): the image "
                                   "table must come from the ground-truth file"}[case]
        assert isinstance(got, str) and got.startswith(want), got
        assert got == want or case == "no ground truth"


def test_coco_sizes_from_headers_in_parts(tmp_path: Path, client: Any) -> None:
    """Images without width/height take their size from the header under the images root (one resolver's note,
    written by the plan once); 'gone.png' has no file: left out, its annotations dropped."""
    root = tmp_path / "imgs"
    for k in range(12):
        if k % 3 == 1:
            _png(root / f"i{k}.png", 40 + k, 30 + k)
    images = [{"id": k, "file_name": "gone.png" if k == 7 else f"i{k}.png",
               **({} if k % 3 == 1 else {"width": 64, "height": 48})} for k in range(12)]
    annotations = [{"id": 10 * k + j, "image_id": k, "category_id": 1, "bbox": [1, 1, 4, 4]}
                   for k in range(12) for j in range(3)]
    src = tmp_path / "gt.json"
    src.write_bytes(orjson.dumps({"images": images, "annotations": annotations,
                                  "categories": [{"id": 1, "name": "cat"}]}))
    opts = ReadOptions(images=root)
    assert len(adapters.get("coco").plan(src, options=opts, parts=3)) == 3
    coco_bytes = _check(src, "coco", tmp_path, client, opts=opts)
    assert isinstance(coco_bytes, bytes)
    doc = json.loads(coco_bytes)
    assert [(im["file_name"], im["width"], im["height"]) for im in doc["images"] if im["width"] != 64] == [
        ("i1.png", 41, 31), ("i4.png", 44, 34), ("i10.png", 50, 40)]
    rep = prelabel.read(src, fmt="coco", options=opts).report
    assert [(d.code, d.source, d.message) for d in rep.diagnostics] == [
        ("image.missing", str(src), f"image 'gone.png' has no known size: no width/height in the file, and no such "
                                    f"file under {root}; its annotations are dropped"),
        ("image.size_from_header", f"{src}#images[1]", "3 image size(s) read from the image files' headers")]
    assert rep.dropped_counts() == {"dropped.no_image": 3}


def test_coco_drops_of_a_later_part_first(tmp_path: Path, client: Any) -> None:
    # the first unknown category stands in the first part, the first malformed annotation in the last: merged,
    # the parts' drops are listed as read() lists them, reason by reason in the order of their first annotation
    doc = _coco_spread(0)
    doc["images"] = [{"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 20} for i in range(40)]
    doc["annotations"] = [{"id": i, "image_id": i // 2, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(80)]
    doc["annotations"][3]["category_id"] = 77
    doc["annotations"][70]["bbox"] = [1]
    doc["annotations"][75]["category_id"] = 77
    doc["annotations"][20]["bbox"] = "no"
    src = tmp_path / "late.json"
    src.write_bytes(orjson.dumps(doc))
    assert _coco_plan_sizes(src) == [2, 3, 4]
    _check(src, "coco", tmp_path, client)
    rep = prelabel.read(src, fmt="coco").report
    assert [s.rsplit("#", 1)[1] for s in rep.drops["source"]] == [
        "annotations[3]", "annotations[75]", "annotations[20]", "annotations[70]"]


def test_coco_not_in_image_order(tmp_path: Path, client: Any) -> None:
    from prelabel.adapters import coco

    doc = _coco_spread(0)
    doc["images"] = [{"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 20} for i in range(40)]
    # by category, then image: the plan sees it at its cuts when it makes 3 or 4 parts (the images at the cuts
    # go back), not when it makes 2 (its one cut, at image 20 of category 2, follows image 19): the second part
    # then finds annotations of the first part's images (NeedsWholeRead), and the file is read whole
    doc["annotations"] = [{"id": 1 + c * 40 + i, "image_id": i, "category_id": 1 + c, "bbox": [1, 1, 5, 5]}
                          for c in range(3) for i in range(40)]
    src = tmp_path / "by_category.json"
    src.write_bytes(orjson.dumps(doc))
    assert _coco_plan_sizes(src) == [2, 1, 1]
    with pytest.raises(NeedsWholeRead):
        coco.read_part(coco.plan(src, options=ReadOptions(), parts=2)[1], options=ReadOptions())
    _check(src, "coco", tmp_path, client)
    # in image order but for one annotation of image 0 near the end: the plan splits it, the last part sees an
    # annotation of the first part's image (NeedsWholeRead), and every engine reads the file whole
    doc["annotations"] = [{"id": i, "image_id": i // 2, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(80)]
    doc["annotations"][78]["image_id"] = 0
    src.write_bytes(orjson.dumps(doc))
    _part_needs_the_whole_file(src, 1)
    coco_bytes = _check(src, "coco", tmp_path, client)
    assert isinstance(coco_bytes, bytes)
    out = json.loads(coco_bytes)
    assert sum(a["image_id"] == out["images"][0]["id"] for a in out["annotations"]) == 3


def test_coco_keypoints_of_a_category_without_names(tmp_path: Path, client: Any) -> None:
    # the count of keypoints of a category that names none is the largest of the file's: a part cannot tell
    doc = _coco_spread(0)
    doc["images"] = [{"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 20} for i in range(30)]
    doc["categories"] = [{"id": 1, "name": "person"}]
    doc["annotations"] = [{"id": i, "image_id": i // 2, "category_id": 1, "bbox": [1, 1, 5, 5],
                           "keypoints": [1, 1, 2] * (3 if i == 50 else 2)} for i in range(60)]
    src = tmp_path / "kp.json"
    src.write_bytes(orjson.dumps(doc))
    _part_needs_the_whole_file(src, 0)
    got = _check(src, "coco", tmp_path, client)
    assert isinstance(got, str) and "2 keypoints but category 'person' has 3" in got


@pytest.mark.parametrize("case", ["list record", "scalar record", "annotations twice", "annotations first",
                                  "categories missing", "bad json late", "bom", "results list", "empty"])
def test_coco_what_the_plan_reads_whole(case: str, tmp_path: Path, client: Any) -> None:

    doc = _coco_spread(0)
    doc["images"] = [{"id": i, "file_name": f"{i}.jpg", "width": 20, "height": 20} for i in range(30)]
    doc["annotations"] = [{"id": i, "image_id": i // 2, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(60)]
    raw = orjson.dumps(doc)
    opts = None
    if case == "list record":
        doc["annotations"][40] = [1, 2]
    elif case == "scalar record":
        doc["annotations"][40] = 5
    elif case == "annotations first":
        doc = {"annotations": doc["annotations"], "categories": doc["categories"], "images": doc["images"]}
    elif case == "categories missing":
        del doc["categories"]
    elif case == "empty":
        doc["annotations"] = []
    raw = orjson.dumps(doc)
    if case == "annotations twice":
        raw = raw[:-1] + b',"annotations":[]}'
    elif case == "bad json late":
        raw = raw.replace(b'"id":50,', b'"id":50,,')
    elif case == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif case == "results list":
        gt = tmp_path / "gt.json"
        gt.write_bytes(raw)
        raw = orjson.dumps([{**a, "score": 0.5} for a in doc["annotations"]])
        opts = ReadOptions(images_from=gt)
    src = tmp_path / "doc.json"
    src.write_bytes(raw)
    want = {"list record": [2, 3, 4], "scalar record": [2, 3, 4], "annotations twice": [1, 1, 1],
            "annotations first": [2, 3, 4], "categories missing": [2, 3, 4], "bad json late": [2, 3, 4],
            "bom": [2, 3, 4], "results list": [2, 3, 4], "empty": [1, 1, 1]}[case]
    assert _coco_plan_sizes(src, opts) == want
    got = _check(src, "coco", tmp_path, client, opts=opts)
    assert isinstance(got, str) == (case == "bad json late")


@pytest.mark.parametrize("case_id", _hostile_ids("coco"))
def test_hostile_coco(case_id: str, tmp_path: Path, client: Any) -> None:
    from hostile import CASES

    case = CASES[case_id](tmp_path)
    _check(case.src, case.fmt, tmp_path, client, opts=case.options, parts=(2, 3))


def test_coco_file_of_a_few_megabytes(tmp_path: Path) -> None:
    from prelabel.adapters import coco

    doc = _coco_spread(9000)
    src = tmp_path / "big.json"
    src.write_bytes(orjson.dumps(doc))
    assert src.stat().st_size > 2 * 2**20
    parts = coco.plan(src, options=ReadOptions(), parts=3)
    sizes = [p.stop - p.start for p in parts]
    assert len(parts) == 3 and max(sizes) < 1.01 * min(sizes)  # about equal bytes
    assert [(p.context.lo, p.context.hi) for p in parts] == [(0, parts[1].context.lo),
                                                              (parts[1].context.lo, parts[2].context.lo),
                                                              (parts[2].context.lo, len(prelabel.read(src).images))]
    # each part carries its own images only (the others' ids, to know an annotation of another part's image)
    assert [len(p.context.images.table) for p in parts] == [p.context.hi - p.context.lo for p in parts]
    assert [len(p.context.images.elsewhere) for p in parts] == [
        len(prelabel.read(src).images) - (p.context.hi - p.context.lo) for p in parts]
    want = _written(lambda: prelabel.read(src, fmt="coco"), tmp_path / "want.json")
    assert _written(_in_process(src, "coco", 3), tmp_path / "parts.json") == want
    assert _written(lambda: read_parts(src, fmt="coco", workers=2), tmp_path / "w2.json") == want
    assert _written(_streamed(src, "coco", 5, 2), tmp_path / "s.json") == want
