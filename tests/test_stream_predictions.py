"""Streaming prediction tables: the engine's stream of the plan's parts (``PartStream``: row ranges cut between
images, read here or in a pool) must give ``read()``'s dataset and report, cut into whole images.

The reference is ``read()`` of the same table (the same builder, on every row at once, where each part reads
its own rows with what the plan decided for the whole table: the common folder of absolute image names,
normalized or pixels, indices or names in the class column; the parts' reports are merged at the end). The
first cases are also checked value by value against numbers worked out by hand from the table, and the
streaming pipeline is checked to write the bytes the whole-dataset pipeline writes. A table the plan cannot cut
(an image's rows not together, a header alone) is one part: the stream is ``read()`` itself.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from chunk_equality import converted, frames_equal, reports_equal, same_error, streamed
from PIL import Image

from prelabel import pipeline
from prelabel.adapters import predictions as pred
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.engine import PartStream
from prelabel.engine.stream import parts_for
from prelabel.errors import ReadError, UsageError
from prelabel.model import Dataset
from prelabel.pipeline import convert
from prelabel.report import Report

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "predictions" / "predictions.csv"
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax,score\n"
PARTS = (1, 2, 3, 5, 10**6)


# ---------------------------------------------------------------------------------------------- comparing
def _options(**opts: Any) -> ReadOptions:
    opts.pop("workers", None)
    return ReadOptions(**opts)


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return pred.read(path, options=_options(**opts), report=report), report


def _stream(path: Path, parts: int, **opts: Any) -> tuple[list[Dataset], Report]:
    """The table streamed in up to ``parts`` parts, in a pool of ``workers`` when given."""
    return streamed(pred, path, _options(**opts), parts=parts, workers=opts.get("workers"))


def _check(path: Path, parts: int, **opts: Any) -> list[Dataset]:
    """Parts of whole images, rows in table order; their concatenation and the merged report equal ``read()``'s,
    with one worker and with two."""
    ds, rep = _whole(path, **opts)
    results = []
    for workers in (1, 2):
        chunks, srep = _stream(path, parts, **{**opts, "workers": workers})
        assert chunks
        for c in chunks:
            img = c.annotations["image"].to_numpy()
            assert ((img >= 0) & (img < len(c.images))).all()
            assert (np.diff(c.annotations["src_line"].to_numpy()) > 0).all()  # rows in table order
        got = Dataset.concat(chunks, report=srep)
        for name in ("images", "categories", "annotations"):
            frames_equal(getattr(got, name), getattr(ds, name), name)
        assert got.category_names == ds.category_names
        reports_equal(srep, rep)
        results.append(chunks)
    # the same parts whatever reads them
    assert [c.images["file_name"].tolist() for c in results[0]] == [c.images["file_name"].tolist() for c in results[1]]
    return results[0]


def _n_parts(path: Path, parts: int, **opts: Any) -> int:
    return len(pred.plan(path, options=_options(**opts), parts=parts))


def _same_error(path: Path, parts: int, **opts: Any) -> ReadError:
    """read() and the stream raise the same ReadError."""
    return same_error(lambda: _whole(path, **opts), lambda: _stream(path, parts, **opts))


def _read_whole(path: Path, parts: int, reason: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, **opts: Any) -> None:
    """A part raises NeedsWholeRead (``reason``): the streamed conversion, one image a part, writes what the whole
    conversion writes, its report saying it read the table whole."""
    with pytest.raises(NeedsWholeRead) as e:
        _stream(path, parts, **opts)
    assert e.value.reason == reason
    options = _options(**opts)
    whole, whole_rep = _convert(tmp, "whole", path, options=options)
    monkeypatch.setattr(pipeline, "STREAM_PART_BYTES", 1)   # parts of one byte: one image each
    streamed, rep = _convert(tmp, "streamed", path, options=options, stream=True, chunk_rows=1)
    assert streamed == whole
    notes = [d for d in rep["diagnostics"] if d["code"] == "stream.whole"]
    assert [d["message"] for d in notes] == [f"read whole, not streamed: {reason}"]
    assert {**rep, "diagnostics": [d for d in rep["diagnostics"] if d not in notes]} == whole_rep


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def _grouped_rows(n_images: int, *, seed: int, per_image: tuple[int, int] = (1, 6)) -> list[str]:
    """Rows grouped by image (1-5 boxes each), random boxes, classes and scores."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for _ in range(int(rng.integers(*per_image))):
            x1, y1 = rng.uniform(0, 50, 2)
            w, h = rng.uniform(1, 30, 2)
            rows.append(f"img_{i:04d}.jpg,64,48,{['cat', 'dog', 'car'][int(rng.integers(3))]},"
                        f"{x1:.2f},{y1:.2f},{x1 + w:.2f},{y1 + h:.2f},{rng.uniform():.3f}")
    return rows


# ---------------------------------------------------------------------------------------------- by hand
def test_sample_in_parts_checked_by_hand() -> None:
    # the sample: street.jpg lines 2-3, park.png 4-5, portrait.jpg 6, room.png 7-8 (rows 0-6)
    chunks = _check(SAMPLE, 2)
    # two parts: about 7 // 2 = 3 rows each, cut where an image starts at or after row 3: park.png's row 2 is
    # before it, portrait.jpg's row 4 is the cut -> rows 0-3 (street, park) and 4-6 (portrait, room)
    assert [(p.start, p.stop) for p in pred.plan(SAMPLE, options=ReadOptions(), parts=2)] == [(0, 4), (4, 7)]
    assert [ds.images["file_name"].tolist() for ds in chunks] == [["street.jpg", "park.png"],
                                                                  ["portrait.jpg", "room.png"]]
    assert [ds.annotations["src_line"].tolist() for ds in chunks] == [[2, 3, 4, 5], [6, 7, 8]]
    assert [ds.annotations["image"].tolist() for ds in chunks] == [[0, 0, 1, 1], [0, 1, 1]]
    # a part's categories: its own rows' names in first-seen order (the writer numbers them as they come)
    assert [ds.category_names for ds in chunks] == [["car", "person", "dog", "cat"], ["cat", "dog"]]
    # park.png 6,14,40,42 -> x, y, w, h = 6, 14, 34, 28; room.png 40,10,70,40 -> 40, 10, 30, 30
    assert chunks[0].annotations[["x", "y", "w", "h"]].to_numpy().tolist()[2] == [6, 14, 34, 28]
    assert chunks[1].annotations[["x", "y", "w", "h"]].to_numpy().tolist()[2] == [40, 10, 30, 30]
    assert chunks[0].images[["width", "height"]].to_numpy().tolist() == [[96, 64], [64, 48]]
    assert chunks[1].images[["width", "height"]].to_numpy().tolist() == [[32, 48], [80, 48]]
    assert chunks[1].annotations["score"].tolist() == [0.95, 0.72, 0.58]
    assert _stream(SAMPLE, 2)[1].read == 7


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7, 8, 1000])
def test_sample_every_part_count(parts: int) -> None:
    chunks = _check(SAMPLE, parts)
    # 3 parts: rows 7 * 1 // 3 = 2 and 7 * 2 // 3 = 4 -> cuts at park.png (row 2) and portrait.jpg (row 4)
    want = {1: [4], 2: [2, 2], 3: [1, 1, 2]}.get(parts, [1, 1, 1, 1])   # 4 parts and more: one image each
    assert [len(ds.images) for ds in chunks] == want


def test_image_longer_than_a_part_stays_whole(tmp_path: Path) -> None:
    rows = ([f"a.jpg,64,48,cat,{i},1,{i + 5},9,0.5" for i in range(7)] + ["b.jpg,64,48,dog,1,1,5,5,0.5"]
            + ["c.jpg,64,48,dog,1,1,5,5,0.5"] * 2)
    p = _write(tmp_path / "p.csv", rows)
    # 3 parts of 10 rows: rows 3 and 6 are inside a.jpg (rows 0-6), so both cuts go to b.jpg's first row, 7
    chunks = _check(p, 3)
    assert [ds.images["file_name"].tolist() for ds in chunks] == [["a.jpg"], ["b.jpg", "c.jpg"]]
    assert chunks[0].annotations["src_line"].tolist() == [2, 3, 4, 5, 6, 7, 8]
    assert chunks[1].annotations["src_line"].tolist() == [9, 10, 11]
    # a.jpg 6,1,11,9 -> x, y, w, h = 6, 1, 5, 8
    assert chunks[0].annotations[["x", "y", "w", "h"]].to_numpy().tolist()[6] == [6, 1, 5, 8]


# ---------------------------------------------------------------------------------------------- generated
@pytest.mark.parametrize("parts", [1, 5, 17, 64, 100_000])
def test_generated_grouped_csv(tmp_path: Path, parts: int) -> None:
    rows = _grouped_rows(60, seed=3)
    chunks = _check(_write(tmp_path / "p.csv", rows), parts)
    # a cut goes at the first image start at or after each k * rows / parts: one image a part at most
    assert len(chunks) == {1: 1, 5: 5, 17: 17, 100_000: 60}.get(parts, len(chunks)) <= min(parts, 60)
    if parts == 5:  # about len(rows) / 5 rows each, give or take an image (at most 5 rows)
        assert all(abs(len(ds) - len(rows) / 5) <= 5 for ds in chunks)


def test_tsv_and_image_id_column(tmp_path: Path) -> None:
    p = tmp_path / "p.tsv"
    p.write_text("image_id\tclass_id\tx\ty\tw\th\timg_w\timg_h\n"
                 + "".join(f"{i // 3}\t{i % 2}\t1\t2\t3\t4\t64\t48\n" for i in range(20)))
    chunks = _check(p, 4)
    assert len(chunks) == 4
    assert chunks[0].images["file_name"].tolist()[0] == "0"
    assert chunks[0].category_names[:2] == ["0", "1"]


def test_rows_not_grouped_are_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image whose rows are not together: read() makes one image of them, parts cannot: the plan's one part
    asks for the whole read, and the streamed conversion says why."""
    rows = ["a.jpg,64,48,cat,1,1,5,5,0.5", "b.jpg,64,48,cat,1,1,5,5,0.5", "c.jpg,64,48,cat,1,1,5,5,0.5",
            "a.jpg,64,48,dog,2,2,6,6,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    assert _n_parts(p, 2) == 1
    _read_whole(p, 2, "rows of image 'a.jpg' are not grouped together (line 5)", tmp_path, monkeypatch)
    # a.jpg's rows (lines 2 and 5) are one image, the first
    ds = _whole(p)[0]
    assert ds.images["file_name"].tolist() == ["a.jpg", "b.jpg", "c.jpg"]
    assert ds.annotations["image"].tolist() == [0, 1, 2, 0]
    assert _check(p, 1)[0].annotations["image"].tolist() == [0, 1, 2, 0]   # one part asked for: read()


def test_image_without_a_size_coming_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["c.jpg,,,cat,1,1,5,5,0.5", "a.jpg,64,48,cat,1,1,5,5,0.5", "c.jpg,,,dog,1,1,5,5,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    assert _n_parts(p, 3) == 1
    _read_whole(p, 3, "rows of image 'c.jpg' are not grouped together (line 4)", tmp_path, monkeypatch)
    assert _whole(p)[1].drops["source"].tolist() == [f"{p}:2", f"{p}:4"]


def test_blank_lines_are_skipped_as_read_does(tmp_path: Path) -> None:
    rows = [f"i{k // 3}.jpg,64,48,cat,1,1,5,5,0.5\n" + ("\n" if k % 4 == 3 else "") for k in range(20)]
    p = tmp_path / "p.csv"
    p.write_text(HEADER + "".join(rows))
    for parts in (1, 2, 5, 7):
        assert _n_parts(p, parts) == parts
        _check(p, parts)
    assert _whole(p)[0].annotations["src_line"].tolist()[-1] == 21  # 20 rows: lines 2-21, blank lines not counted


def test_two_spellings_of_one_image_in_two_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["a.jpg,64,48,cat,1,1,5,5,0.5", "b.jpg,64,48,cat,1,1,5,5,0.5", "./a.jpg,64,48,dog,2,2,6,6,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    assert _n_parts(p, 3) == 1   # ./a.jpg is a.jpg: its rows are not together
    _read_whole(p, 3, "rows of image 'a.jpg' are not grouped together (line 4)", tmp_path, monkeypatch)
    assert _whole(p)[0].images["file_name"].tolist() == ["a.jpg", "b.jpg"]


def test_header_only(tmp_path: Path) -> None:
    p = _write(tmp_path / "p.csv", [])
    chunks = _check(p, 3)
    assert len(chunks) == 1 and len(chunks[0].images) == 0 and _stream(p, 3)[1].read == 0
    q = tmp_path / "q.csv"
    q.write_text("filename,width,height,class_id,xmin,ymin,xmax,ymax\n")
    chunks = _check(q, 3, names=["cat", "dog"])
    assert chunks[0].category_names == ["cat", "dog"]


def test_empty_file_is_the_same_read_error(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("")
    assert "the file is empty" in str(_same_error(p, 2))


@pytest.mark.parametrize("bad", ["a.jpg,64,48,cat,1,1,5,5,0.5,extra,more", "a.jpg,64,48,\"cat,1,1,5,5,0.5"])
def test_parse_error_late_in_the_table_is_the_same_read_error(tmp_path: Path, bad: str) -> None:
    rows = _grouped_rows(10, seed=1)
    p = _write(tmp_path / "p.csv", [*rows, bad, "z.jpg,64,48,cat,1,1,5,5,0.5"])
    err = _same_error(p, 4)
    assert "not a valid table" in str(err)
    with pytest.raises(ReadError) as converted:   # the conversion reports exactly read()'s error
        convert(p, tmp_path / "o.json", fmt="predictions", stream=True, chunk_rows=4)
    assert str(converted.value) == str(err)
    assert not (tmp_path / "o.json").exists()


def test_bad_cells_drop_their_rows_streamed_as_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad height (line 3) and a width of true (line 4): both rows are dropped at their lines, the rest
    converts, and the streamed conversion reports what read() does (checked by hand)."""
    p = _write(tmp_path / "p.csv", ["a.jpg,64,48,cat,1,1,5,5,0.5", "b.jpg,64,abc,cat,1,1,5,5,0.5",
                                    "c.jpg,true,48,cat,1,1,5,5,0.5", "d.jpg,64,48,cat,1,1,5,5,0.5"])
    want = [["dropped.invalid", f"{p}:3", "column 'height' (height): 'abc' is not a number"],
            ["dropped.invalid", f"{p}:4", "column 'width' (width): 'true' is not a number"]]
    assert _whole(p)[1].drops[["reason", "source", "message"]].values.tolist() == want
    res = convert(p, tmp_path / "o.json", fmt="predictions", stream=True, chunk_rows=1)
    assert res.report.drops[["reason", "source", "message"]].values.tolist() == want
    assert res.report.balanced and res.report.written == 2
    _check(p, 2)   # parts of two rows: the width column holds true and 64 in the second, text as in read()
    # a part of c.jpg's row alone reads its width column as true/false (bool), which read() reads as text:
    # that part asks for the whole table, and the conversion says it read it whole
    _read_whole(p, 4, "column 'width' holds true/false values", tmp_path, monkeypatch)


def test_a_column_of_true_is_not_a_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas reads a column of true / false as bool; as a width it is not 1: each row is dropped."""
    p = _write(tmp_path / "p.csv", ["a.jpg,true,48,cat,1,1,5,5,0.5", "b.jpg,false,48,cat,1,1,5,5,0.5"])
    ds, rep = _whole(p)
    assert len(ds.annotations) == 0
    assert rep.drops[["source", "message"]].values.tolist() == [
        [f"{p}:2", "column 'width' (width): True is not a number"],
        [f"{p}:3", "column 'width' (width): False is not a number"]]
    # a part cannot tell a column of true / false from one with true in it: read whole
    _read_whole(p, 2, "column 'width' holds true/false values", tmp_path, monkeypatch)


def test_drops_spread_over_parts(tmp_path: Path) -> None:
    rows = [
        "a.jpg,64,48,cat,1,1,5,5,0.5",
        ",64,48,cat,1,1,5,5,0.5",            # no image name
        "b.jpg,64,48,,1,1,5,5,0.5",          # no category
        "b.jpg,64,48,dog,nan,1,5,5,0.5",     # NaN box
        "c.jpg,,,cat,1,1,5,5,0.5",           # no size
        "c.jpg,,,dog,1,1,5,5,0.5",
        "../d.jpg,64,48,cat,1,1,5,5,0.5",    # unsafe name
        "e.jpg,64,48,cat,1,1,5,5,inf",       # infinite score
        "e.jpg,64,48,,2,2,6,6,0.1",
        "f.jpg,64,48,cat,1,1,inf,5,0.5",
        "g.jpg,64,48,dog,1,1,5,5,0.5",
        ",64,48,dog,1,1,5,5,0.5",
    ]
    p = _write(tmp_path / "p.csv", rows)
    for parts in (1, 2, 3, 5, 100):
        _check(p, parts)
    chunks, report = _stream(p, 100)
    # a part starts at an image's first row: a, b, c, e, f, g (../d.jpg is no image: no cut before it); b's,
    # c's and f's rows are all dropped
    assert [ds.annotations["src_line"].tolist() for ds in chunks] == [[2], [], [], [9], [], [12]]
    assert [len(ds.images) for ds in chunks] == [1, 1, 0, 1, 1, 1]
    # the drops come in read()'s order (by reason, then line), not part by part
    assert report.drops[["reason", "source"]].values.tolist() == [
        ["dropped.no_image", f"{p}:3"], ["dropped.no_image", f"{p}:6"], ["dropped.no_image", f"{p}:7"],
        ["dropped.no_image", f"{p}:8"], ["dropped.no_image", f"{p}:13"],
        ["dropped.unknown_category", f"{p}:4"], ["dropped.unknown_category", f"{p}:10"],
        ["dropped.nonfinite", f"{p}:5"], ["dropped.nonfinite", f"{p}:11"]]
    assert report.read == 12 and sum(len(ds) for ds in chunks) == 3
    # the infinite score (line 9) is dropped by the shared clip step, as for every source
    from prelabel.converters.clip import clip

    clipped = clip(Dataset.concat(chunks, report=report))
    assert len(clipped) == 2
    assert clipped.report.drops[["reason", "source", "message"]].values.tolist()[-1] == [
        "dropped.nonfinite", f"{p}:9", "score is infinite"]
    # b.jpg and e.jpg have a size but every row dropped: they are still images, as in read()
    assert [n for ds in chunks for n in ds.images["file_name"]] == ["a.jpg", "b.jpg", "e.jpg", "f.jpg", "g.jpg"]


def test_polygons_recomputed_in_several_parts(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text('image,class,xmin,ymin,xmax,ymax,width,height,polygon\n'
                 'a.jpg,cat,0,0,10,10,64,48,"[1,1,9,1,9,9]"\n'
                 'a.jpg,cat,1,1,9,9,64,48,"[1,1,9,1,9,9]"\n'
                 'b.jpg,dog,0,0,10,10,64,48,"[2,2,8,2,8,8]"\n'
                 'c.jpg,dog,0,0,10,10,64,48,"[2,2,4]"\n')
    assert _n_parts(p, 4) == 3   # one image each
    chunks = _check(p, 4)
    _, report = _stream(p, 4)
    assert report.changes[["reason", "source"]].values.tolist() == [
        ["recomputed", f"{p}:2"], ["recomputed", f"{p}:4"], ["repaired", f"{p}:5"]]
    # line 2: the polygon's box 1,1,9,9 -> x, y, w, h = 1, 1, 8, 8 (the columns said 0, 0, 10, 10); line 5
    # keeps its box (a polygon of 1.5 points is removed)
    assert chunks[0].annotations[["x", "y", "w", "h"]].to_numpy().tolist()[0] == [1, 1, 8, 8]
    assert chunks[2].annotations[["x", "y", "w", "h"]].to_numpy().tolist() == [[0, 0, 10, 10]]


# ---------------------------------------------------------------------------------------------- categories
def test_index_categories_without_names(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("filename,width,height,class_id,xmin,ymin,xmax,ymax\n"
                 + "".join(f"i{k // 2}.jpg,64,48,{[3, 0, 7][k % 3]},1,1,5,5\n" for k in range(11)))
    chunks = _check(p, 3)
    assert Dataset.concat(chunks).category_names == ["3", "0", "7"]


def test_index_categories_with_names_and_gaps(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("filename,width,height,class_id,xmin,ymin,xmax,ymax\n"
                 + "".join(f"i{k // 2}.jpg,64,48,{[2, 0, 5, 1][k % 4]},1,1,5,5\n" for k in range(13)))
    chunks = _check(p, 3, names=["cat", "dog", "car"])
    # the names first, in index order, in every part; index 5 is not in names: dropped
    assert [ds.category_names for ds in chunks] == [["cat", "dog", "car"]] * 3
    _, report = _stream(p, 3, names=["cat", "dog", "car"])
    assert report.drops[["source", "message"]].values.tolist() == [
        [f"{p}:{k + 2}", "class index 5 is not in names (0..2)"] for k in range(13) if k % 4 == 2]
    _check(p, 2, names={0: "cat", 2: "car"})   # a mapping with a gap: index 1 is unknown too


def test_numeric_class_column_with_names(tmp_path: Path) -> None:
    # a "class" column of numbers is an index when names are given, text names otherwise
    p = tmp_path / "p.csv"
    p.write_text(HEADER + "".join(f"i{k}.jpg,64,48,{k % 2},1,1,5,5,0.5\n" for k in range(6)))
    assert [ds.category_names for ds in _check(p, 3, names=["cat", "dog"])] == [["cat", "dog"]] * 3
    assert Dataset.concat(_check(p, 3)).category_names == ["0", "1"]


def test_class_column_numbers_then_text_is_decided_by_the_whole_column(tmp_path: Path) -> None:
    """With names, a class column of numbers holds indices, one with a name in it holds names (read() sees
    the whole column): the plan decides it once, so the parts of numbers alone read them as names too."""
    rows = [f"i{k}.jpg,64,48,{k % 2},1,1,5,5,0.5" for k in range(4)] + ["i9.jpg,64,48,dog,1,1,5,5,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    assert _n_parts(p, 5, names=["cat", "dog"]) == 5
    chunks = _check(p, 5, names=["cat", "dog"])
    # the names first, then "0", "1" as names of their own; "dog" is the name of index 1
    assert Dataset.concat(chunks).category_names == ["cat", "dog", "0", "1"]
    assert [c for ds in chunks for c in ds.annotations["category"]] == ["0", "1", "0", "1", "dog"]
    _check(p, 5)               # without names the column is text anyway


def test_empty_class_cells_do_not_decide_the_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["a.jpg,64,48,,1,1,5,5,0.5", "b.jpg,64,48,,1,1,5,5,0.5", "c.jpg,64,48,1,1,1,5,5,0.5",
            "d.jpg,64,48,0,1,1,5,5,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    chunks = _check(p, 1, names=["cat", "dog"])
    assert [c for ds in chunks for c in ds.annotations["category"]] == ["dog", "cat"]
    # the plan's first box out of [0, 1] (line 2: pixels) is on a row read() drops, and so is every row of its
    # part: whether the boxes are pixels is read()'s to say
    _read_whole(p, 2, "whether the boxes are normalized is decided by the whole table", tmp_path, monkeypatch,
                names=["cat", "dog"])
    q = _write(tmp_path / "q.csv", [*rows[2:], *rows[:2]])   # the rows without a class last: parts
    assert [c for ds in _check(q, 4, names=["cat", "dog"]) for c in ds.annotations["category"]] == ["dog", "cat"]


# ---------------------------------------------------------------------------------------------- normalized
def test_normalized_boxes_noted_once(tmp_path: Path) -> None:
    rows = [f"i{k // 2}.jpg,64,48,cat,0.1,0.2,0.{3 + k % 5},0.9,0.5" for k in range(10)]
    p = _write(tmp_path / "p.csv", rows)
    chunks = _check(p, 3)
    report = _stream(p, 3)[1]
    assert [d.code for d in report.diagnostics] == ["coordinates.suspect"]
    assert "every box value is within [0, 1]" in report.diagnostics[0].message
    # 0.1 of 64 px, 0.2 of 48; xmax 0.3 -> w = (0.3 - 0.1) * 64
    assert chunks[0].annotations[["x", "y", "w"]].to_numpy().tolist()[0] == pytest.approx([6.4, 9.6, 12.8])


def test_normalized_then_pixels_reads_pixels(tmp_path: Path) -> None:
    rows = [f"i{k}.jpg,64,48,cat,0.1,0.2,0.5,0.9,0.5" for k in range(4)] + ["z.jpg,64,48,cat,1,2,30,40,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    # line 6 (z.jpg) is not within [0, 1]: every box is pixels, those of the first parts too
    chunks = _check(p, 2)
    assert chunks[0].annotations["x"].iloc[0] == pytest.approx(0.1)
    assert _stream(p, 2)[1].diagnostics == []
    _check(p, 2, normalized=False)
    _check(p, 100)


def test_pixels_first_decides_at_once(tmp_path: Path) -> None:
    rows = ["a.jpg,64,48,cat,1,2,30,40,0.5"] + [f"i{k}.jpg,64,48,cat,0.1,0.2,0.5,0.9,0.5" for k in range(4)]
    _check(_write(tmp_path / "p.csv", rows), 5)


def test_explicit_normalized_with_large_values_noted_once_with_the_largest(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"i{k}.jpg,64,48,cat,0.1,0.2,{k + 2},0.9,0.5" for k in range(5)]
    p = _write(tmp_path / "p.csv", rows)
    assert _n_parts(p, 2, normalized=True) == 2
    _check(p, 2, normalized=True)
    notes = _stream(p, 2, normalized=True)[1].diagnostics
    # the largest value, 6 (line 6, in the last part), once
    assert len(notes) == 1 and "box values reach 6:" in notes[0].message
    # the largest value on a row read() drops (no category): the note names the largest it keeps, 5
    q = _write(tmp_path / "q.csv", [*rows[:4], "i4.jpg,64,48,,0.1,0.2,6,0.9,0.5", "i5.jpg,64,48,cat,0.1,0.2,1,1,0"])
    assert "box values reach 5:" in _whole(q, normalized=True)[1].diagnostics[0].message
    # the plan took 6 (line 6): its part finds the row dropped, and the table is read whole
    _read_whole(q, 3, "the largest box value (line 6) is on a row read() does not keep", tmp_path, monkeypatch,
                normalized=True)


def test_polygon_before_any_finite_box(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text('image,class,xmin,ymin,xmax,ymax,width,height,polygon\n'
                 'a.jpg,cat,,,,,64,48,"[0.1,0.1,0.9,0.1,0.9,0.9]"\n'
                 'b.jpg,cat,0.1,0.1,0.5,0.5,64,48,\n')
    # the plan sees every box of the table: b.jpg's says normalized, a.jpg's polygon (part 1) is read so
    chunks = _check(p, 2)
    assert chunks[0].annotations[["x", "y", "w", "h"]].to_numpy().tolist() == [pytest.approx([6.4, 4.8, 51.2, 38.4])]
    _check(p, 2, normalized=True)
    _check(p, 5)


# ---------------------------------------------------------------------------------------------- the plan's pieces
@pytest.mark.parametrize("case", ["absolute", "class numbers then text", "pixels late", "normalized",
                                  "largest late", "not grouped late", "blank lines, quotes, CRLF", "parquet"])
def test_the_plan_reads_the_table_a_piece_at_a_time(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """The plan reads the columns it needs a few rows at a time (and the CSV's bytes a block at a time): what
    the whole table decides is decided over every piece, as read() decides it."""
    monkeypatch.setattr(pred, "_SCAN_ROWS", 3)
    monkeypatch.setattr(pred, "_RECORD_BLOCK", 7)
    opts: dict[str, Any] = {}
    rows = [f"i{k // 2}.jpg,64,48,cat,0.1,0.2,0.5,0.{k % 9 + 1},0.5" for k in range(20)]
    if case == "absolute":
        rows = [f"/data/{'ab'[k // 10]}/{k // 2 % 3}/x{k // 2}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(20)]
    elif case == "class numbers then text":
        rows = [f"i{k // 2}.jpg,64,48,{k % 2},1,1,5,5,0.5" for k in range(19)] + ["i99.jpg,64,48,dog,1,1,5,5,0.5"]
        opts = {"names": ["cat", "dog"]}
    elif case == "pixels late":
        rows[16] = "i8.jpg,64,48,cat,1,2,30,40,0.5"
    elif case == "largest late":
        rows[17] = "i8.jpg,64,48,cat,0.1,0.2,9.5,0.9,0.5"
        rows[3] = "i1.jpg,64,48,cat,0.1,0.2,9,0.9,0.5"
        opts = {"normalized": True}
    elif case == "not grouped late":
        rows.append("i2.jpg,64,48,cat,1,1,5,5,0.5")
    p = _write(tmp_path / "p.csv", rows)
    if case == "blank lines, quotes, CRLF":
        p.write_bytes((HEADER.rstrip("\n") + ",polygon\r\n" + "".join(
            r + (',"[1, 1,\r\n9, 1, 9, 9]"' if k % 3 == 1 else ",") + "\r\n" + ("  \r\n" if k % 5 == 2 else "")
            for k, r in enumerate(rows))).encode())
    if case == "parquet":
        pytest.importorskip("pyarrow")
        q = tmp_path / "p.parquet"
        pd.read_csv(p).to_parquet(q, row_group_size=4)
        p = q
    parts = pred.plan(p, options=_options(**opts), parts=5)
    if case == "not grouped late":   # line 22: i2.jpg again, after the rows of nine other images
        assert len(parts) == 1 and parts[0].context.unsplit == "rows of image 'i2.jpg' are not grouped together (line 22)"
        with pytest.raises(NeedsWholeRead):
            _stream(p, 5, **opts)
        return
    assert len(parts) == 5
    _check(p, 5, **opts)
    rep = _whole(p, **opts)[1]
    if case == "absolute":   # the common folder of every piece's names
        assert [d.message.split(" (e.g.")[0] for d in rep.diagnostics] == [
            "10 absolute image path(s) written relative to /data"]
    if case == "largest late":
        assert "box values reach 9.5:" in rep.diagnostics[0].message
    if case == "normalized":
        assert [d.code for d in rep.diagnostics] == ["coordinates.suspect"]
    if case == "pixels late":
        assert rep.diagnostics == []


# ---------------------------------------------------------------------------------------------- images
def _png(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)


def test_sizes_from_the_images_folder(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for k in range(7):
        _png(root / f"i{k}.png", (40 + k, 30 + k))
    p = tmp_path / "p.csv"
    p.write_text("image,class,xmin,ymin,xmax,ymax\n"
                 + "".join(f"i{k // 2}.png,cat,1,1,9,9\n" for k in range(16)))  # i7.png is not there
    chunks = _check(p, 3, images=root)
    report = _stream(p, 3, images=root)[1]
    # each part counts its own headers: the note adds them up
    assert [(d.code, d.message) for d in report.diagnostics] == [
        ("image.size_from_header", "7 image size(s) read from the image files' headers")]
    # shown at the first row of the first image whose header was read (i0.png, line 2), as a whole read shows it
    assert [d.source for d in report.diagnostics] == [d.source for d in _whole(p, images=root)[1].diagnostics] == [
        f"{p}:2"]
    assert report.drops["source"].tolist() == [f"{p}:16", f"{p}:17"]
    assert report.drops["message"].tolist() == [
        f"image 'i7.png' has no known size: no width/height columns or image_sizes, and no such file under {root}"] * 2
    sizes = [tuple(r) for ds in chunks for r in ds.images[["width", "height"]].to_numpy().tolist()]
    assert sizes == [(40 + k, 30 + k) for k in range(7)]
    # absolute paths under the root are found there too
    q = tmp_path / "q.csv"
    q.write_text("image,class,xmin,ymin,xmax,ymax\n" + "".join(f"{root}/i{k}.png,cat,1,1,9,9\n" for k in range(7)))
    _check(q, 2, images=root)


def test_absolute_paths_outside_the_root_use_the_whole_tables_common_folder(tmp_path: Path) -> None:
    rows = ([f"/data/set/a/x{k}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(4)]
            + [f"/data/set/b/y{k}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(3)] + ["rel.jpg,64,48,cat,1,1,5,5,0.5"])
    p = _write(tmp_path / "p.csv", rows)
    chunks = _check(p, 4)
    # the first part only holds /data/set/a/...: still named relative to /data/set, the whole table's folder
    assert chunks[0].images["file_name"].tolist() == ["a/x0.jpg", "a/x1.jpg"]
    notes = _stream(p, 4)[1].diagnostics
    assert [(d.code, d.message.split(" (e.g.")[0]) for d in notes] == [
        ("image.unsafe_name", "7 absolute image path(s) written relative to /data/set")]
    assert "'/data/set/a/x0.jpg' -> 'a/x0.jpg'" in notes[0].message


# ---------------------------------------------------------------------------------------------- parquet
def test_parquet_in_row_groups(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    rows = _grouped_rows(40, seed=5)
    df = pd.read_csv(_write(tmp_path / "p.csv", rows))
    p = tmp_path / "p.parquet"
    df.to_parquet(p, row_group_size=9)   # parts cut inside row groups too
    for parts in (1, 3, 7, 50, 10_000):
        chunks = _check(p, parts)
    assert len(chunks) == 40
    assert chunks[0].annotations["src_line"].iloc[0] == 1   # Parquet rows are 1-based


def test_parquet_with_a_stored_index_categorical_labels_and_class_indices(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(1)
    n = 50
    df = pd.DataFrame({"image": [f"i{k // 4}.jpg" for k in range(n)],
                       "label": pd.Categorical(rng.choice(["cat", "dog"], n)),
                       "x": rng.uniform(0, 20, n), "y": 1.0, "w": 3.0, "h": 4.0, "img_w": 64, "img_h": 48},
                      index=pd.Index(np.arange(100, 100 + n), name="label_id"))  # stored as a column
    p = tmp_path / "idx.parquet"
    df.to_parquet(p, row_group_size=7)
    for parts in (1, 3, 10, 1000):
        _check(p, parts)
    q = tmp_path / "cls.parquet"
    df.reset_index(drop=True).drop(columns="label").assign(cls=rng.integers(0, 3, n)).to_parquet(q)
    for parts in (2, 13):
        _check(q, parts, names=["a", "b"])   # index 2 is not in names: dropped
        _check(q, parts)


def test_not_a_parquet_file_is_reads_error(tmp_path: Path) -> None:
    p = tmp_path / "p.parquet"
    p.write_bytes(b"not parquet at all")
    assert "cannot read Parquet" in str(_same_error(p, 2))


# ---------------------------------------------------------------------------------------------- arguments
def test_bad_arguments(tmp_path: Path) -> None:
    assert "not a file" in str(_same_error(tmp_path / "missing.csv", 2))
    for bad in (0, -1, True, 2.0):
        with pytest.raises(UsageError, match="chunk_rows must be a positive integer"):
            convert(SAMPLE, tmp_path / "o.json", fmt="predictions", stream=True, chunk_rows=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the pipeline
def _convert(tmp: Path, name: str, src: Path, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    return converted(tmp, name, src, fmt="predictions", **kw)


def _spread(tmp: Path) -> Path:
    """Grouped rows with drops of every kind, polygons, scores to filter, a blank line."""
    rows = _grouped_rows(80, seed=7)
    rows[10] = ",64,48,cat,1,1,5,5,0.5"
    rows[40] = rows[40].replace(",64,48,", ",,,")        # no size
    rows[55] = rows[55].rsplit(",", 1)[0] + ",inf"       # an infinite score
    rows[70] = rows[70].replace("dog", "").replace("cat", "").replace("car", "")   # no category
    rows.insert(30, "")
    return _write(tmp / "spread.csv", [r + "," for r in rows[:60]] + [r + ',"[1, 1, 9, 1, 9, 9]"' for r in rows[60:]],
                  header=HEADER.rstrip("\n") + ",polygon\n")


@pytest.mark.parametrize("where", ["here", "ahead"])
def test_streamed_conversion_writes_the_whole_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         where: str) -> None:
    """The CLI's streaming conversion writes the same bytes and report as reading whole (drops, changes,
    scores filtered, shards), with the parts read here or a process ahead."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if where == "here" else "always")
    src = _spread(tmp_path)
    kw: dict[str, Any] = {"min_score": 0.2, "max_file_size": 6000}
    whole, whole_rep = _convert(tmp_path, "whole", src, **kw)
    assert len(whole) > 2 and whole_rep["ledger"]["balanced"] is True
    assert set(whole_rep["dropped"]) == {"dropped.no_image", "dropped.unknown_category", "dropped.min_score",
                                         "dropped.nonfinite"}
    assert set(whole_rep["changed"]) == {"recomputed", "clipped"}
    notes = [d.to_dict() for d in _whole(src)[1].diagnostics]
    for k in (1, 7, 200, 10**9):
        streamed, rep = _convert(tmp_path, f"stream{k}", src, stream=True, chunk_rows=k, **kw)
        assert streamed == whole, k
        assert {**rep, "diagnostics": None} == {**whole_rep, "diagnostics": None}, k
        # the same entries; the reader's notes first, in read()'s order (the steps' drops follow, part by part in
        # the stream, so their order may differ)
        assert sorted(map(json.dumps, rep["diagnostics"])) == sorted(map(json.dumps, whole_rep["diagnostics"]))
        assert rep["diagnostics"][:len(notes)] == whole_rep["diagnostics"][:len(notes)] == notes


@pytest.mark.parametrize("case", ["normalized", "normalized option", "bbox", "parquet", "names", "absolute"])
def test_streamed_conversion_of_tables_the_plan_decides(case: str, tmp_path: Path) -> None:
    """What the whole table decides, streamed in parts of a few rows: the bytes and report of the whole read."""
    opts = ReadOptions()
    rows = _grouped_rows(30, seed=11)
    if case.startswith("normalized"):
        rows = [f"i{k // 3}.jpg,64,48,cat,0.1,0.2,0.{3 + k % 5},0.9,0.5" for k in range(40)]
        if case == "normalized option":
            rows[33] = "i11.jpg,64,48,cat,0.1,0.2,7.5,0.9,0.5"   # the note names 7.5
            opts = ReadOptions(normalized=True)
        src = _write(tmp_path / "p.csv", rows)
    elif case == "bbox":
        src = _write(tmp_path / "p.csv", [f'i{k // 2}.jpg,64,48,cat,"[{k % 9}, 2, 10, 5]"' for k in range(40)],
                     header="filename,width,height,class,bbox\n")
    elif case == "parquet":
        pytest.importorskip("pyarrow")
        src = tmp_path / "p.parquet"
        pd.read_csv(_write(tmp_path / "p.csv", rows)).to_parquet(src, row_group_size=13)
    elif case == "names":
        src = _write(tmp_path / "p.csv", [f"i{k // 2}.jpg,64,48,{k % 4},1,1,5,5,0.5" for k in range(40)])
        opts = ReadOptions(names=["cat", "dog", "car"])   # index 3: dropped
    else:
        src = _write(tmp_path / "p.csv", [f"/far/{k % 3}/i{k // 2}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(40)])
    whole, whole_rep = _convert(tmp_path, "whole", src, options=opts)
    assert whole_rep["ledger"]["balanced"] is True
    for k in (1, 7, 10**9):
        streamed, rep = _convert(tmp_path, f"stream{k}", src, options=opts, stream=True, chunk_rows=k)
        assert streamed == whole, k
        assert rep == whole_rep, k
    if case.startswith("normalized"):
        assert whole_rep["diagnostics"][0]["code"] == "coordinates.suspect"
        assert ("box values reach 7.5:" in whole_rep["diagnostics"][0]["message"]) == (case == "normalized option")


def test_the_command_line_streams_through_part_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`prelabel convert preds.csv` reads the plan's parts with the engine's PartStream: parts of about
    ``part_bytes`` of the table (STREAM_PART_BYTES for the default chunk_rows, less for fewer rows), never the
    whole table at once."""
    from click.testing import CliRunner

    from prelabel.cli import main

    seen: list[tuple[int, int]] = []   # (parts asked for, rows of the largest part read)

    class Recording(PartStream):
        def __iter__(self) -> Any:
            rows = 0
            for tables in super().__iter__():
                rows = max(rows, len(tables[2]))
                yield tables
            seen.append((self.parts, rows))

    monkeypatch.setattr(pipeline, "PartStream", Recording)
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0")
    src = _write(tmp_path / "p.csv", _grouped_rows(2000, seed=2))   # about 6,000 rows, 230 kB
    size = src.stat().st_size
    res = CliRunner().invoke(main, ["-q", "convert", str(src), "-o", str(tmp_path / "o.json"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert seen == [(1, len(pd.read_csv(src)))]   # under 4 MB: one part
    assert parts_for(src, workers=1) == 1
    seen.clear()
    # chunk_rows=500: parts of 4 MB * 500 / 50,000 = 42 kB, rows cut between images (up to 5 rows each)
    convert(src, tmp_path / "s.json", fmt="predictions", stream=True, chunk_rows=500)
    part = 4 * 2**20 * 500 // 50_000
    n = -(-size // part)
    assert seen[0][0] == n > 3
    assert len(pd.read_csv(src)) / n <= seen[0][1] < len(pd.read_csv(src)) / n + 5
    assert (tmp_path / "s.json").read_bytes() == (tmp_path / "o.json").read_bytes()


def test_a_part_holds_at_most_a_chunk_of_rows_whatever_was_asked(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a few MB of a table can hold hundreds of thousands of rows: the plan cuts parts of about DEFAULT_CHUNK_ROWS
    # rows (100 here) even when fewer parts were asked. 350 images of one row each, asked for 2 parts: 4, cut
    # at 350 * k // 4 = 87, 175, 262 (every row starts an image)
    monkeypatch.setattr(pred, "DEFAULT_CHUNK_ROWS", 100)
    rows = "\n".join(f"img_{i:03d}.jpg,cat,1,2,11,12,0.5,64,48" for i in range(350))
    src = tmp_path / "preds.csv"
    src.write_text("image,category,x1,y1,x2,y2,score,width,height\n" + rows + "\n")
    parts = pred.plan(src, options=ReadOptions(), parts=2)
    assert [(p.start, p.stop) for p in parts] == [(0, 87), (87, 175), (175, 262), (262, 350)]
    got = [pred.read_part(p, options=ReadOptions()) for p in parts]
    assert [len(ds.annotations) for ds in got] == [87, 88, 87, 88]
    assert got[3].images["file_name"].tolist()[0] == "img_262.jpg"


def test_a_parquet_file_of_many_rows_is_cut_even_when_one_part_is_asked(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # a Parquet file packs its rows in a few bytes (the stream asks for parts by bytes: 1 here) and often in one
    # row group: its metadata's row count makes the plan cut it (DEFAULT_CHUNK_ROWS = 100 here), and a part reads
    # its own rows of the row group, a batch at a time. 350 one-row images: 4 parts cut at 87, 175, 262
    monkeypatch.setattr(pred, "DEFAULT_CHUNK_ROWS", 100)
    monkeypatch.setattr(pred, "_PARQUET_BATCH", 30)  # parts that start and end inside a batch
    df = pd.DataFrame({"image": [f"img_{i:03d}.jpg" for i in range(350)], "category": "cat", "x1": 1.0,
                       "y1": 2.0, "x2": [11.0 + i % 7 for i in range(350)], "y2": 12.0, "score": 0.5, "width": 64,
                       "height": 48})
    src = tmp_path / "preds.parquet"
    df.to_parquet(src, index=False)
    assert importlib.import_module("pyarrow.parquet").ParquetFile(src).metadata.num_row_groups == 1
    parts = pred.plan(src, options=ReadOptions(), parts=1)
    assert [(p.start, p.stop) for p in parts] == [(0, 87), (87, 175), (175, 262), (262, 350)]
    got = [pred.read_part(p, options=ReadOptions()) for p in parts]
    assert [ds.images["file_name"].tolist()[0] for ds in got] == ["img_000.jpg", "img_087.jpg", "img_175.jpg",
                                                                  "img_262.jpg"]
    # each row's box: x2 - x1 = 10 + i % 7 for image i
    widths = [w for ds in got for w in ds.annotations["w"].tolist()]
    assert widths == [10.0 + i % 7 for i in range(350)]
    # a file of fewer rows than a chunk is one part
    df.head(100).to_parquet(src, index=False)
    assert [(p.start, p.stop) for p in pred.plan(src, options=ReadOptions(), parts=1)] == [(0, 0)]


def test_parquet_plan_leaves_the_process_able_to_fork(tmp_path: Path) -> None:
    """The plan scans a Parquet file on its own thread: Arrow's thread pools would leave threads in the process,
    which then starts the engine's workers from a fork server instead of forking them (about a second more)."""
    pytest.importorskip("pyarrow")
    import subprocess
    import sys

    p = tmp_path / "p.parquet"
    n = 5000
    pd.DataFrame({"filename": [f"i{k // 5}.jpg" for k in range(n)], "width": 64, "height": 48, "class": "cat",
                  "xmin": 1.0, "ymin": 2.0, "xmax": 9.0, "ymax": 8.0}).to_parquet(p)
    code = ("import prelabel.cli\n"  # first: the command line's thread settings, before numpy is imported
            "from pathlib import Path\n"
            "from prelabel.adapters import predictions\n"
            "from prelabel.adapters.base import ReadOptions\n"
            "from prelabel.workers import os_threads, start_method\n"
            f"parts = predictions.plan(Path({str(p)!r}), options=ReadOptions(), parts=4)\n"
            "print(len(parts), os_threads(), start_method())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["4", "1", "fork"]
