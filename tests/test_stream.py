"""The streaming pipeline (read → reconcile → clip → write one part of a source at a time) writes exactly the
bytes the whole-dataset pipeline writes, with the same report.

The whole-dataset pipeline is the oracle here (it is checked against the sample truth table, pycocotools and
the fixtures elsewhere). The stream is the engine's (``PartStream``: the adapter's plan cut into parts of about
``4 MB * chunk_rows / 50,000`` bytes of a file, or runs of files); small ``chunk_rows`` cut the samples into
parts of a few images. Each adapter's parts are checked against its ``read()`` in its own stream test file and
in ``tests/test_equivalence.py``; this file checks the pipeline side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prelabel import adapters
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.engine import PartStream
from prelabel.errors import CategoryError, ReadError, StrictError, ValidationError
from prelabel.model import Dataset
from prelabel.pipeline import convert

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SOURCES = {
    "yolo": SAMPLE / "yolo",
    "voc": SAMPLE / "voc",
    "cvat": SAMPLE / "cvat" / "annotations.xml",
    "labelstudio": SAMPLE / "labelstudio" / "export.json",
    "coco": SAMPLE / "coco" / "instances.json",
    "predictions": SAMPLE / "predictions" / "predictions.csv",
}
PLANNED = sorted(f for f in SOURCES if hasattr(adapters.get(f), "plan"))  # the formats that stream
OPTS = ReadOptions(images=SAMPLE / "images")


def _run(tmp: Path, name: str, fmt: str, src: Path, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    out = tmp / name / "out.json"
    rep = tmp / name / "report.json"
    convert(src, out, fmt=fmt, options=kw.pop("options", OPTS), report_path=rep, **kw)
    files = {p.name: p.read_bytes() for p in sorted(out.parent.iterdir()) if p.name != "report.json"}
    return files, json.loads(rep.read_bytes())


def _canonical(report: dict[str, Any]) -> dict[str, Any]:
    """The report with the output files named without their folder (the diagnostics in their order: the steps'
    entries of a streamed conversion, recorded part by part, stand as a whole conversion records them)."""
    out = dict(report)
    out["output"] = dict(report["output"], files=[Path(f).name for f in report["output"]["files"]])
    return out


class _Parts:
    """Counts the parts the stream reads (PartStream in this process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streams: list[int] = []  # parts read, stream by stream
        original = PartStream._parts

        def counted(stream: PartStream, plan: list[Any], reports: list[Any]) -> Iterator[Any]:
            self.streams.append(len(plan))
            yield from original(stream, plan, reports)

        monkeypatch.setattr(PartStream, "_parts", counted)


@pytest.fixture(params=["here", "child"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The parts read in this process, and in one process reading ahead (PRELABEL_READ_IN_CHILD=always)."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if request.param == "here" else "always")
    return str(request.param)


@pytest.fixture
def no_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every adapter streams whatever the size of its source (STREAM_MIN_BYTES lifted)."""
    for fmt in SOURCES:
        monkeypatch.setattr(adapters.get(fmt), "STREAM_MIN_BYTES", 0, raising=False)


@pytest.mark.parametrize("k", [1, 2, 100])
@pytest.mark.parametrize("fmt", PLANNED)
def test_streamed_output_equals_whole_output(fmt: str, k: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             where: str, no_floor: None) -> None:
    whole, whole_rep = _run(tmp_path, "whole", fmt, SOURCES[fmt])
    parts = _Parts(monkeypatch)
    streamed, stream_rep = _run(tmp_path, "stream", fmt, SOURCES[fmt], stream=True, chunk_rows=k)
    assert len(parts.streams) == 1 and (k == 100 or parts.streams[0] > 1)  # streamed, in several parts
    assert list(streamed) == ["out.json"]
    assert streamed == whole
    assert [d for d in stream_rep["diagnostics"] if d["code"] == "stream.whole"] == [] or fmt == "labelstudio"
    rest = dict(stream_rep, diagnostics=[d for d in stream_rep["diagnostics"] if d["code"] != "stream.whole"])
    assert _canonical(rest) == _canonical(whole_rep)
    assert stream_rep["ledger"]["balanced"] is True
    assert len(json.loads(streamed["out.json"])["annotations"]) == stream_rep["ledger"]["written"]


def test_shards_and_every_reconcile_mode_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str,
                                               no_floor: None) -> None:
    """Shards of whole images, a mapping with a merge and a null, a schema with an unknown kept."""
    fmt, src = "cvat", SOURCES["cvat"]
    parts = _Parts(monkeypatch)
    for unknown in ("keep", "drop"):
        kw: dict[str, Any] = {"mapping": {"car": "vehicle", "dog": None}, "schema": ["vehicle", "person"],
                              "unknown": unknown, "max_file_size": 350}
        whole, whole_rep = _run(tmp_path, f"whole-{unknown}", fmt, src, **kw)
        streamed, stream_rep = _run(tmp_path, f"stream-{unknown}", fmt, src, stream=True, chunk_rows=1, **kw)
        assert len(whole) > 2 and list(streamed) == list(whole)  # several shards, same names
        assert streamed == whole
        assert _canonical(stream_rep) == _canonical(whole_rep)
        mapping = {m["source"]: (m["target"], m["id"], m["how"]) for m in stream_rep["mapping"]}
        assert mapping["car"] == ("vehicle", 1, "mapped") and mapping["dog"] == (None, None, "dropped")
    assert len(parts.streams) == 2 and min(parts.streams) > 1


def test_unknown_category_error_counts_the_whole_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       no_floor: None) -> None:
    fmt, src = "cvat", SOURCES["cvat"]
    with pytest.raises(CategoryError) as whole:
        convert(src, tmp_path / "w.json", fmt=fmt, options=OPTS, schema=["person"])
    parts = _Parts(monkeypatch)
    with pytest.raises(CategoryError) as streamed:
        convert(src, tmp_path / "s.json", fmt=fmt, options=OPTS, schema=["person"], stream=True, chunk_rows=1)
    assert parts.streams and parts.streams[0] > 1
    assert str(streamed.value) == str(whole.value)
    assert "annotations" in str(whole.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temporary file left


def test_a_late_needs_whole_read_falls_back_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         no_floor: None) -> None:
    """A part that cannot be read alone after two parts went to the writer: nothing streamed is kept, the source
    is read whole, and the report says why."""
    fmt, src = "cvat", SOURCES["cvat"]
    whole, whole_rep = _run(tmp_path, "whole", fmt, src)
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0")  # the parts read here, by the patched read_part
    adapter = adapters.get(fmt)
    original = adapter.read_part
    seen: list[int] = []

    def read_part(part: Any, *, options: ReadOptions) -> Dataset:
        seen.append(1)
        if len(seen) == 3:
            raise NeedsWholeRead("image 'x.jpg' is listed twice (line 9)")
        ds: Dataset = original(part, options=options)
        return ds

    monkeypatch.setattr(adapter, "read_part", read_part)
    streamed, stream_rep = _run(tmp_path, "stream", fmt, src, stream=True, chunk_rows=1, workers=1)
    assert len(seen) == 3
    assert streamed == whole
    notes = [d for d in stream_rep["diagnostics"] if d["code"] == "stream.whole"]
    assert notes == [{"code": "stream.whole", "source": str(src), "severity": "info",
                      "message": "read whole, not streamed: image 'x.jpg' is listed twice (line 9)"}]
    rest = dict(stream_rep, diagnostics=[d for d in stream_rep["diagnostics"] if d["code"] != "stream.whole"])
    assert _canonical(rest) == _canonical(whole_rep)
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == ["out.json", "report.json"]


def _outside_boxes(tmp: Path) -> Path:
    """A predictions CSV with a box past the right edge of its 100x50 image and one inside (long image names:
    about 130 bytes a row, so that the smallest parts, about 125 bytes, hold one image each)."""
    csv = tmp / "preds.csv"
    folder = "a_folder_with_a_long_name/" * 4
    csv.write_text("image,width,height,label,x1,y1,x2,y2,score\n"
                   f"{folder}a.jpg,100,50,cat,10,10,20,20,0.9\n"
                   f"{folder}b.jpg,100,50,cat,90,10,120,20,0.8\n", encoding="utf-8")
    return csv


def test_validation_positions_count_over_the_whole_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           no_floor: None) -> None:
    """--no-clip: the box outside its image is a warning naming annotations[1] (id 2) and image 2, as the
    whole pipeline names it; the ids are global although that row is the first of its part."""
    csv = _outside_boxes(tmp_path)
    opts = ReadOptions()
    whole = convert(csv, tmp_path / "w.json", fmt="predictions", options=opts, clip=False)
    parts = _Parts(monkeypatch)
    streamed = convert(csv, tmp_path / "s.json", fmt="predictions", options=opts, clip=False, stream=True,
                       chunk_rows=1)
    assert parts.streams == [2]
    msg = "annotations[1] (id 2): bbox [90.0, 10.0, 30.0, 10.0] extends outside image 2 (100x50)"
    assert whole.validation.warnings == [msg]
    assert streamed.validation.warnings == [msg]
    assert (tmp_path / "s.json").read_bytes() == (tmp_path / "w.json").read_bytes()
    assert len(streamed.dataset.annotations) == 0 and list(streamed.dataset.categories["name"]) == ["cat"]


def test_strict_writes_nothing_but_the_report(tmp_path: Path, no_floor: None) -> None:
    csv = _outside_boxes(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(StrictError) as e:
        convert(csv, out / "s.json", fmt="predictions", options=ReadOptions(), stream=True, strict=True,
                chunk_rows=1, report_path=out / "report.json")
    assert str(e.value).startswith("--strict: 1 problem(s); first: clipped")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_invalid_output_raises_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  no_floor: None) -> None:
    """An image without a size (0x0) in the second part fails validation: nothing is written."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0")  # the parts read here, by the patched read_part
    adapter = adapters.get("predictions")
    parts = iter([
        Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
                      annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [1.0], "w": [2.0], "h": [2.0]}),
        Dataset.build(images={"file_name": ["b.jpg"], "width": [0], "height": [0]})])

    def read_part(part: Any, *, options: ReadOptions) -> Dataset:
        ds = next(parts)
        ds.report.add_read(len(ds.annotations))
        return ds

    monkeypatch.setattr(adapter, "read_part", read_part)
    csv = _outside_boxes(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValidationError) as e:
        convert(csv, out / "s.json", fmt="predictions", options=ReadOptions(), stream=True, chunk_rows=1, workers=1)
    assert "images[1] (id 2): width and height must be integers >= 1, got 0 x 0" in str(e.value)
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_part_ids_are_global(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_floor: None) -> None:
    """Checked by hand: 3 images of 2 boxes each, streamed in the smallest parts → ids 1..6, image ids 1..3."""
    csv = tmp_path / "p.csv"
    rows = ["image,width,height,label,x1,y1,x2,y2,score"]
    for i in range(3):
        for j in range(2):
            rows.append(f"im{i}.jpg,50,40,c{j},{i},{j},{i + 5},{j + 5},0.5")
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    parts = _Parts(monkeypatch)
    convert(csv, tmp_path / "o.json", fmt="predictions", options=ReadOptions(), stream=True, chunk_rows=1)
    assert len(parts.streams) == 1 and parts.streams[0] >= 2  # several parts
    doc = json.loads((tmp_path / "o.json").read_bytes())
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"]) for a in doc["annotations"]] == [
        (1, 1, 1, [0.0, 0.0, 5.0, 5.0]), (2, 1, 2, [0.0, 1.0, 5.0, 5.0]),
        (3, 2, 1, [1.0, 0.0, 5.0, 5.0]), (4, 2, 2, [1.0, 1.0, 5.0, 5.0]),
        (5, 3, 1, [2.0, 0.0, 5.0, 5.0]), (6, 3, 2, [2.0, 1.0, 5.0, 5.0])]
    assert [(i["id"], i["file_name"]) for i in doc["images"]] == [(1, "im0.jpg"), (2, "im1.jpg"), (3, "im2.jpg")]
    assert doc["categories"] == [{"id": 1, "name": "c0", "supercategory": ""},
                                 {"id": 2, "name": "c1", "supercategory": ""}]
    assert np.all(pd.Series([a["score"] for a in doc["annotations"]]) == 0.5)


def test_the_command_line_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`prelabel convert` streams (one source given as the one-element SRC list): the engine's PartStream reads
    it, here or in the process reading ahead."""
    from click.testing import CliRunner

    from prelabel.cli import main

    parts = _Parts(monkeypatch)
    csv = _outside_boxes(tmp_path)
    res = CliRunner().invoke(main, ["-q", "convert", str(csv), "--from", "predictions", "-o",
                                    str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output
    assert parts.streams == [1]  # one part: the file is far under a part's 4 MB
    doc = json.loads((tmp_path / "o.json").read_bytes())
    assert [a["bbox"] for a in doc["annotations"]] == [[10.0, 10.0, 10.0, 10.0], [90.0, 10.0, 10.0, 10.0]]


@pytest.mark.parametrize("chunk_rows", [1, 10**6])
def test_a_read_error_is_the_same_error_wherever_the_parts_are_read(tmp_path: Path, where: str,
                                                                    chunk_rows: int) -> None:
    """A polygon cell that is not JSON on line 4 of a CSV: the ReadError names file and line, whether this
    process or the one reading ahead read it, and nothing is written."""
    csv = tmp_path / "bad.csv"
    csv.write_text("image,width,height,label,x1,y1,x2,y2,polygon\n"
                   "a.jpg,100,50,cat,10,10,20,20,\n"
                   "b.jpg,100,50,cat,10,10,20,20,\n"
                   'c.jpg,100,50,cat,10,10,20,20,"[[1, 2"\n', encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ReadError) as e:
        convert(csv, out / "o.json", fmt="predictions", options=ReadOptions(), stream=True, chunk_rows=chunk_rows)
    with pytest.raises(ReadError) as whole:
        convert(csv, out / "w.json", fmt="predictions", options=ReadOptions())
    assert str(e.value) == str(whole.value)
    assert e.value.file == str(csv) and e.value.line == 4
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_an_adapter_can_ask_for_whole_reads_of_small_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STREAM_MIN_BYTES: a source under it is read whole (no stream.whole note: nothing went wrong), one over it
    is streamed."""
    fmt, src = "cvat", SOURCES["cvat"]
    parts = _Parts(monkeypatch)
    size = src.stat().st_size
    monkeypatch.setattr(adapters.get(fmt), "STREAM_MIN_BYTES", size + 1, raising=False)
    _, rep = _run(tmp_path, "small", fmt, src, stream=True)
    assert parts.streams == [] and all(d["code"] != "stream.whole" for d in rep["diagnostics"])
    monkeypatch.setattr(adapters.get(fmt), "STREAM_MIN_BYTES", size, raising=False)
    _run(tmp_path, "big", fmt, src, stream=True)
    assert parts.streams == [1]


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    """The COCO file, its shards and the report are created as open() creates files (0o666 less the umask), not
    0o600 as the temporary files they start as."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "o.json"
        convert(SOURCES["cvat"], out, fmt="cvat", options=OPTS, stream=True, report_path=tmp_path / "r.json")
        convert(SOURCES["cvat"], tmp_path / "s.json", fmt="cvat", options=OPTS, max_file_size=400)
        written = sorted(tmp_path.glob("*.json"))
        assert len(written) > 3
        assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}
    finally:
        os.umask(old)


def test_the_steps_drops_stand_in_one_order_whole_or_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             no_floor: None) -> None:
    """Both categories mapped to null: the drops by category in the order they were first met (dog: line 2,
    then cat), each category's rows in file order, whether the rows came in one chunk or in two parts whose
    second meets cat first (checked by hand against the CSV below)."""
    folder = "a_folder_with_a_long_name/" * 4
    csv = tmp_path / "p.csv"
    csv.write_text("image,width,height,label,x1,y1,x2,y2\n"
                   f"{folder}im0.jpg,100,50,dog,1,1,5,5\n"
                   f"{folder}im1.jpg,100,50,cat,2,2,6,6\n"
                   f"{folder}im1.jpg,100,50,dog,3,3,7,7\n", encoding="utf-8")
    parts = _Parts(monkeypatch)
    want = [("dropped.mapped_to_null", f"{csv}:2"), ("dropped.mapped_to_null", f"{csv}:4"),
            ("dropped.mapped_to_null", f"{csv}:3")]
    for stream in (False, True):
        res = convert(csv, tmp_path / f"{stream}.json", fmt="predictions", options=ReadOptions(),
                      mapping={"cat": None, "dog": None}, stream=stream, chunk_rows=1)
        drops = res.report.drops
        assert list(zip(drops["reason"], drops["source"], strict=True)) == want
    assert parts.streams == [2]
