"""Streaming the YOLO adapter: the engine's stream of its plan's parts (``PartStream``: runs of the images in
output order with their label files, the orphan label files in the first part; read here or in a pool) must
give ``read()``'s dataset and report, cut into whole images.

The reference is ``read()``, which is checked against hand-worked values and the public fixtures in
test_yolo.py. Each case here compares the concatenated parts with ``read()`` of the same source: images, every
annotation column (``src_file`` and ``src_line`` included), the category table in order, and the two reports
(counts, drops, notes, in order), at several part counts, read here and by two processes. What ``read()``
decides from every label file cannot always be decided by a part: a part holding label files of 9-11 column
rows only asks for a whole read (``NeedsWholeRead``), and then the user gets ``read()``'s result, with a
``stream.whole`` note saying why; those cases check what the streaming conversion writes against the whole
one. One small case is checked value by value against numbers worked out by hand, and the streaming pipeline
is checked to write the bytes the whole-dataset pipeline writes.
"""

from __future__ import annotations

import json
import struct
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chunk_equality import frames_equal, reports_equal, streamed
from PIL import Image

from prelabel.adapters import yolo
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.engine import PartStream
from prelabel.errors import ReadError, UsageError
from prelabel.model import Dataset
from prelabel.pipeline import convert, prepare
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "yolo"
DATUMARO = Path("yolo/cvat-ai__datumaro/tests/assets/yolo_dataset")
DAGSHUB = Path("yolo/DagsHub__dagshub-annotation-converter/tests/fs_import/yolo/res")
SIZES = (1, 2, 3, 5, 10**6)
WHOLE = "label files of 9-11 column rows only"  # what a part that cannot be read alone says


# ---------------------------------------------------------------------------------------------- comparing


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return yolo.read(path, options=ReadOptions(**opts), report=report), report


def _stream(path: Path, parts: int, workers: int = 1, **opts: Any) -> tuple[list[Dataset], Report]:
    """The source streamed in ``parts`` parts (at most one an image), by ``workers`` processes."""
    return streamed(yolo, path, ReadOptions(**opts), parts=parts, workers=workers)


def _check(path: Path, parts: int, workers: int = 1, **opts: Any) -> list[Dataset]:
    """Parts of whole images whose concatenation, and the merged report, equal ``read()``'s; the parts."""
    ds, rep = _whole(path, **opts)
    chunks, srep = _stream(path, parts, workers, **opts)
    assert chunks
    for c in chunks:
        img = c.annotations["image"].to_numpy()
        assert ((img >= 0) & (img < len(c.images))).all()
        assert (np.diff(img) >= 0).all()  # rows in image order, as read() has them
    got = Dataset.concat(chunks, report=srep)
    frames_equal(got.images, ds.images, "images")
    frames_equal(got.annotations, ds.annotations, "annotations")
    frames_equal(got.categories, ds.categories, "categories")
    assert got.category_names == ds.category_names
    reports_equal(srep, rep)
    return chunks


def _converted(src: Path, out: Path, **kw: Any) -> tuple[bytes, dict[str, Any]]:
    """The COCO bytes and the report (its output files named without their folder) of one conversion."""
    out.mkdir(parents=True)
    convert(src, out / "out.json", fmt="yolo", report_path=out / "report.json", **kw)
    rep = json.loads((out / "report.json").read_bytes())
    rep["output"]["files"] = [Path(f).name for f in rep["output"]["files"]]
    return (out / "out.json").read_bytes(), rep


def _user_sees_read(src: Path, name: str, *, streams: bool, **opts: Any) -> bytes:
    """The streaming conversion (the command line's, parts in a pool of 1 or 2) writes the bytes and the report
    of the whole conversion (returned); ``streams``: whether it streamed, else it read the source whole and says
    why in one ``stream.whole`` note (the report is otherwise the whole one's). Written outside the source."""
    with tempfile.TemporaryDirectory(prefix=f"yolo_{name}_") as out:
        return _converted_both(src, Path(out), streams=streams, options=ReadOptions(**opts))


def _converted_both(src: Path, tmp: Path, *, streams: bool, options: ReadOptions) -> bytes:
    want, want_rep = _converted(src, tmp / "whole", options=options)
    for workers in (1, 2):
        got, rep = _converted(src, tmp / f"stream{workers}", options=options, stream=True, chunk_rows=1,
                              workers=workers)
        assert got == want, workers
        notes = [d for d in rep["diagnostics"] if d["code"] == "stream.whole"]
        if streams:
            assert notes == []
        else:
            assert len(notes) == 1 and WHOLE in notes[0]["message"], notes
        rest = dict(rep, diagnostics=[d for d in rep["diagnostics"] if d["code"] != "stream.whole"])
        # the reader's notes in read()'s order; the steps' records after them (part by part when streamed)
        key = json.dumps
        assert sorted(map(key, rest["diagnostics"])) == sorted(map(key, want_rep["diagnostics"]))
        assert {**rest, "diagnostics": None} == {**want_rep, "diagnostics": None}
    return want


def _asks_whole_read(path: Path, parts: int, **opts: Any) -> None:
    """A part of the stream cannot be read alone: NeedsWholeRead (the engine and the pipeline read it whole)."""
    with pytest.raises(NeedsWholeRead, match=WHOLE):
        _stream(path, parts, **opts)


# ---------------------------------------------------------------------------------------------- writing datasets
def _img(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path)
    return path


def _txt(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _f(v: float) -> str:
    return f"{v:.4f}"


def _row(rng: np.random.Generator, task: str, n_cls: int, *, score: bool = False, track: bool = False,
         kpt: tuple[int, int] = (3, 3), points: int = 0) -> str:
    c = str(int(rng.integers(n_cls)))
    if task == "detect":
        vals = [_f(v) for v in rng.uniform(0.05, 0.95, 4)]
    elif task == "segment":
        vals = [_f(v) for v in rng.uniform(0, 1, 2 * (points or int(rng.integers(3, 7))))]
    elif task == "obb":
        vals = [_f(v) for v in rng.uniform(0, 1, 8)]
    else:
        k, d = kpt
        vals = [_f(v) for v in rng.uniform(0.05, 0.95, 4)]
        for _ in range(k):
            vals += [_f(v) for v in rng.uniform(0, 1, 2)]
            if d == 3:
                vals.append(str(int(rng.integers(3))))
    if score:
        vals.append(_f(rng.uniform()))
    if track:
        vals.append(str(int(rng.integers(2, 50))))
    return " ".join([c, *vals])


def _flat(tmp: Path, labels: Sequence[str | None], *, names: Sequence[str] | None = ("a", "b", "c", "d"),
          sizes: list[tuple[int, int]] | None = None) -> Path:
    """A flat folder: img_000.png .. with the .txt beside it (None: no label file); classes.txt from ``names``."""
    tmp.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(labels):
        w, h = sizes[i] if sizes else (32 + 8 * (i % 5), 24 + 4 * (i % 3))
        _img(tmp / f"img_{i:03d}.png", w, h)
        if text is not None:
            _txt(tmp / f"img_{i:03d}.txt", text)
    if names is not None:
        _txt(tmp / "classes.txt", "".join(n + "\n" for n in names))
    return tmp


def _random_labels(n: int, task: str, *, seed: int, n_cls: int = 4, **kw: Any) -> list[str | None]:
    """Label files of 0-4 rows; every 7th image has none, every 5th an empty file."""
    rng = np.random.default_rng(seed)
    out: list[str | None] = []
    for i in range(n):
        if i % 7 == 3:
            out.append(None)
        elif i % 5 == 4:
            out.append("")
        else:
            out.append("".join(_row(rng, task, n_cls, **kw) + "\n" for _ in range(int(rng.integers(1, 5)))))
    return out


# ---------------------------------------------------------------------------------------------- by hand
def test_small_case_by_hand(tmp_path: Path) -> None:
    # a.png 100x50: "0 0.5 0.5 0.2 0.4" -> x = 0.5*100 - 0.2*100/2 = 40, y = 0.5*50 - 0.4*50/2 = 15, w = 20, h = 20
    #               "1 0.1 0.2 0.2 0.2" -> x = 10 - 10 = 0, y = 10 - 5 = 5, w = 20, h = 10
    # b.png 30x30: no label file
    # c.png 40x20: "1 0.25 0.5 0.5 0.5 0.9" -> x = 10 - 10 = 0, y = 10 - 5 = 5, w = 20, h = 10, score 0.9
    # 2 parts of 3 images: images 0:1 and 1:3 (3*k//2)
    _img(tmp_path / "a.png", 100, 50)
    _txt(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.4\n1 0.1 0.2 0.2 0.2\n")
    _img(tmp_path / "b.png", 30, 30)
    _img(tmp_path / "c.png", 40, 20)
    _txt(tmp_path / "c.txt", "1 0.25 0.5 0.5 0.5 0.9\n")
    _txt(tmp_path / "classes.txt", "cat\ndog\n")
    chunks = _check(tmp_path, 2)
    assert [c.images["file_name"].tolist() for c in chunks] == [["a.png"], ["b.png", "c.png"]]
    assert [c.images["width"].tolist() for c in chunks] == [[100], [30, 40]]
    assert [c.images["src_file"].tolist() for c in chunks] == [["a.txt"], ["b.png", "c.txt"]]
    a, c = chunks[0].annotations, chunks[1].annotations
    np.testing.assert_allclose(a[["x", "y", "w", "h"]].to_numpy(), [[40, 15, 20, 20], [0, 5, 20, 10]], atol=1e-12)
    assert a["category"].tolist() == ["cat", "dog"] and a["src_line"].tolist() == [1, 2]
    assert a["image"].tolist() == [0, 0] and a["src_file"].tolist() == ["a.txt", "a.txt"]
    assert np.isnan(a["score"]).all()
    np.testing.assert_allclose(c[["x", "y", "w", "h"]].to_numpy(), [[0, 5, 20, 10]], atol=1e-12)
    assert c["image"].tolist() == [1] and c["score"].tolist() == [0.9] and c["src_line"].tolist() == [1]
    assert [ch.category_names for ch in chunks] == [["cat", "dog"], ["cat", "dog"]]
    _, report = _stream(tmp_path, 2)
    assert report.read == 3 and report.dropped == 0
    assert [(d.code, d.source, d.message) for d in report.diagnostics] == [
        ("task.inferred", str(tmp_path), "task inferred from the column counts: 2 detect file(s)"),
        ("image.unlabeled", "b.png", "no label file: kept with no annotations"),
        # every YOLO size is a header's (a.png, b.png, c.png), counted once by the image resolver at the first
        ("image.size_from_header", "a.png", "3 image size(s) read from the image files' headers")]
    assert _check(tmp_path, 2, workers=2)


def test_parts_are_runs_of_whole_images(tmp_path: Path) -> None:
    # rows per image: 3, 0 (no file), 1, 1, 2, 0 (empty file), 5, 1
    counts = [3, None, 1, 1, 2, 0, 5, 1]
    labels = [None if n is None else "".join(f"0 0.5 0.5 0.1 0.{k + 1}\n" for k in range(n)) for n in counts]
    src = _flat(tmp_path, labels)
    # 3 parts of 8 images: 0:2, 2:5, 5:8 (8*k//3), whatever their rows
    chunks = _check(src, 3)
    assert [c.images["file_name"].str[4:7].tolist() for c in chunks] == [
        ["000", "001"], ["002", "003", "004"], ["005", "006", "007"]]
    assert [len(c) for c in chunks] == [3, 4, 6]
    # one part an image: 8 parts (the plan never makes more parts than images)
    chunks = _check(src, 10**6, workers=2)
    assert [len(c.images) for c in chunks] == [1] * 8
    assert [len(c) for c in chunks] == [3, 0, 1, 1, 2, 0, 5, 1]
    assert len(_check(src, 1)) == 1


def test_usage_errors(tmp_path: Path) -> None:
    for bad in (0, -1, True, 2.5):
        with pytest.raises(UsageError):
            convert(SAMPLE, tmp_path / "o.json", stream=True, chunk_rows=bad)  # type: ignore[arg-type]
    with pytest.raises(ReadError, match="no such file"):
        _stream(tmp_path / "nope", 2)


# ---------------------------------------------------------------------------------------------- sample and fixtures
@pytest.mark.parametrize("workers", (1, 2))
@pytest.mark.parametrize("parts", SIZES)
def test_sample_data(parts: int, workers: int) -> None:
    chunks = _check(SAMPLE, parts, workers)
    if parts >= 5:
        assert [len(c.images) for c in chunks] == [1] * 5


FIXTURES: list[tuple[Path, dict[str, Any]]] = [
    (DATUMARO / "yolo", {}),
    (DATUMARO / "yolo" / "obj.data", {}),
    (DATUMARO / "yolov8_detection", {}),
    (DATUMARO / "yolov8_detection" / "labels", {}),
    (DATUMARO / "yolov8_detection_with_list_of_imgs", {}),
    (DATUMARO / "yolov8_detection_with_list_of_names", {}),
    (DATUMARO / "yolov8_detection_with_subset_txt", {}),
    (DATUMARO / "yolov8_oriented_boxes", {}),
    (DATUMARO / "yolov8_oriented_boxes", {"task": "obb"}),
    (DATUMARO / "yolov8_pose", {}),
    (DATUMARO / "yolov8_pose_two_values_per_point", {}),
    (DATUMARO / "yolov8_segmentation", {}),
    (DATUMARO, {}),
    (DAGSHUB / "data" / "labels_bbox", {}),
    (DAGSHUB / "data" / "labels_bbox", {"names": ["dog", "cat"]}),
    (DAGSHUB / "data" / "labels_segmentation", {}),
    (DAGSHUB / "data" / "labels_pose_2dim", {"extra": {"data_yaml": DAGSHUB / "pose_2dim.yaml"}}),
    (DAGSHUB / "data" / "labels_pose_3dim", {"extra": {"data_yaml": DAGSHUB / "pose_3dim.yaml"}}),
    (DAGSHUB / "data" / "labels_pose_3dim", {"task": "pose"}),
    (DAGSHUB / "bbox_and_segmentation.yaml", {}),
    (DAGSHUB / "data", {}),
]


def _under(fixtures_dir: Path, opts: dict[str, Any]) -> dict[str, Any]:
    def under(v: Any) -> Any:
        return fixtures_dir / v if isinstance(v, Path) else v

    return {k: ({kk: under(vv) for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in opts.items()}


@pytest.mark.parametrize("parts", (1, 2, 10**6))
@pytest.mark.parametrize("rel,opts", FIXTURES, ids=[f"{p}-{sorted(o)}" for p, o in FIXTURES])
def test_fixtures(fixtures_dir: Path, rel: Path, opts: dict[str, Any], parts: int) -> None:
    if rel == DATUMARO and parts > 1:  # its OBB file: 9 columns, no task (see below)
        _check(fixtures_dir / rel, parts)
    else:
        _check(fixtures_dir / rel, parts, **_under(fixtures_dir, opts))


def test_the_whole_datumaro_folder_needs_a_whole_read(fixtures_dir: Path, tmp_path: Path) -> None:
    # 9 images of every task; the OBB file's 9-column rows (no task) are ambiguous, dropped, since other files
    # are not all polygons: one part cannot tell, the user gets read()'s result
    src = fixtures_dir / DATUMARO
    assert len(_whole(src)[0].images) == 9
    assert _whole(src)[1].dropped_counts()["dropped.ambiguous"] >= 1
    _check(src, 9)
    _check(src, 1, workers=2)
    _user_sees_read(src, "c", streams=True)


# ---------------------------------------------------------------------------------------------- generated datasets
@pytest.mark.parametrize("parts", SIZES)
def test_detect_with_unlabeled_empty_scores_and_tracks(tmp_path: Path, parts: int) -> None:
    labels = _random_labels(40, "detect", seed=1)
    rng = np.random.default_rng(2)
    labels[10] = "".join(_row(rng, "detect", 4, score=True) + "\n" for _ in range(3))  # scores
    labels[11] = "".join(_row(rng, "detect", 4, score=True, track=True) + "\n" for _ in range(2))  # + track ids
    labels[12] = "0 0.5 0.5 0.2 0.2 7\n1 0.5 0.5 0.2 0.2 12\n"   # one whole extra column above 1: track ids
    labels[13] = "0 0.5 0.5 0.2 0.2 inf\n1 0.5 0.5 0.2 0.2 0.5\n"  # an infinite score: dropped.nonfinite
    labels[14] = "\n\n2 0.5 0.5 0.2 0.2\n\n3 nan 0.5 0.2 0.2\n"   # empty lines: src_line counts them
    labels[30] = "3 0.5 0.5 0.2 0.2 inf\n"
    src = _flat(tmp_path, labels)
    chunks = _check(src, parts)
    if parts >= 40:
        assert len(chunks) == 40
    if parts == 3:
        _check(src, parts, workers=2)
        _user_sees_read(src, "convert", streams=True)


@pytest.mark.parametrize("parts", SIZES)
def test_segment_with_box_rows_and_4_point_files(tmp_path: Path, parts: int) -> None:
    labels = _random_labels(30, "segment", seed=3)
    rng = np.random.default_rng(4)
    labels[0] = _row(rng, "segment", 4) + "\n" + _row(rng, "detect", 4) + "\n"  # polygons and boxes mixed
    labels[8] = _row(rng, "segment", 4, score=True) + "\n"  # an even count: the last value is a score
    # (random polygons of 3 to 6 points: some files hold 4-point polygons only, 9 columns, which a part cannot
    # tell from oriented boxes: polygons like the rest of the dataset)
    labels[6] = _row(rng, "segment", 4, points=4) + "\n"
    labels[20] = _row(rng, "segment", 4, points=4) + "\n" + _row(rng, "segment", 4, points=4, score=True) + "\n"
    src = _flat(tmp_path, labels)
    _check(src, parts, task="segment")  # the task given: every part reads alone
    if parts == 1:
        _check(src, 1)  # one part: read() itself
    else:
        _check(src, parts)
    _, rep = _whole(src)
    assert rep.dropped == 0 and "9-11 column rows read as polygons like the rest" in rep.diagnostics[1].message
    if parts == 2:
        _user_sees_read(src, "convert", streams=True)
        _user_sees_read(src, "segment", streams=True, task="segment")


@pytest.mark.parametrize("parts", (1, 3, 10**6))
def test_obb_and_ambiguous_files(tmp_path: Path, parts: int) -> None:
    labels = _random_labels(20, "obb", seed=5)
    src = _flat(tmp_path / "obb", labels)
    _check(src, parts, task="obb")
    _, rep = _whole(src)
    assert "dropped.ambiguous" in rep.dropped_counts()  # no task: every file is ambiguous, every row dropped
    if parts == 1:
        _check(src, 1)
    else:
        _check(src, parts)
    # detect files and 9-column files: the 9-column rows are dropped as ambiguous
    mixed = _random_labels(20, "detect", seed=6)
    rng = np.random.default_rng(7)
    for i in (2, 9, 15):
        mixed[i] = _row(rng, "obb", 4) + "\n" + _row(rng, "obb", 4, score=True) + "\n"
    mixed_src = _flat(tmp_path / "mixed", mixed)
    if parts == 1:
        _check(mixed_src, 1)
    else:
        _check(mixed_src, parts)
    if parts == 3:
        _user_sees_read(src, "c_obb", streams=True, task="obb")
        _user_sees_read(src, "c_ambiguous", streams=True)
        _user_sees_read(mixed_src, "c_mixed", streams=True)


@pytest.mark.parametrize("kpt", [(3, 3), (2, 2), (4, 3)])
@pytest.mark.parametrize("parts", (1, 2, 10**6))
def test_pose_with_kpt_shape_names_and_skeleton(tmp_path: Path, kpt: tuple[int, int], parts: int) -> None:
    labels = _random_labels(25, "pose", seed=8, kpt=kpt)
    rng = np.random.default_rng(9)
    labels[5] = "".join(_row(rng, "pose", 4, kpt=kpt, score=True) + "\n" for _ in range(2))  # predictions
    src = _flat(tmp_path, labels, names=None)
    k = kpt[0]
    _txt(tmp_path / "data.yaml", json.dumps({
        "names": ["a", "b", "c", "d"], "kpt_shape": list(kpt), "kpt_names": [f"p{j}" for j in range(k)],
        "skeleton": [[j, j + 1] for j in range(k - 1)]}))
    chunks = _check(src, parts, workers=2 if parts == 2 else 1)
    assert all(c.categories["keypoints"].iloc[0] == [f"p{j}" for j in range(k)] for c in chunks)
    assert len(chunks) == min(parts, 25)


@pytest.mark.parametrize("parts", (1, 2, 10**6))
def test_pose_kpt_shape_inferred(tmp_path: Path, parts: int) -> None:
    # the first three images have no label rows; the keypoint count comes from every pose row: one part
    labels: list[str | None] = [None, "", None, *_random_labels(12, "pose", seed=10, kpt=(4, 3))]
    src = _flat(tmp_path / "v", labels)
    chunks = _check(src, parts, task="pose")
    assert len(chunks) == 1
    assert chunks[0].categories["keypoints"].iloc[0] == ["kp0", "kp1", "kp2", "kp3"]
    # 12 values: 6 points of 2 or 4 of 3; the third values are not all 0/1/2 -> [6, 2]
    rng = np.random.default_rng(11)
    rows = [" ".join(["0"] + [_f(v) for v in rng.uniform(0.1, 0.9, 16)]) + "\n" for _ in range(10)]
    _check(_flat(tmp_path / "x", rows), parts, task="pose")
    # no row at all: no keypoint count, categories without keypoints, as read() has them
    _check(_flat(tmp_path / "e", [None, "", ""]), parts, task="pose")
    # the third values of the first file are all visibilities, of the second not: [3, 2] for the whole, and
    # the other way round the same
    first = "0 0.5 0.5 0.2 0.2 0.1 0.2 2 0.3 0.4 1\n"
    later = "0 0.5 0.5 0.2 0.2 0.1 0.2 0.7 0.3 0.4 0.6\n"
    for name, labels in (("dim", [first, later]), ("ok", [later, first])):
        src = _flat(tmp_path / name, labels)
        assert len(_check(src, parts, task="pose")) == 1
        assert _whole(src, task="pose")[0].categories["keypoints"].iloc[0] == ["kp0", "kp1", "kp2"]
    # a later file with another column count: read() raises, and so does the stream
    src = _flat(tmp_path / "cols", [first, "0 0.5 0.5 0.2 0.2 0.1 0.2 2\n"])
    for read in (lambda: _whole(src, task="pose"), lambda: _stream(src, parts, task="pose")):
        with pytest.raises(ReadError, match="kpt_shape"):
            read()
    if parts == 2:
        _user_sees_read(tmp_path / "v", "convert", streams=True, task="pose")


@pytest.mark.parametrize("parts", (1, 2, 10**6))
def test_names_missing_classes_by_index(tmp_path: Path, parts: int) -> None:
    labels = _random_labels(12, "detect", seed=12, n_cls=3)
    labels[9] = "7 0.5 0.5 0.1 0.1\n"      # a class first seen late: categories 0..7 (3..6 never used)
    src = _flat(tmp_path, labels, names=None)
    chunks = _check(src, parts)
    assert Dataset.concat(chunks).category_names == [str(i) for i in range(8)]
    # and the orphan label files (no image) count for the class range too (they go with the first part)
    _txt(tmp_path / "zzz_orphan.txt", "11 0.5 0.5 0.1 0.1\n")
    chunks = _check(src, parts)
    assert chunks[0].category_names == [str(i) for i in range(12)]
    if parts == 2:
        _user_sees_read(src, "convert", streams=True)


@pytest.mark.parametrize("parts", (1, 2, 10**6))
def test_drops_spread_over_files(tmp_path: Path, parts: int) -> None:
    # a labels folder paired with images/ by stem: orphan label files (no image), an image whose size cannot
    # be read, ambiguous 9-column files beside detect files, infinite scores, a loose .txt that is no label file
    images, labels = tmp_path / "images", tmp_path / "labels"
    rng = np.random.default_rng(13)
    for i in range(15):
        if i in (4, 11):
            _txt(images / f"im{i:02d}.jpg", "not an image")
        else:
            _img(images / f"im{i:02d}.jpg", 20 + i, 10 + i)
        if i % 6 != 5:
            rows = [_row(rng, "detect", 4) for _ in range(i % 3 + 1)]
            if i in (2, 7):
                rows = [_row(rng, "obb", 4), _row(rng, "obb", 4)]
            if i == 9:  # one extra column, not all whole numbers: scores; the infinite one is dropped
                rows += ["1 0.5 0.5 0.2 0.2 inf", "2 0.5 0.5 0.2 0.2 0.25"]
            _txt(labels / f"im{i:02d}.txt", "".join(r + "\n" for r in rows))
    for name in ("orphan_a", "orphan_b"):
        _txt(labels / f"{name}.txt", _row(rng, "detect", 4) + "\n" + _row(rng, "detect", 4) + "\n")
    _txt(labels / "orphan_empty.txt", "")
    _txt(tmp_path / "classes.txt", "a\nb\nc\nd\n")
    for opts in ({}, {"images": images}):  # the images root found, and given
        if parts == 1:
            _check(labels, 1, **opts)
        else:
            _check(labels, parts, **opts)
        _check(labels, parts, task="detect", **opts)  # the task given: the 9-column rows are invalid boxes
    ds, rep = _whole(labels)
    # the reader drops what it cannot read; the infinite score goes in the shared clip step (every source)
    assert set(rep.dropped_counts()) == {"dropped.no_image", "dropped.ambiguous"}
    assert set(prepare(ds).report.dropped_counts()) == {"dropped.no_image", "dropped.ambiguous", "dropped.nonfinite"}
    if parts == 2:
        _user_sees_read(labels, "c_whole", streams=True)
        _user_sees_read(labels, "c_detect", streams=True, task="detect", images=images)
    # a flat folder with a loose .txt that is no label file (skipped with a note)
    flat = _flat(tmp_path / "flat", _random_labels(6, "detect", seed=14))
    _txt(flat / "notes.txt", "this is not a label file\n")
    _txt(flat / "stray.txt", "0 0.5 0.5 0.1 0.1\n")
    _check(flat, parts)
    assert "file.skipped" in [d.code for d in _whole(flat)[1].diagnostics]


@pytest.mark.parametrize("parts", (1, 3, 10**6))
def test_ultralytics_splits_and_lists(tmp_path: Path, parts: int) -> None:
    rng = np.random.default_rng(15)
    for split, n in (("train", 7), ("val", 4), ("test", 3)):
        for i in range(n):
            _img(tmp_path / "images" / split / f"{split}{i}.jpg", 30 + i, 20 + i)
            if i != 2:
                _txt(tmp_path / "labels" / split / f"{split}{i}.txt",
                     "".join(_row(rng, "detect", 3) + "\n" for _ in range(i % 4)))
    _txt(tmp_path / "labels" / "val" / "lost.txt", "1 0.5 0.5 0.1 0.1\n")  # no image: dropped
    _txt(tmp_path / "test.txt", "".join(f"images/test/test{i}.jpg\n" for i in range(3)) + "images/test/gone.jpg\n")
    _txt(tmp_path / "data.yaml", "path: .\ntrain: images/train\nval: [images/val]\ntest: test.txt\n"
                                 "names: {0: x, 1: y, 2: z}\n")
    chunks = _check(tmp_path, parts)
    assert len(chunks[0].images) >= 1
    _check(tmp_path / "data.yaml", parts, workers=2)


@pytest.mark.parametrize("parts", (1, 2, 10**6))
def test_darknet_obj_data(tmp_path: Path, parts: int) -> None:
    rng = np.random.default_rng(16)
    data = tmp_path / "obj_train_data"
    for i in range(6):
        _img(data / f"f{i}.png", 16 + i, 12)
        if i != 3:
            _txt(data / f"f{i}.txt", "".join(_row(rng, "detect", 2) + "\n" for _ in range(i % 3)))
    _txt(tmp_path / "obj.names", "person\ncar\n")
    _txt(tmp_path / "train.txt", "".join(f"data/obj_train_data/f{i}.png\n" for i in range(6)))
    _txt(tmp_path / "obj.data", "classes = 2\ntrain = train.txt\nnames = obj.names\n")
    _check(tmp_path, parts)


def test_duplicate_names_one_category(tmp_path: Path) -> None:
    src = _flat(tmp_path, _random_labels(8, "detect", seed=17), names=["a", "b", "a", "c"])
    for k in (1, 3, 10**6):
        _check(src, k)


# ---------------------------------------------------------------------------------------------- read whole
def test_four_point_files_then_a_box_file(tmp_path: Path) -> None:
    # read() reads the 9-column files as polygons only when every other file holds polygons; a detect file says
    # not: the 9-column rows are dropped as ambiguous. A part cannot tell: the user gets read()'s result
    rng = np.random.default_rng(18)
    labels = [_row(rng, "segment", 2, points=6) + "\n", _row(rng, "segment", 2, points=4) + "\n",
              _row(rng, "detect", 2) + "\n"]
    src = _flat(tmp_path, labels, names=["a", "b"])
    _check(src, 3)
    _check(src, 1)  # one part: the same as read() (which drops the 9-column rows as ambiguous)
    _, rep = _whole(src)
    assert rep.dropped_counts() == {"dropped.ambiguous": 1}
    _user_sees_read(src, "convert", streams=True)


def test_four_point_files_first_then_polygons(tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    labels = [_row(rng, "segment", 2, points=4) + "\n", _row(rng, "segment", 2, points=6) + "\n"]
    src = _flat(tmp_path, labels, names=["a", "b"])
    _check(src, 2)
    _, rep = _whole(src)
    # img_000 a 4-point polygon (9 columns), img_001 a 6-point one: 2 segment files, the 9-column one among them
    assert rep.dropped == 0 and [(d.code, d.message) for d in rep.diagnostics] == [
        ("task.inferred", "task inferred from the column counts: 2 segment file(s)"),
        ("task.inferred", "1 file(s) with only 9-11 column rows read as polygons like the rest of the dataset; "
                          "pass ReadOptions(task='obb') if they are oriented boxes"),
        ("image.size_from_header", "2 image size(s) read from the image files' headers")]
    _user_sees_read(src, "c1", streams=True)
    # after a box file, a later polygon file cannot make the rest all polygons: dropped as ambiguous
    labels = [_row(rng, "detect", 2) + "\n", _row(rng, "segment", 2, points=4) + "\n",
              _row(rng, "segment", 2, points=6) + "\n"]
    src = _flat(tmp_path / "b", labels, names=["a", "b"])
    _check(src, 3)
    assert _whole(src)[1].dropped_counts() == {"dropped.ambiguous": 1}
    _user_sees_read(src, "c2", streams=True)
    # the task given: every part reads alone
    _check(src, 3, task="segment")
    _user_sees_read(src, "c3", streams=True, task="segment")


@pytest.mark.parametrize("bad", ["0 0.5 x 0.2 0.2\n", "-1 0.5 0.5 0.2 0.2\n", "9 0.5 0.5 0.2 0.2\n",
                                 "0 0.5 0.5\n"])
def test_a_malformed_row_is_dropped_the_same_way_streamed(tmp_path: Path, bad: str) -> None:
    # wherever the malformed row is (first file, last file, beside good rows), the stream drops it as read() does
    good = "0 0.5 0.5 0.2 0.2\n"
    for where, labels in (("last", [good, good, bad]), ("first", [bad, good, good]),
                          ("beside", [good, good + bad + good, good])):
        src = _flat(tmp_path / where, labels, names=["a", "b"])
        for parts in (1, 2, 10**6):
            _check(src, parts)
        ds, rep = _whole(src)
        assert len(ds) == 4 if where == "beside" else len(ds) == 2
        assert rep.dropped_counts() == {"dropped.unknown_category" if bad.startswith("9") else "dropped.invalid": 1}
    _check(tmp_path / "beside", 3, workers=2)


def test_rows_dropped_in_several_files_are_listed_by_file_and_line(tmp_path: Path) -> None:
    # a class index without a name in the first file, a value that is not a number in the last
    src = _flat(tmp_path, ["9 0.5 0.5 0.2 0.2\n", "0 0.5 0.5 0.2 0.2\n", "0 0.5 0.5 0.1 0.1\n0 0.5 oops 0.1 0.1\n"],
                names=["a"])
    for parts in (1, 3):
        _check(src, parts)
    _, rep = _whole(src)
    assert rep.read == 4 and rep.drops[["source", "message"]].values.tolist() == [
        ["img_000.txt:1", "class index 9 has no name (classes.txt lists 1 classes; add it there or give "
                          "ReadOptions(names=...))"],
        ["img_002.txt:2", "not a number: 'oops'"]]


def test_classes_only_in_unsized_images_of_the_last_part(tmp_path: Path) -> None:
    # without names the categories are 0..max; class 5 is only in the label file of the last image, whose
    # size cannot be read: its part has no image, and its category table declares them all
    src = _flat(tmp_path, ["0 0.5 0.5 0.2 0.2\n", "5 0.5 0.5 0.2 0.2\n"], names=None)
    (tmp_path / "img_001.png").write_bytes(b"not a png")
    chunks = _check(src, 2)
    assert [len(c.images) for c in chunks] == [1, 0]
    assert chunks[1].category_names == [str(i) for i in range(6)]
    doc = json.loads(_user_sees_read(src, "convert", streams=True))
    assert [c["name"] for c in doc["categories"]] == ["0", "1", "2", "3", "4", "5"]


# ---------------------------------------------------------------------------------------------- pipeline
def test_progress_counts_the_files_the_parts_read(tmp_path: Path) -> None:
    # 12 images, 10 label files (images 3 and 10 have none): 22 files, in 3 parts of 4 images
    src = _flat(tmp_path, _random_labels(12, "detect", seed=20))
    calls: list[tuple[int, int]] = []
    list(PartStream(yolo, src, options=ReadOptions(), parts=3, progress=lambda d, t: calls.append((d, t))))
    assert calls == [(0, 22), (4 + 3, 22), (7 + 4 + 4, 22), (15 + 4 + 3, 22)]
    # read() counts its label files
    calls.clear()
    yolo.read(src, options=ReadOptions(extra={"progress": lambda d, t: calls.append((d, t))}), report=Report())
    assert calls == [(0, 10), (10, 10)]


@pytest.mark.parametrize("where", ["here", "child"])
def test_parts_read_a_process_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """One worker: the parts read here, or in one process reading ahead of the conversion loop."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if where == "here" else "always")
    src = _flat(tmp_path, _random_labels(15, "segment", seed=21))
    chunks = _check(src, 4, task="segment")  # (the task given: its 4-point polygon files need no whole read)
    assert len(chunks) == 4
    _user_sees_read(src, "convert", streams=True, task="segment")


def test_files_of_9_to_11_columns_stream(tmp_path: Path) -> None:
    # no task: files of 9-11 column rows only are polygons when every other file is one. The first two images
    # (the first part of two) hold nothing else, so a part alone cannot tell: the plan decides it once, from a
    # first pass over every label file, and the parts stream (no stream.whole)
    labels = ["1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n",                # 9: a 4-point polygon
              "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5 0.8\n",            # 10: a 4-point polygon and a score
              "1 0.25 0.25 0.75 0.25 0.75 0.75 0.5 0.9 0.25 0.75\n",  # 11: a 5-point polygon
              "0 0.1 0.2 0.5 0.2 0.3 0.6\n"]                        # 7: a 3-point polygon (0.6 is no track id)
    src = _flat(tmp_path / "src", labels, names=["a", "b"], sizes=[(100, 50), (200, 100), (40, 40), (100, 50)])
    parts = yolo.plan(src, options=ReadOptions(), parts=2)
    assert [[f for f in p.files if f.endswith(".txt")] for p in parts] == [["img_000.txt", "img_001.txt"],
                                                                          ["img_002.txt", "img_003.txt"]]
    for k in (2, 3, 4):
        _check(src, k)
        _check(src, k, workers=2)
    whole, whole_rep = _converted(src, tmp_path / "whole", options=ReadOptions())
    for workers in (1, 2):
        got, rep = _converted(src, tmp_path / f"stream{workers}", options=ReadOptions(), stream=True, chunk_rows=1,
                              workers=workers)
        assert got == whole and rep == whole_rep  # byte for byte, the report in read()'s order
    assert [d["code"] for d in whole_rep["diagnostics"]].count("stream.whole") == 0
    assert [(d["code"], d["message"]) for d in whole_rep["diagnostics"]][:2] == [
        ("task.inferred", "task inferred from the column counts: 4 segment file(s)"),
        ("task.inferred", "3 file(s) with only 9-11 column rows read as polygons like the rest of the dataset; "
                          "pass ReadOptions(task='obb') if they are oriented boxes")]
    coco = json.loads(whole)
    # by hand: x * width, y * height
    assert [(a["image_id"], a["category_id"], a.get("score")) for a in coco["annotations"]] == [
        (1, 2, None), (2, 1, 0.8), (3, 2, None), (4, 1, None)]
    assert [len(a["segmentation"]) for a in coco["annotations"]] == [1, 1, 1, 1]
    for a, want in zip(coco["annotations"], ([10, 5, 90, 5, 90, 45, 10, 45],            # 100 x 50
                                             [20, 10, 100, 10, 100, 50, 20, 50],        # 200 x 100
                                             [10, 10, 30, 10, 30, 30, 20, 36, 10, 30],  # 40 x 40
                                             [10, 10, 50, 10, 30, 30]), strict=True):   # 100 x 50
        assert a["segmentation"][0] == pytest.approx(want)
    np.testing.assert_allclose([a["bbox"] for a in coco["annotations"]],
                               [[10, 5, 80, 40], [20, 10, 80, 40], [10, 10, 20, 26], [10, 10, 40, 20]], atol=1e-9)


def test_the_plans_first_pass_stops_at_a_detect_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a detect file decides it (9-11 column files are then dropped as ambiguous): the pass reads no further run
    labels = ["0 0.5 0.5 0.2 0.2\n"] + ["0 0.5 0.5 0.2 0.2\n"] * 299 + ["0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"]
    src = _flat(tmp_path, labels, names=["a"], sizes=[(10, 10)] * len(labels))
    read: list[str] = []
    real = yolo._read_one

    def counted(path: str) -> bytes:
        read.append(path)
        return real(path)

    monkeypatch.setattr(yolo, "_read_one", counted)
    parts = yolo.plan(src, options=ReadOptions(), parts=2)
    assert len(read) == 256 and [p.context.polygons for p in parts] == [False, False]  # type: ignore[union-attr]
    monkeypatch.undo()
    _check(src, 2)
    assert _whole(src)[1].dropped_counts() == {"dropped.ambiguous": 1}


def test_the_plans_first_pass_judges_valid_rows_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the pass counts values and parses only files that may decide; what decides is their valid rows, as in read()
    four = "1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"
    six = "0 0.1 0.1 0.2 0.1 0.3 0.2 0.3 0.3 0.2 0.3 0.1 0.2\n"  # 13 values: a 6-point polygon
    cases = {"unnamed_box": ([four, "9 0.5 0.5 0.2 0.2\n", six], True),   # class 9 has no name: no detect file
             "box": ([four, "1 0.5 0.5 0.2 0.2\n", six], False),          # a detect file: the 4-point one dropped
             "bad_polygon": ([four, "-1" + six[1:]], False),             # class -1: no polygon file
             "not_a_number": ([four, "0 0.5 0.5 0.2 x\n" + six], True)}  # the box row unread: a polygon file
    for name, (labels, polygons) in cases.items():
        src = _flat(tmp_path / name, labels, names=["a", "b"])
        parts = yolo.plan(src, options=ReadOptions(), parts=len(labels))
        assert [p.context.polygons for p in parts] == [polygons] * len(labels), name  # type: ignore[union-attr]
        _check(src, len(labels))
        assert ("dropped.ambiguous" in _whole(src)[1].dropped_counts()) is not polygons, name
        with monkeypatch.context() as m:  # runs of one file each (the byte cap): the same decision
            m.setattr(yolo, "FIRST_PASS_BYTES", 1)
            assert yolo.plan(src, options=ReadOptions(), parts=2)[1].context.polygons is polygons  # type: ignore[union-attr]


@pytest.mark.parametrize("chunk_rows", (1, 4, 10**6))
def test_convert_streamed_writes_the_same_bytes(tmp_path: Path, chunk_rows: int) -> None:
    labels = _random_labels(20, "segment", seed=22)
    labels[3] = "1 0.5 0.5 0.2 0.2 inf\n"
    src = _flat(tmp_path / "src", labels, names=None)
    for task in ("segment", None):  # no task: its 4-point polygon files make it be read whole (and said so)
        whole, whole_rep = _converted(src, tmp_path / f"whole{task}", options=ReadOptions(task=task))
        for workers in (1, 2):
            streamed, rep = _converted(src, tmp_path / f"stream{workers}{task}", options=ReadOptions(task=task),
                                       stream=True, chunk_rows=chunk_rows, workers=workers)
            assert streamed == whole
            notes = [d["message"] for d in rep["diagnostics"] if d["code"] == "stream.whole"]
            assert notes == []  # no task: the plan decides its 4-point polygon files, the parts stream
            rest = [d for d in rep["diagnostics"] if d["code"] != "stream.whole"]
            assert sorted(map(str, whole_rep["diagnostics"])) == sorted(map(str, rest))
            assert {k: v for k, v in whole_rep.items() if k != "diagnostics"} == \
                {k: v for k, v in rep.items() if k != "diagnostics"}


def _png(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def test_an_infinite_sixth_value_is_a_score_not_a_track_id(tmp_path: Path) -> None:
    """`inf` is not a whole number: the 6th column of this file is a score, and the infinite one is dropped as
    non-finite (it used to become track_id inf, written as null). Checked by hand: 2 rows, 1 kept."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(_png(100, 50))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2 inf\n0 0.25 0.5 0.1 0.2 3\n")
    (tmp_path / "classes.txt").write_text("cat\n")
    res = convert(tmp_path, tmp_path / "out.json", fmt="yolo", stream=True, chunk_rows=1)
    doc = json.loads((tmp_path / "out.json").read_bytes())
    assert [(a["bbox"], a["score"], a.get("attributes")) for a in doc["annotations"]] == [
        ([20.0, 20.0, 10.0, 10.0], 3.0, None)]
    assert res.report.dropped_counts() == {"dropped.nonfinite": 1}
