"""Streaming prediction tables: ``iter_chunks`` must give, chunk by chunk, exactly what ``read()`` gives.

Every case compares the concatenated chunks with ``read()`` of the same file (images, annotation columns
including ``src_line``, category names in order) and the two reports (read count, drops, changes, notes);
the first tests check the chunks themselves by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from prelabel.adapters import predictions as pred
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.errors import ReadError, UsageError
from prelabel.model import Dataset
from prelabel.report import Report

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "predictions" / "predictions.csv"
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax,score\n"


def _chunks(path: Path, chunk_rows: int, **opts: object) -> tuple[list[Dataset], Report]:
    report = Report()
    return list(pred.iter_chunks(path, options=ReadOptions(**opts), report=report, chunk_rows=chunk_rows)), report


def _same_as_read(path: Path, chunk_rows: int, **opts: object) -> list[Dataset]:
    """Assert that the chunks of ``path`` put together are ``read()`` of it, reports included; the chunks."""
    whole_report = Report()
    whole = pred.read(path, options=ReadOptions(**opts), report=whole_report)
    chunks, report = _chunks(path, chunk_rows, **opts)
    assert chunks, "at least one chunk"
    assert all(ds.report is report for ds in chunks)
    for ds in chunks:  # each chunk: whole images, its rows pointing into its own images table
        a = ds.annotations["image"].to_numpy()
        assert len(ds.images) >= 1 or len(chunks) == 1
        assert ((a >= 0) & (a < len(ds.images))).all()
    got = Dataset.concat(chunks, report=report)   # the one shared report, not merged once per chunk
    pd.testing.assert_frame_equal(got.images, whole.images)
    pd.testing.assert_frame_equal(got.annotations, whole.annotations)
    pd.testing.assert_frame_equal(got.categories, whole.categories)
    assert got.category_names == whole.category_names
    assert report.read == whole_report.read
    pd.testing.assert_frame_equal(report.drops, whole_report.drops)
    pd.testing.assert_frame_equal(report.changes, whole_report.changes)
    assert report.diagnostics == whole_report.diagnostics
    assert report.to_dict() == whole_report.to_dict()
    return chunks


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def _grouped_rows(n_images: int, *, seed: int, per_image: tuple[int, int] = (1, 6)) -> list[str]:
    """Rows grouped by image (1-5 boxes each), random boxes and classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for _ in range(int(rng.integers(*per_image))):
            x1, y1 = rng.uniform(0, 50, 2)
            w, h = rng.uniform(1, 30, 2)
            rows.append(f"img_{i:04d}.jpg,64,48,{['cat', 'dog', 'car'][int(rng.integers(3))]},"
                        f"{x1:.2f},{y1:.2f},{x1 + w:.2f},{y1 + h:.2f},{rng.uniform():.3f}")
    return rows


# ------------------------------------------------------------------------------------------ by hand
def test_sample_in_chunks_checked_by_hand():
    # the sample: street.jpg lines 2-3, park.png 4-5, portrait.jpg 6, room.png 7-8
    chunks = _same_as_read(SAMPLE, 2)
    # pieces of 2 rows: lines 2-3 (street, street: all one image, kept for the next piece), 4-5 (park, park:
    # street is complete -> chunk 1, park kept), 6-7 (portrait, room: park + portrait -> chunk 2, room kept),
    # 8 (a short piece: the file's end -> room is chunk 3)
    assert [ds.images["file_name"].tolist() for ds in chunks] == [
        ["street.jpg"], ["park.png", "portrait.jpg"], ["room.png"]]
    assert [ds.annotations["src_line"].tolist() for ds in chunks] == [[2, 3], [4, 5, 6], [7, 8]]
    assert [ds.annotations["image"].tolist() for ds in chunks] == [[0, 0], [0, 0, 1], [0, 0]]
    # categories declared so far, in first-seen order: car, person; then dog, cat
    assert [ds.category_names for ds in chunks] == [["car", "person"], ["car", "person", "dog", "cat"],
                                                    ["car", "person", "dog", "cat"]]
    # park.png 6,14,40,42 -> x, y, w, h = 6, 14, 34, 28
    assert chunks[1].annotations[["x", "y", "w", "h"]].to_numpy().tolist()[0] == [6, 14, 34, 28]
    assert chunks[1].images[["width", "height"]].to_numpy().tolist() == [[64, 48], [32, 48]]
    assert chunks[0].report.read == 7


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4, 7, 8, 1000])
def test_sample_every_chunk_size(chunk_rows):
    chunks = _same_as_read(SAMPLE, chunk_rows)
    if chunk_rows == 1:  # one image per chunk
        assert [len(ds.images) for ds in chunks] == [1, 1, 1, 1]
    if chunk_rows >= 8:  # the file fits in one piece
        assert len(chunks) == 1


def test_image_longer_than_a_chunk_stays_whole(tmp_path):
    rows = ([f"a.jpg,64,48,cat,{i},1,{i + 5},9,0.5" for i in range(7)] + ["b.jpg,64,48,dog,1,1,5,5,0.5"]
            + ["c.jpg,64,48,dog,1,1,5,5,0.5"] * 2)
    chunks = _same_as_read(_write(tmp_path / "p.csv", rows), 3)
    # pieces of 3: a a a | a a a | a b c (a and b complete, c kept) | c (short: the end)
    assert [ds.images["file_name"].tolist() for ds in chunks] == [["a.jpg", "b.jpg"], ["c.jpg"]]
    assert chunks[0].annotations["src_line"].tolist() == [2, 3, 4, 5, 6, 7, 8, 9]
    assert chunks[1].annotations["src_line"].tolist() == [10, 11]


# ------------------------------------------------------------------------------------------ generated
@pytest.mark.parametrize("chunk_rows", [1, 5, 17, 64, 100_000])
def test_generated_grouped_csv(tmp_path, chunk_rows):
    rows = _grouped_rows(60, seed=3)
    chunks = _same_as_read(_write(tmp_path / "p.csv", rows), chunk_rows)
    if chunk_rows == 17:
        # pieces of 17 rows, each without its (possibly unfinished) last image: no chunk is far from 17 rows
        assert all(len(ds) <= 17 + 5 for ds in chunks) and len(chunks) >= len(rows) // 22


def test_tsv_and_image_id_column(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_text("image_id\tclass_id\tx\ty\tw\th\timg_w\timg_h\n"
                 + "".join(f"{i // 3}\t{i % 2}\t1\t2\t3\t4\t64\t48\n" for i in range(20)))
    chunks = _same_as_read(p, 4)
    assert chunks[0].images["file_name"].tolist()[0] == "0"
    assert chunks[0].category_names[:2] == ["0", "1"]


def test_rows_not_grouped_need_a_whole_read(tmp_path):
    rows = ["a.jpg,64,48,cat,1,1,5,5,0.5", "b.jpg,64,48,cat,1,1,5,5,0.5", "c.jpg,64,48,cat,1,1,5,5,0.5",
            "a.jpg,64,48,dog,2,2,6,6,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    with pytest.raises(NeedsWholeRead) as e:
        _chunks(p, 2)
    assert e.value.reason == "rows of image 'a.jpg' are not grouped together (line 5)"
    # within one chunk the rows may come in any order: read() merges them there
    _same_as_read(p, 10)


def test_image_without_a_size_coming_back(tmp_path):
    rows = ["c.jpg,,,cat,1,1,5,5,0.5", "a.jpg,64,48,cat,1,1,5,5,0.5", "c.jpg,,,dog,1,1,5,5,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    with pytest.raises(NeedsWholeRead, match=r"image 'c.jpg' are not grouped together \(line 4\)"):
        _chunks(p, 1)
    _same_as_read(p, 4)   # one piece: read() merges them there


def test_blank_lines_are_skipped_as_read_does(tmp_path):
    rows = [f"i{k // 3}.jpg,64,48,cat,1,1,5,5,0.5\n" + ("\n" if k % 4 == 3 else "") for k in range(20)]
    p = tmp_path / "p.csv"
    p.write_text(HEADER + "".join(rows))
    for chunk_rows in (1, 2, 5, 7):
        _same_as_read(p, chunk_rows)


def test_two_spellings_of_one_image_across_chunks(tmp_path):
    rows = ["a.jpg,64,48,cat,1,1,5,5,0.5", "b.jpg,64,48,cat,1,1,5,5,0.5", "./a.jpg,64,48,dog,2,2,6,6,0.5"]
    with pytest.raises(NeedsWholeRead, match=r"image 'a.jpg' are not grouped together \(line 4\)"):
        _chunks(_write(tmp_path / "p.csv", rows), 1)


def test_header_only(tmp_path):
    p = _write(tmp_path / "p.csv", [])
    chunks = _same_as_read(p, 3)
    assert len(chunks) == 1 and len(chunks[0].images) == 0 and chunks[0].report.read == 0
    q = tmp_path / "q.csv"
    q.write_text("filename,width,height,class_id,xmin,ymin,xmax,ymax\n")
    chunks = _same_as_read(q, 3, names=["cat", "dog"])
    assert chunks[0].category_names == ["cat", "dog"]


def test_empty_file_is_the_same_read_error(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("")
    with pytest.raises(ReadError) as whole:
        pred.read(p, options=ReadOptions(), report=Report())
    with pytest.raises(ReadError) as streamed:
        _chunks(p, 2)
    assert str(streamed.value) == str(whole.value)
    assert "the file is empty" in str(streamed.value)


@pytest.mark.parametrize("bad", ["a.jpg,64,48,cat,1,1,5,5,0.5,extra,more", "a.jpg,64,48,\"cat,1,1,5,5,0.5"])
def test_parse_error_in_a_later_piece_is_the_same_read_error(tmp_path, bad):
    rows = _grouped_rows(10, seed=1)
    p = _write(tmp_path / "p.csv", [*rows, bad, "z.jpg,64,48,cat,1,1,5,5,0.5"])
    with pytest.raises(ReadError) as whole:
        pred.read(p, options=ReadOptions(), report=Report())
    # the pieces cannot know whether read() would name this row or an earlier bad cell: read whole ...
    with pytest.raises(NeedsWholeRead) as streamed:
        _chunks(p, 4)
    assert streamed.value.reason.startswith(f"{p}") and "not a valid table" in streamed.value.reason
    # ... so that the conversion reports exactly read()'s error
    from prelabel.pipeline import convert

    with pytest.raises(ReadError) as converted:
        convert(p, tmp_path / "o.json", fmt="predictions", stream=True, chunk_rows=4)
    assert str(converted.value) == str(whole.value)


def test_bad_cells_drop_their_rows_streamed_as_read(tmp_path):
    """A bad height (line 3) and a width of true (line 4): both rows are dropped at their lines, the rest
    converts, and the streamed conversion reports what read() does (checked by hand)."""
    from prelabel.pipeline import convert

    p = _write(tmp_path / "p.csv", ["a.jpg,64,48,cat,1,1,5,5,0.5", "b.jpg,64,abc,cat,1,1,5,5,0.5",
                                    "c.jpg,true,48,cat,1,1,5,5,0.5", "d.jpg,64,48,cat,1,1,5,5,0.5"])
    want = [["dropped.invalid", f"{p}:3", "column 'height' (height): 'abc' is not a number"],
            ["dropped.invalid", f"{p}:4", "column 'width' (width): 'true' is not a number"]]
    assert pred.read(p, options=ReadOptions(), report=Report()).report.drops[
        ["reason", "source", "message"]].values.tolist() == want
    res = convert(p, tmp_path / "o.json", fmt="predictions", stream=True, chunk_rows=1)
    assert res.report.drops[["reason", "source", "message"]].values.tolist() == want
    assert res.report.balanced and res.report.written == 2


def test_a_column_of_true_is_not_a_number(tmp_path):
    """pandas reads a column of true / false as bool; as a width it is not 1: each row is dropped."""
    p = _write(tmp_path / "p.csv", ["a.jpg,true,48,cat,1,1,5,5,0.5", "b.jpg,false,48,cat,1,1,5,5,0.5"])
    ds = pred.read(p, options=ReadOptions(), report=Report())
    assert len(ds.annotations) == 0
    assert ds.report.drops[["source", "message"]].values.tolist() == [
        [f"{p}:2", "column 'width' (width): True is not a number"],
        [f"{p}:3", "column 'width' (width): False is not a number"]]


def test_drops_spread_over_chunks(tmp_path):
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
    for chunk_rows in (1, 2, 3, 5, 100):
        _same_as_read(p, chunk_rows)
    chunks, report = _chunks(p, 2)
    # the drops come in read()'s order (by reason, then line), not chunk by chunk
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


def test_polygons_recomputed_across_chunks(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text('image,class,xmin,ymin,xmax,ymax,width,height,polygon\n'
                 'a.jpg,cat,0,0,10,10,64,48,"[1,1,9,1,9,9]"\n'
                 'a.jpg,cat,1,1,9,9,64,48,"[1,1,9,1,9,9]"\n'
                 'b.jpg,dog,0,0,10,10,64,48,"[2,2,8,2,8,8]"\n'
                 'c.jpg,dog,0,0,10,10,64,48,"[2,2,4]"\n')
    _same_as_read(p, 1)
    _, report = _chunks(p, 1)
    assert report.changes[["reason", "source"]].values.tolist() == [
        ["recomputed", f"{p}:2"], ["recomputed", f"{p}:4"], ["repaired", f"{p}:5"]]


# ------------------------------------------------------------------------------------------ categories
def test_index_categories_without_names(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("filename,width,height,class_id,xmin,ymin,xmax,ymax\n"
                 + "".join(f"i{k // 2}.jpg,64,48,{[3, 0, 7][k % 3]},1,1,5,5\n" for k in range(11)))
    chunks = _same_as_read(p, 3)
    assert chunks[-1].category_names == ["3", "0", "7"]


def test_index_categories_with_names_and_gaps(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("filename,width,height,class_id,xmin,ymin,xmax,ymax\n"
                 + "".join(f"i{k // 2}.jpg,64,48,{[2, 0, 5, 1][k % 4]},1,1,5,5\n" for k in range(13)))
    chunks = _same_as_read(p, 3, names=["cat", "dog", "car"])
    # the names first, in index order, in every chunk; index 5 is not in names: dropped
    assert [ds.category_names for ds in chunks] == [["cat", "dog", "car"]] * len(chunks)
    _, report = _chunks(p, 3, names=["cat", "dog", "car"])
    assert set(report.drops["message"]) == {"class index 5 is not in names (0..2)"}
    _same_as_read(p, 2, names={0: "cat", 2: "car"})   # a mapping with a gap: index 1 is unknown too


def test_numeric_class_column_with_names(tmp_path):
    # a "class" column of numbers is an index when names are given, text names otherwise
    p = tmp_path / "p.csv"
    p.write_text(HEADER + "".join(f"i{k}.jpg,64,48,{k % 2},1,1,5,5,0.5\n" for k in range(6)))
    assert _same_as_read(p, 2, names=["cat", "dog"])[-1].category_names == ["cat", "dog"]
    assert _same_as_read(p, 2)[-1].category_names == ["0", "1"]


def test_class_column_numbers_then_text_needs_a_whole_read(tmp_path):
    rows = [f"i{k}.jpg,64,48,{k % 2},1,1,5,5,0.5" for k in range(4)] + ["i9.jpg,64,48,dog,1,1,5,5,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    with pytest.raises(NeedsWholeRead, match="holds numbers from line 2 and text near line 6"):
        _chunks(p, 4, names=["cat", "dog"])
    _same_as_read(p, 4)               # without names the column is text anyway
    _same_as_read(p, 100, names=["cat", "dog"])


def test_empty_class_cells_do_not_decide_the_kind(tmp_path):
    rows = ["a.jpg,64,48,,1,1,5,5,0.5", "b.jpg,64,48,,1,1,5,5,0.5", "c.jpg,64,48,1,1,1,5,5,0.5",
            "d.jpg,64,48,0,1,1,5,5,0.5"]
    _same_as_read(_write(tmp_path / "p.csv", rows), 2, names=["cat", "dog"])


# ------------------------------------------------------------------------------------------ normalized
def test_normalized_boxes_noted_once(tmp_path):
    rows = [f"i{k // 2}.jpg,64,48,cat,0.1,0.2,0.{3 + k % 5},0.9,0.5" for k in range(10)]
    p = _write(tmp_path / "p.csv", rows)
    chunks = _same_as_read(p, 3)
    assert [d.code for d in chunks[0].report.diagnostics] == ["coordinates.suspect"]
    assert chunks[0].annotations["x"].iloc[0] == pytest.approx(0.1 * 64)


def test_normalized_then_pixels_needs_a_whole_read(tmp_path):
    rows = [f"i{k}.jpg,64,48,cat,0.1,0.2,0.5,0.9,0.5" for k in range(4)] + ["z.jpg,64,48,cat,1,2,30,40,0.5"]
    p = _write(tmp_path / "p.csv", rows)
    with pytest.raises(NeedsWholeRead, match="boxes before line 6 look normalized"):
        _chunks(p, 2)
    _same_as_read(p, 2, normalized=False)
    _same_as_read(p, 100)


def test_pixels_first_decides_at_once(tmp_path):
    rows = ["a.jpg,64,48,cat,1,2,30,40,0.5"] + [f"i{k}.jpg,64,48,cat,0.1,0.2,0.5,0.9,0.5" for k in range(4)]
    _same_as_read(_write(tmp_path / "p.csv", rows), 1)


def test_explicit_normalized_with_large_values_noted_once_with_the_largest(tmp_path):
    rows = [f"i{k}.jpg,64,48,cat,0.1,0.2,{k + 2},0.9,0.5" for k in range(5)]
    chunks = _same_as_read(_write(tmp_path / "p.csv", rows), 2, normalized=True)
    notes = chunks[0].report.diagnostics
    assert len(notes) == 1 and "box values reach 6:" in notes[0].message


def test_polygon_before_any_finite_box_needs_a_whole_read(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text('image,class,xmin,ymin,xmax,ymax,width,height,polygon\n'
                 'a.jpg,cat,,,,,64,48,"[0.1,0.1,0.9,0.1,0.9,0.9]"\n'
                 'b.jpg,cat,0.1,0.1,0.5,0.5,64,48,\n')
    with pytest.raises(NeedsWholeRead, match="line 2 has a polygon or keypoints before any finite box"):
        _chunks(p, 1)
    _same_as_read(p, 1, normalized=True)
    _same_as_read(p, 5)


# ------------------------------------------------------------------------------------------ images
def _png(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)


def test_sizes_from_the_images_folder(tmp_path):
    root = tmp_path / "images"
    for k in range(7):
        _png(root / f"i{k}.png", (40 + k, 30 + k))
    p = tmp_path / "p.csv"
    p.write_text("image,class,xmin,ymin,xmax,ymax\n"
                 + "".join(f"i{k // 2}.png,cat,1,1,9,9\n" for k in range(16)))  # i7.png is not there
    chunks = _same_as_read(p, 3, images=root)
    report = chunks[0].report
    assert [(d.code, d.message) for d in report.diagnostics] == [
        ("image.size_from_header", "7 image size(s) read from the image files' headers")]
    assert report.drops["source"].tolist() == [f"{p}:16", f"{p}:17"]
    assert "no such file under the images root" in report.drops["message"].iloc[0]
    sizes = [tuple(r) for ds in chunks for r in ds.images[["width", "height"]].to_numpy().tolist()]
    assert sizes == [(40 + k, 30 + k) for k in range(7)]
    # absolute paths under the root are found there too
    q = tmp_path / "q.csv"
    q.write_text("image,class,xmin,ymin,xmax,ymax\n" + "".join(f"{root}/i{k}.png,cat,1,1,9,9\n" for k in range(7)))
    _same_as_read(q, 2, images=root)


def test_absolute_paths_outside_the_root_use_the_whole_files_common_folder(tmp_path):
    rows = ([f"/data/set/a/x{k}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(4)]
            + [f"/data/set/b/y{k}.jpg,64,48,cat,1,1,5,5,0.5" for k in range(3)] + ["rel.jpg,64,48,cat,1,1,5,5,0.5"])
    p = _write(tmp_path / "p.csv", rows)
    chunks = _same_as_read(p, 2)
    # the first chunk only holds /data/set/a/...: still named relative to /data/set, the whole file's folder
    assert chunks[0].images["file_name"].tolist() == ["a/x0.jpg"]
    notes = chunks[0].report.diagnostics
    assert [(d.code, d.message.split(" (e.g.")[0]) for d in notes] == [
        ("image.unsafe_name", "7 absolute image path(s) written relative to /data/set")]
    assert "'/data/set/a/x0.jpg' -> 'a/x0.jpg'" in notes[0].message


# ------------------------------------------------------------------------------------------ parquet
def test_parquet_in_batches(tmp_path):
    pytest.importorskip("pyarrow")
    rows = _grouped_rows(40, seed=5)
    df = pd.read_csv(_write(tmp_path / "p.csv", rows))
    p = tmp_path / "p.parquet"
    df.to_parquet(p, row_group_size=9)
    for chunk_rows in (1, 7, 50, 10_000):
        chunks = _same_as_read(p, chunk_rows)
    assert len(chunks) == 1  # row groups of 9 rows are gathered up to chunk_rows
    assert chunks[0].annotations["src_line"].iloc[0] == 1   # Parquet rows are 1-based


def test_parquet_with_a_stored_index_categorical_labels_and_class_indices(tmp_path):
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(1)
    n = 50
    df = pd.DataFrame({"image": [f"i{k // 4}.jpg" for k in range(n)],
                       "label": pd.Categorical(rng.choice(["cat", "dog"], n)),
                       "x": rng.uniform(0, 20, n), "y": 1.0, "w": 3.0, "h": 4.0, "img_w": 64, "img_h": 48},
                      index=pd.Index(np.arange(100, 100 + n), name="label_id"))  # stored as a column
    p = tmp_path / "idx.parquet"
    df.to_parquet(p, row_group_size=7)
    for chunk_rows in (1, 3, 10, 1000):
        _same_as_read(p, chunk_rows)
    q = tmp_path / "cls.parquet"
    df.reset_index(drop=True).drop(columns="label").assign(cls=rng.integers(0, 3, n)).to_parquet(q)
    for chunk_rows in (2, 13):
        _same_as_read(q, chunk_rows, names=["a", "b"])   # index 2 is not in names: dropped
        _same_as_read(q, chunk_rows)


def test_not_a_parquet_file_is_reads_error(tmp_path):
    p = tmp_path / "p.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(ReadError) as whole:
        pred.read(p, options=ReadOptions(), report=Report())
    with pytest.raises(ReadError) as streamed:
        _chunks(p, 2)
    assert str(streamed.value) == str(whole.value)


# ------------------------------------------------------------------------------------------ arguments
def test_bad_arguments(tmp_path):
    with pytest.raises(ReadError, match="not a file"):
        _chunks(tmp_path / "missing.csv", 2)
    with pytest.raises(UsageError, match="chunk_rows must be at least 1"):
        _chunks(SAMPLE, 0)
