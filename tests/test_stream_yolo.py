"""Streaming the YOLO adapter: ``iter_chunks`` must give ``read()``'s dataset and report, cut into whole images.

The reference is ``read()``, which is checked against hand-worked values and the public fixtures in
test_yolo.py (and is the same per-batch code run once on every label file). Each case here compares the
concatenated chunks with ``read()`` of the same source: images, every annotation column (``src_file`` and
``src_line`` included), the category table in order, and the two reports (counts, drops, notes, in order). The
cases run with the real batch sizes (a small dataset is one batch) and with batches of one chunk each
(``small_batches``), so that everything ``read()`` decides from the whole dataset is decided across batches.
One small case is checked value by value against numbers worked out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chunk_equality import frames_equal, reports_equal
from PIL import Image

from prelabel.adapters import yolo
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.errors import ReadError, UsageError
from prelabel.model import Dataset
from prelabel.pipeline import convert, prepare
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "yolo"
DATUMARO = Path("yolo/cvat-ai__datumaro/tests/assets/yolo_dataset")
DAGSHUB = Path("yolo/DagsHub__dagshub-annotation-converter/tests/fs_import/yolo/res")
SIZES = (1, 2, 3, 5, 10**6)


# ---------------------------------------------------------------------------------------------- comparing


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return yolo.read(path, options=ReadOptions(**opts), report=report), report


def _stream(path: Path, chunk_rows: int, **opts: Any) -> tuple[list[Dataset], Report]:
    report = Report()
    chunks = list(yolo.iter_chunks(path, options=ReadOptions(**opts), report=report, chunk_rows=chunk_rows))
    assert all(c.report is report for c in chunks)
    return chunks, report


def _check(path: Path, chunk_rows: int, **opts: Any) -> list[Dataset]:
    """Chunks of whole images whose concatenation, and the report, equal ``read()``'s; the chunks."""
    ds, rep = _whole(path, **opts)
    chunks, srep = _stream(path, chunk_rows, **opts)
    assert chunks
    for c in chunks:
        img = c.annotations["image"].to_numpy()
        assert ((img >= 0) & (img < len(c.images))).all()
        assert len(c.images) >= 1 or len(chunks) == 1 and len(ds.images) == 0
        assert (np.diff(img) >= 0).all()  # rows in image order, as read() has them
    got = Dataset.concat(chunks, report=srep)
    frames_equal(got.images, ds.images, "images")
    frames_equal(got.annotations, ds.annotations, "annotations")
    frames_equal(got.categories, ds.categories, "categories")
    assert got.category_names == ds.category_names
    reports_equal(srep, rep)
    return chunks


@pytest.fixture(params=["batches", "small_batches"])
def batches(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real batch sizes, or batches of one chunk each (every chunk is parsed on its own)."""
    if request.param == "small_batches":
        monkeypatch.setattr(yolo, "_BATCH_ROWS", 1)
        monkeypatch.setattr(yolo, "_BATCH_IMAGES", 1)
    return str(request.param)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yolo, "_BATCH_ROWS", 1)
    monkeypatch.setattr(yolo, "_BATCH_IMAGES", 1)


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
    # chunk_rows=2: a has 2 rows -> closed after a; b (0 rows, 1 image), c (1 row, 2 images) -> closed after c
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
    report = chunks[0].report
    assert report.read == 3 and report.dropped == 0
    assert [(d.code, d.source, d.message) for d in report.diagnostics] == [
        ("task.inferred", str(tmp_path), "task inferred from the column counts: 2 detect file(s)"),
        ("image.unlabeled", "b.png", "no label file: kept with no annotations")]


def test_chunks_close_at_the_first_image_boundary_past_chunk_rows(tmp_path: Path, batches: str) -> None:
    # rows per image: 3, 0 (no file), 1, 1, 2, 0 (empty file), 5, 1
    counts = [3, None, 1, 1, 2, 0, 5, 1]
    labels = [None if n is None else "".join(f"0 0.5 0.5 0.1 0.{k + 1}\n" for k in range(n)) for n in counts]
    src = _flat(tmp_path, labels)
    # chunk_rows=2: image 0 has 3 rows -> [0]; images 1-2 are 2 images -> [1, 2]; images 3-4 have 3 rows ->
    # [3, 4]; images 5-6 have 5 rows -> [5, 6]; the end -> [7]
    chunks = _check(src, 2)
    assert [c.images["file_name"].str[4:7].tolist() for c in chunks] == [
        ["000"], ["001", "002"], ["003", "004"], ["005", "006"], ["007"]]
    # chunk_rows=4: 3 + 0 + 1 rows -> [0-2]; 1 + 2 + 0 rows in 3 images, then 5 -> [3-6]; the end -> [7]
    chunks = _check(src, 4)
    assert [len(c.images) for c in chunks] == [3, 4, 1]
    assert [len(c) for c in chunks] == [4, 8, 1]
    assert len(_check(src, 10**6)) == 1


def test_usage_errors(tmp_path: Path) -> None:
    for bad in (0, -1, True, 2.5):
        with pytest.raises(UsageError):
            list(yolo.iter_chunks(SAMPLE, options=ReadOptions(), report=Report(), chunk_rows=bad))  # type: ignore[arg-type]
    with pytest.raises(ReadError, match="no such file"):
        list(yolo.iter_chunks(tmp_path / "nope", options=ReadOptions(), report=Report()))


# ---------------------------------------------------------------------------------------------- sample and fixtures
@pytest.mark.parametrize("chunk_rows", SIZES)
def test_sample_data(chunk_rows: int, batches: str) -> None:
    chunks = _check(SAMPLE, chunk_rows)
    if chunk_rows == 1:
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


@pytest.mark.parametrize("chunk_rows", (1, 2, 10**6))
@pytest.mark.parametrize("rel,opts", FIXTURES, ids=[f"{p}-{sorted(o)}" for p, o in FIXTURES])
def test_fixtures(fixtures_dir: Path, rel: Path, opts: dict[str, Any], chunk_rows: int) -> None:
    def under(v: Any) -> Any:
        return fixtures_dir / v if isinstance(v, Path) else v

    opts = {k: ({kk: under(vv) for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in opts.items()}
    _check(fixtures_dir / rel, chunk_rows, **opts)


def test_the_whole_datumaro_folder_in_small_batches(fixtures_dir: Path, small_batches: None) -> None:
    for k in (1, 2, 3):
        _check(fixtures_dir / DATUMARO, k)


# ---------------------------------------------------------------------------------------------- generated datasets
@pytest.mark.parametrize("chunk_rows", SIZES)
def test_detect_with_unlabeled_empty_scores_and_tracks(tmp_path: Path, chunk_rows: int, batches: str) -> None:
    labels = _random_labels(40, "detect", seed=1)
    rng = np.random.default_rng(2)
    labels[10] = "".join(_row(rng, "detect", 4, score=True) + "\n" for _ in range(3))  # scores
    labels[11] = "".join(_row(rng, "detect", 4, score=True, track=True) + "\n" for _ in range(2))  # + track ids
    labels[12] = "0 0.5 0.5 0.2 0.2 7\n1 0.5 0.5 0.2 0.2 12\n"   # one whole extra column above 1: track ids
    labels[13] = "0 0.5 0.5 0.2 0.2 inf\n1 0.5 0.5 0.2 0.2 0.5\n"  # an infinite score: dropped.nonfinite
    labels[14] = "\n\n2 0.5 0.5 0.2 0.2\n\n3 nan 0.5 0.2 0.2\n"   # empty lines: src_line counts them
    labels[30] = "3 0.5 0.5 0.2 0.2 inf\n"
    src = _flat(tmp_path, labels)
    chunks = _check(src, chunk_rows)
    if chunk_rows == 1:
        assert len(chunks) == 40


@pytest.mark.parametrize("chunk_rows", SIZES)
def test_segment_with_box_rows_and_4_point_files(tmp_path: Path, chunk_rows: int, batches: str) -> None:
    labels = _random_labels(30, "segment", seed=3)
    rng = np.random.default_rng(4)
    labels[0] = _row(rng, "segment", 4) + "\n" + _row(rng, "detect", 4) + "\n"  # polygons and boxes mixed
    labels[6] = _row(rng, "segment", 4, points=4) + "\n"   # 9 columns only: read as polygons like the rest
    labels[8] = _row(rng, "segment", 4, score=True) + "\n"  # an even count: the last value is a score
    labels[20] = _row(rng, "segment", 4, points=4) + "\n" + _row(rng, "segment", 4, points=4, score=True) + "\n"
    ds = _check(_flat(tmp_path, labels), chunk_rows)
    assert ds


@pytest.mark.parametrize("chunk_rows", (1, 3, 10**6))
def test_obb_and_ambiguous_files(tmp_path: Path, chunk_rows: int, batches: str) -> None:
    labels = _random_labels(20, "obb", seed=5)
    src = _flat(tmp_path / "obb", labels)
    _check(src, chunk_rows, task="obb")
    _, rep = _whole(src)
    assert "dropped.ambiguous" in rep.dropped_counts()  # no task: every file is ambiguous, every row dropped
    _check(src, chunk_rows)
    # detect files and 9-column files: the 9-column rows are dropped as ambiguous
    mixed = _random_labels(20, "detect", seed=6)
    rng = np.random.default_rng(7)
    for i in (2, 9, 15):
        mixed[i] = _row(rng, "obb", 4) + "\n" + _row(rng, "obb", 4, score=True) + "\n"
    _check(_flat(tmp_path / "mixed", mixed), chunk_rows)


@pytest.mark.parametrize("kpt", [(3, 3), (2, 2), (4, 3)])
@pytest.mark.parametrize("chunk_rows", (1, 2, 10**6))
def test_pose_with_kpt_shape_names_and_skeleton(tmp_path: Path, kpt: tuple[int, int], chunk_rows: int,
                                                batches: str) -> None:
    labels = _random_labels(25, "pose", seed=8, kpt=kpt)
    rng = np.random.default_rng(9)
    labels[5] = "".join(_row(rng, "pose", 4, kpt=kpt, score=True) + "\n" for _ in range(2))  # predictions
    src = _flat(tmp_path, labels, names=None)
    k = kpt[0]
    _txt(tmp_path / "data.yaml", json.dumps({
        "names": ["a", "b", "c", "d"], "kpt_shape": list(kpt), "kpt_names": [f"p{j}" for j in range(k)],
        "skeleton": [[j, j + 1] for j in range(k - 1)]}))
    chunks = _check(src, chunk_rows)
    assert chunks[0].categories["keypoints"].iloc[0] == [f"p{j}" for j in range(k)]


@pytest.mark.parametrize("chunk_rows", (1, 2, 10**6))
def test_pose_kpt_shape_inferred(tmp_path: Path, chunk_rows: int, batches: str) -> None:
    # the first three images have no label rows: the chunks wait until the keypoint count is known
    labels: list[str | None] = [None, "", None, *_random_labels(12, "pose", seed=10, kpt=(4, 3))]
    src = _flat(tmp_path / "v", labels)
    chunks = _check(src, chunk_rows, task="pose")
    assert all(c.categories["keypoints"].iloc[0] == ["kp0", "kp1", "kp2", "kp3"] for c in chunks)
    # 12 values: 6 points of 2 or 4 of 3; the third values are not all 0/1/2 -> [6, 2]
    rng = np.random.default_rng(11)
    rows = [" ".join(["0"] + [_f(v) for v in rng.uniform(0.1, 0.9, 16)]) + "\n" for _ in range(10)]
    _check(_flat(tmp_path / "x", rows), chunk_rows, task="pose")
    # no row at all: no keypoint count, categories without keypoints, as read() has them
    _check(_flat(tmp_path / "e", [None, "", ""]), chunk_rows, task="pose")


@pytest.mark.parametrize("chunk_rows", (1, 2, 10**6))
def test_names_missing_classes_by_index(tmp_path: Path, chunk_rows: int, batches: str) -> None:
    labels = _random_labels(12, "detect", seed=12, n_cls=3)
    labels[9] = "7 0.5 0.5 0.1 0.1\n"      # a class first seen late: categories 0..7 (3..6 never used)
    src = _flat(tmp_path, labels, names=None)
    chunks = _check(src, chunk_rows)
    assert chunks[-1].category_names == [str(i) for i in range(8)]
    # and the orphan label files (no image) count for the class range too
    _txt(tmp_path / "zzz_orphan.txt", "11 0.5 0.5 0.1 0.1\n")
    chunks = _check(src, chunk_rows)
    assert chunks[0].category_names == [str(i) for i in range(12)]


@pytest.mark.parametrize("chunk_rows", (1, 2, 10**6))
def test_drops_spread_over_files(tmp_path: Path, chunk_rows: int, batches: str) -> None:
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
    _check(labels, chunk_rows)
    _check(labels, chunk_rows, images=images)  # the images root given
    ds, rep = _whole(labels)
    # the reader drops what it cannot read; the infinite score goes in the shared clip step (every source)
    assert set(rep.dropped_counts()) == {"dropped.no_image", "dropped.ambiguous"}
    assert set(prepare(ds).report.dropped_counts()) == {"dropped.no_image", "dropped.ambiguous", "dropped.nonfinite"}
    # a flat folder with a loose .txt that is no label file (skipped with a note)
    flat = _flat(tmp_path / "flat", _random_labels(6, "detect", seed=14))
    _txt(flat / "notes.txt", "this is not a label file\n")
    _txt(flat / "stray.txt", "0 0.5 0.5 0.1 0.1\n")
    _check(flat, chunk_rows)
    assert "file.skipped" in [d.code for d in _whole(flat)[1].diagnostics]


@pytest.mark.parametrize("chunk_rows", (1, 3, 10**6))
def test_ultralytics_splits_and_lists(tmp_path: Path, chunk_rows: int, batches: str) -> None:
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
    chunks = _check(tmp_path, chunk_rows)
    assert len(chunks[0].images) >= 1
    _check(tmp_path / "data.yaml", chunk_rows)


@pytest.mark.parametrize("chunk_rows", (1, 2, 10**6))
def test_darknet_obj_data(tmp_path: Path, chunk_rows: int, batches: str) -> None:
    rng = np.random.default_rng(16)
    data = tmp_path / "obj_train_data"
    for i in range(6):
        _img(data / f"f{i}.png", 16 + i, 12)
        if i != 3:
            _txt(data / f"f{i}.txt", "".join(_row(rng, "detect", 2) + "\n" for _ in range(i % 3)))
    _txt(tmp_path / "obj.names", "person\ncar\n")
    _txt(tmp_path / "train.txt", "".join(f"data/obj_train_data/f{i}.png\n" for i in range(6)))
    _txt(tmp_path / "obj.data", "classes = 2\ntrain = train.txt\nnames = obj.names\n")
    _check(tmp_path, chunk_rows)


def test_duplicate_names_one_category(tmp_path: Path, batches: str) -> None:
    src = _flat(tmp_path, _random_labels(8, "detect", seed=17), names=["a", "b", "a", "c"])
    for k in (1, 10**6):
        _check(src, k)


# ---------------------------------------------------------------------------------------------- read whole
def test_four_point_files_then_a_box_file_needs_a_whole_read(tmp_path: Path, small_batches: None) -> None:
    # read() reads the 9-column files as polygons only when every other file holds polygons; the first batches
    # say they do, a later detect file says not: rows already handed out would change
    rng = np.random.default_rng(18)
    labels = [_row(rng, "segment", 2, points=6) + "\n", _row(rng, "segment", 2, points=4) + "\n",
              _row(rng, "detect", 2) + "\n"]
    src = _flat(tmp_path, labels, names=["a", "b"])
    with pytest.raises(NeedsWholeRead, match="img_002.txt"):
        _stream(src, 1)
    _check(src, 10**6)  # one batch: the same as read() (which drops the 9-column rows as ambiguous)
    _, rep = _whole(src)
    assert rep.dropped_counts() == {"dropped.ambiguous": 1}


def test_four_point_files_first_then_polygons_needs_a_whole_read(tmp_path: Path, small_batches: None) -> None:
    rng = np.random.default_rng(19)
    labels = [_row(rng, "segment", 2, points=4) + "\n", _row(rng, "segment", 2, points=6) + "\n"]
    src = _flat(tmp_path, labels, names=["a", "b"])
    with pytest.raises(NeedsWholeRead, match="9-11 column"):
        _stream(src, 1)
    _, rep = _whole(src)
    assert rep.dropped == 0 and "like the rest of the dataset" in rep.diagnostics[0].message
    # after a box file, a later polygon file cannot make the rest all polygons: no whole read
    labels = [_row(rng, "detect", 2) + "\n", _row(rng, "segment", 2, points=4) + "\n",
              _row(rng, "segment", 2, points=6) + "\n"]
    _check(_flat(tmp_path / "b", labels, names=["a", "b"]), 1)


def test_inferred_kpt_shape_contradicted_needs_a_whole_read(tmp_path: Path, small_batches: None) -> None:
    # 11 values per point set: 6 -> [2, 3] when every third value is 0/1/2 (first file) ...
    first = "0 0.5 0.5 0.2 0.2 0.1 0.2 2 0.3 0.4 1\n"
    later = "0 0.5 0.5 0.2 0.2 0.1 0.2 0.7 0.3 0.4 0.6\n"  # ... but this file's are not: [3, 2] for the whole
    src = _flat(tmp_path / "dim", [first, later])
    with pytest.raises(NeedsWholeRead, match="kpt_shape"):
        _stream(src, 1, task="pose")
    _check(src, 10**6, task="pose")
    # a later file with another column count: read() raises, the stream asks for read()
    src = _flat(tmp_path / "cols", [first, "0 0.5 0.5 0.2 0.2 0.1 0.2 2\n"])
    with pytest.raises(NeedsWholeRead, match="kpt_shape"):
        _stream(src, 1, task="pose")
    with pytest.raises(ReadError, match="kpt_shape"):
        _whole(src, task="pose")
    # the other way round: the whole has [3, 2] from the first file on, a later 0/1/2 file changes nothing
    _check(_flat(tmp_path / "ok", [later, first]), 1, task="pose")


@pytest.mark.parametrize("bad", ["0 0.5 x 0.2 0.2\n", "-1 0.5 0.5 0.2 0.2\n", "9 0.5 0.5 0.2 0.2\n",
                                 "0 0.5 0.5\n"])
def test_a_malformed_row_is_dropped_the_same_way_streamed(tmp_path: Path, bad: str, small_batches: None) -> None:
    # wherever the malformed row is (first file, last file, beside good rows), the stream drops it as read() does
    good = "0 0.5 0.5 0.2 0.2\n"
    for where, labels in (("last", [good, good, bad]), ("first", [bad, good, good]),
                          ("beside", [good, good + bad + good, good])):
        src = _flat(tmp_path / where, labels, names=["a", "b"])
        for chunk_rows in (1, 2, 10**6):
            _check(src, chunk_rows)
        ds, rep = _whole(src)
        assert len(ds) == 4 if where == "beside" else len(ds) == 2
        assert rep.dropped_counts() == {"dropped.unknown_category" if bad.startswith("9") else "dropped.invalid": 1}


def test_rows_dropped_in_several_files_are_listed_by_file_and_line(tmp_path: Path, small_batches: None) -> None:
    # a class index without a name in the first file, a value that is not a number in the last
    src = _flat(tmp_path, ["9 0.5 0.5 0.2 0.2\n", "0 0.5 0.5 0.2 0.2\n", "0 0.5 0.5 0.1 0.1\n0 0.5 oops 0.1 0.1\n"],
                names=["a"])
    _check(src, 1)
    _, rep = _whole(src)
    assert rep.read == 4 and rep.drops[["source", "message"]].values.tolist() == [
        ["img_000.txt:1", "class index 9 has no name (classes.txt lists 1 classes; add it there or give "
                          "ReadOptions(names=...))"],
        ["img_002.txt:2", "not a number: 'oops'"]]


def test_classes_only_in_unsized_images_after_the_last_chunk(tmp_path: Path, small_batches: None) -> None:
    # without names the categories are 0..max; class 5 is only in the label file of the last image, whose
    # size cannot be read: no chunk is left to declare it
    src = _flat(tmp_path, ["0 0.5 0.5 0.2 0.2\n", "5 0.5 0.5 0.2 0.2\n"], names=None)
    (tmp_path / "img_001.png").write_bytes(b"not a png")
    with pytest.raises(NeedsWholeRead, match="classes 1 to 5"):
        _stream(src, 1)
    _check(src, 10**6)


# ---------------------------------------------------------------------------------------------- pipeline
def test_progress_is_reported_as_read_reports_it(tmp_path: Path) -> None:
    src = _flat(tmp_path, _random_labels(12, "detect", seed=20))
    calls_whole: list[tuple[int, int]] = []
    calls_stream: list[tuple[int, int]] = []
    yolo.read(src, options=ReadOptions(extra={"progress": lambda d, t: calls_whole.append((d, t))}),
              report=Report())
    list(yolo.iter_chunks(src, options=ReadOptions(extra={"progress": lambda d, t: calls_stream.append((d, t))}),
                          report=Report(), chunk_rows=2))
    assert calls_stream == calls_whole == [(0, 10), (10, 10)]


@pytest.mark.parametrize("chunk_rows", (1, 4, 10**6))
def test_convert_streamed_writes_the_same_bytes(tmp_path: Path, chunk_rows: int) -> None:
    labels = _random_labels(20, "segment", seed=22)
    labels[3] = "1 0.5 0.5 0.2 0.2 inf\n"
    src = _flat(tmp_path / "src", labels, names=None)
    outs = []
    for stream in (False, True):
        out = tmp_path / f"out_{stream}" / "coco.json"
        rep = out.parent / "report.json"
        convert(src, out, stream=stream, chunk_rows=chunk_rows, report_path=rep)
        outs.append((out.read_bytes(), json.loads(rep.read_bytes())))
    assert outs[0][0] == outs[1][0]
    whole, streamed = outs[0][1], outs[1][1]
    for r in (whole, streamed):
        r["output"]["files"] = [Path(f).name for f in r["output"]["files"]]
    assert not any(d["code"] == "stream.whole" for d in streamed["diagnostics"])
    assert sorted(map(str, whole["diagnostics"])) == sorted(map(str, streamed["diagnostics"]))
    assert {k: v for k, v in whole.items() if k != "diagnostics"} == \
        {k: v for k, v in streamed.items() if k != "diagnostics"}


def test_an_infinite_sixth_value_is_a_score_not_a_track_id(tmp_path: Path) -> None:
    """`inf` is not a whole number: the 6th column of this file is a score, and the infinite one is dropped as
    non-finite (it used to become track_id inf, written as null). Checked by hand: 2 rows, 1 kept."""
    from prelabel.pipeline import convert

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    import struct
    import zlib

    def png(w: int, h: int) -> bytes:
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))

    (tmp_path / "images" / "a.png").write_bytes(png(100, 50))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2 inf\n0 0.25 0.5 0.1 0.2 3\n")
    (tmp_path / "classes.txt").write_text("cat\n")
    res = convert(tmp_path, tmp_path / "out.json", fmt="yolo", stream=True, chunk_rows=1)
    doc = json.loads((tmp_path / "out.json").read_bytes())
    assert [(a["bbox"], a["score"], a.get("attributes")) for a in doc["annotations"]] == [
        ([20.0, 20.0, 10.0, 10.0], 3.0, None)]
    assert res.report.dropped_counts() == {"dropped.nonfinite": 1}
