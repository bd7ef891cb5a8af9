"""The streaming pipeline (read → reconcile → clip → write one chunk of images at a time) writes exactly the
bytes the whole-dataset pipeline writes, with the same report.

The whole-dataset pipeline is the oracle here (it is checked against the sample truth table, pycocotools and
the fixtures elsewhere). To test the pipeline side on its own, each adapter gets an ``iter_chunks`` that cuts
its ``read()`` into chunks of ``k`` images, exactly as the protocol in ``prelabel/adapters/base.py`` says a
streaming adapter must; the adapters' own ``iter_chunks`` are tested against ``read()`` in their own files.
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
from prelabel.errors import CategoryError, StrictError, ValidationError
from prelabel.model import Dataset
from prelabel.pipeline import convert
from prelabel.report import Report
from prelabel.workers import may_fork

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SOURCES = {
    "yolo": SAMPLE / "yolo",
    "voc": SAMPLE / "voc",
    "cvat": SAMPLE / "cvat" / "annotations.xml",
    "labelstudio": SAMPLE / "labelstudio" / "export.json",
    "coco": SAMPLE / "coco" / "instances.json",
    "predictions": SAMPLE / "predictions" / "predictions.csv",
}
OPTS = ReadOptions(images=SAMPLE / "images")


def _split(ds: Dataset, k: int) -> Iterator[Dataset]:
    """``ds`` cut into chunks of ``k`` images, annotations re-indexed to each chunk, categories kept."""
    n = len(ds.images)
    img = ds.annotations["image"].to_numpy()
    for start in range(0, max(n, 1), k):
        rows = (img >= start) & (img < start + k)
        ann = ds.annotations[rows].reset_index(drop=True)
        ann["image"] = ann["image"].to_numpy() - start
        yield Dataset.build(images=ds.images.iloc[start:start + k].reset_index(drop=True),
                            categories=ds.categories, annotations=ann, report=ds.report)


def _chunking(fmt: str, k: int, *, fail_after: int | None = None) -> Any:
    """An ``iter_chunks`` for ``fmt``: ``read()`` cut into chunks of ``k`` images (optionally raising
    NeedsWholeRead after ``fail_after`` chunks, as an adapter that meets a duplicated image would)."""
    adapter = adapters.get(fmt)

    def iter_chunks(path: Path, *, options: ReadOptions, report: Report, chunk_rows: int) -> Iterator[Dataset]:
        ds = adapter.read(path, options=options, report=report)
        for i, chunk in enumerate(_split(ds, k)):
            if fail_after is not None and i == fail_after:
                raise NeedsWholeRead("image 'x.jpg' is listed twice (line 9)")
            yield chunk

    return iter_chunks


def _run(tmp: Path, name: str, fmt: str, src: Path, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    out = tmp / name / "out.json"
    rep = tmp / name / "report.json"
    convert(src, out, fmt=fmt, options=kw.pop("options", OPTS), report_path=rep, **kw)
    files = {p.name: p.read_bytes() for p in sorted(out.parent.iterdir()) if p.name != "report.json"}
    return files, json.loads(rep.read_bytes())


def _canonical(report: dict[str, Any]) -> dict[str, Any]:
    """The report with its diagnostics sorted (chunks interleave drops of different steps) and the output
    files named without their folder."""
    out = dict(report)
    out["output"] = dict(report["output"], files=[Path(f).name for f in report["output"]["files"]])
    out["diagnostics"] = sorted(report["diagnostics"], key=lambda d: json.dumps(d, sort_keys=True))
    return out


@pytest.fixture(params=["here", "child"], autouse=True)
def where(request, monkeypatch) -> str:
    """Every test runs twice: the chunks read in this process, and in a forked child (prelabel.prefetch)."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if request.param == "here" else "always")
    return str(request.param)


@pytest.mark.parametrize("k", [1, 2, 100])
@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_streamed_output_equals_whole_output(fmt: str, k: int, tmp_path: Path, monkeypatch) -> None:
    whole, whole_rep = _run(tmp_path, "whole", fmt, SOURCES[fmt])
    monkeypatch.setattr(adapters.get(fmt), "iter_chunks", _chunking(fmt, k), raising=False)
    streamed, stream_rep = _run(tmp_path, "stream", fmt, SOURCES[fmt], stream=True)
    assert list(streamed) == ["out.json"]
    assert streamed == whole
    assert _canonical(stream_rep) == _canonical(whole_rep)
    assert stream_rep["ledger"]["balanced"] is True
    assert len(json.loads(streamed["out.json"])["annotations"]) == stream_rep["ledger"]["written"]


def test_shards_and_every_reconcile_mode_match(tmp_path: Path, monkeypatch) -> None:
    """Shards of whole images, a mapping with a merge and a null, a schema with an unknown kept."""
    fmt, src = "cvat", SOURCES["cvat"]
    monkeypatch.setattr(adapters.get(fmt), "iter_chunks", _chunking(fmt, 1), raising=False)
    for unknown in ("keep", "drop"):
        kw: dict[str, Any] = {"mapping": {"car": "vehicle", "dog": None}, "schema": ["vehicle", "person"],
                              "unknown": unknown, "max_file_size": 350}
        whole, whole_rep = _run(tmp_path, f"whole-{unknown}", fmt, src, **kw)
        streamed, stream_rep = _run(tmp_path, f"stream-{unknown}", fmt, src, stream=True, **kw)
        assert len(whole) > 2 and list(streamed) == list(whole)  # several shards, same names
        assert streamed == whole
        assert _canonical(stream_rep) == _canonical(whole_rep)
        mapping = {m["source"]: (m["target"], m["id"], m["how"]) for m in stream_rep["mapping"]}
        assert mapping["car"] == ("vehicle", 1, "mapped") and mapping["dog"] == (None, None, "dropped")


def test_unknown_category_error_counts_the_whole_input(tmp_path: Path, monkeypatch) -> None:
    fmt, src = "cvat", SOURCES["cvat"]
    with pytest.raises(CategoryError) as whole:
        convert(src, tmp_path / "w.json", fmt=fmt, options=OPTS, schema=["person"])
    monkeypatch.setattr(adapters.get(fmt), "iter_chunks", _chunking(fmt, 1), raising=False)
    with pytest.raises(CategoryError) as streamed:
        convert(src, tmp_path / "s.json", fmt=fmt, options=OPTS, schema=["person"], stream=True)
    assert str(streamed.value) == str(whole.value)
    assert "annotations" in str(whole.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temporary file left


def test_a_late_needs_whole_read_falls_back_and_says_why(tmp_path: Path, monkeypatch) -> None:
    fmt, src = "cvat", SOURCES["cvat"]
    whole, whole_rep = _run(tmp_path, "whole", fmt, src)
    monkeypatch.setattr(adapters.get(fmt), "iter_chunks", _chunking(fmt, 1, fail_after=2), raising=False)
    streamed, stream_rep = _run(tmp_path, "stream", fmt, src, stream=True)
    assert streamed == whole
    notes = [d for d in stream_rep["diagnostics"] if d["code"] == "stream.whole"]
    assert notes == [{"code": "stream.whole", "source": str(src), "severity": "info",
                      "message": "read whole, not streamed: image 'x.jpg' is listed twice (line 9)"}]
    rest = dict(stream_rep, diagnostics=[d for d in stream_rep["diagnostics"] if d["code"] != "stream.whole"])
    assert _canonical(rest) == _canonical(whole_rep)
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == ["out.json", "report.json"]


def _outside_boxes(tmp: Path) -> Path:
    """A predictions CSV with a box past the right edge of its 100x50 image and one inside."""
    csv = tmp / "preds.csv"
    csv.write_text("image,width,height,label,x1,y1,x2,y2,score\n"
                   "a.jpg,100,50,cat,10,10,20,20,0.9\n"
                   "b.jpg,100,50,cat,90,10,120,20,0.8\n", encoding="utf-8")
    return csv


def test_validation_positions_count_over_the_whole_document(tmp_path: Path, monkeypatch) -> None:
    """--no-clip: the box outside its image is a warning naming annotations[1] (id 2) and image 2, as the
    whole pipeline names it; the ids are global although that row is the first of its chunk."""
    csv = _outside_boxes(tmp_path)
    opts = ReadOptions()
    whole = convert(csv, tmp_path / "w.json", fmt="predictions", options=opts, clip=False)
    monkeypatch.setattr(adapters.get("predictions"), "iter_chunks", _chunking("predictions", 1), raising=False)
    streamed = convert(csv, tmp_path / "s.json", fmt="predictions", options=opts, clip=False, stream=True)
    msg = "annotations[1] (id 2): bbox [90.0, 10.0, 30.0, 10.0] extends outside image 2 (100x50)"
    assert whole.validation.warnings == [msg]
    assert streamed.validation.warnings == [msg]
    assert (tmp_path / "s.json").read_bytes() == (tmp_path / "w.json").read_bytes()
    assert len(streamed.dataset.annotations) == 0 and list(streamed.dataset.categories["name"]) == ["cat"]


def test_strict_writes_nothing_but_the_report(tmp_path: Path, monkeypatch) -> None:
    csv = _outside_boxes(tmp_path)
    monkeypatch.setattr(adapters.get("predictions"), "iter_chunks", _chunking("predictions", 1), raising=False)
    out = tmp_path / "out"
    with pytest.raises(StrictError) as e:
        convert(csv, out / "s.json", fmt="predictions", options=ReadOptions(), stream=True, strict=True,
                report_path=out / "report.json")
    assert str(e.value).startswith("--strict: 1 problem(s); first: clipped")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_invalid_output_raises_and_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    """An image without a size (0x0 from a table) fails validation in a later chunk: nothing is written."""
    fake = adapters.get("predictions")

    def iter_chunks(path: Path, *, options: ReadOptions, report: Report, chunk_rows: int) -> Iterator[Dataset]:
        report.add_read(1)
        yield from _split(Dataset.build(
            images={"file_name": ["a.jpg", "b.jpg"], "width": [10, 0], "height": [10, 0]},
            annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [1.0], "w": [2.0], "h": [2.0]},
            report=report), 1)

    monkeypatch.setattr(fake, "iter_chunks", iter_chunks, raising=False)
    csv = _outside_boxes(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValidationError) as e:
        convert(csv, out / "s.json", fmt="predictions", options=ReadOptions(), stream=True)
    assert "images[1] (id 2): width and height must be integers >= 1, got 0 x 0" in str(e.value)
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_chunk_ids_are_global(tmp_path: Path, monkeypatch) -> None:
    """Checked by hand: 3 images of 2 boxes each, streamed one image per chunk → ids 1..6, image ids 1..3."""
    csv = tmp_path / "p.csv"
    rows = ["image,width,height,label,x1,y1,x2,y2,score"]
    for i in range(3):
        for j in range(2):
            rows.append(f"im{i}.jpg,50,40,c{j},{i},{j},{i + 5},{j + 5},0.5")
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(adapters.get("predictions"), "iter_chunks", _chunking("predictions", 1), raising=False)
    convert(csv, tmp_path / "o.json", fmt="predictions", options=ReadOptions(), stream=True)
    doc = json.loads((tmp_path / "o.json").read_bytes())
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"]) for a in doc["annotations"]] == [
        (1, 1, 1, [0.0, 0.0, 5.0, 5.0]), (2, 1, 2, [0.0, 1.0, 5.0, 5.0]),
        (3, 2, 1, [1.0, 0.0, 5.0, 5.0]), (4, 2, 2, [1.0, 1.0, 5.0, 5.0]),
        (5, 3, 1, [2.0, 0.0, 5.0, 5.0]), (6, 3, 2, [2.0, 1.0, 5.0, 5.0])]
    assert [(i["id"], i["file_name"]) for i in doc["images"]] == [(1, "im0.jpg"), (2, "im1.jpg"), (3, "im2.jpg")]
    assert doc["categories"] == [{"id": 1, "name": "c0", "supercategory": ""},
                                 {"id": 2, "name": "c1", "supercategory": ""}]
    assert np.all(pd.Series([a["score"] for a in doc["annotations"]]) == 0.5)


def test_the_command_line_streams(tmp_path: Path, monkeypatch, where: str) -> None:
    """`prelabel convert` goes through iter_chunks (one source given as the one-element SRC list)."""
    from click.testing import CliRunner

    from prelabel.cli import main

    log = tmp_path / "calls.txt"  # written by whichever process reads (this one or the child)
    inner = _chunking("predictions", 1)

    def iter_chunks(path: Path, *, options: ReadOptions, report: Report, chunk_rows: int) -> Iterator[Dataset]:
        for c in inner(path, options=options, report=report, chunk_rows=chunk_rows):
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{len(c.images)} {os.getpid()}\n")
            yield c

    monkeypatch.setattr(adapters.get("predictions"), "iter_chunks", iter_chunks, raising=False)
    csv = _outside_boxes(tmp_path)
    res = CliRunner().invoke(main, ["-q", "convert", str(csv), "--from", "predictions", "-o",
                                    str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output
    calls = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    assert [int(n) for n, _ in calls] == [1, 1]
    # a forked child reads only where this process may fork (one OS thread: a test suite that left a thread
    # running reads here, by the rule that a threaded process is never forked)
    in_child = where == "child" and may_fork()
    assert all((pid == str(os.getpid())) != in_child for _, pid in calls)
    doc = json.loads((tmp_path / "o.json").read_bytes())
    assert [a["bbox"] for a in doc["annotations"]] == [[10.0, 10.0, 10.0, 10.0], [90.0, 10.0, 10.0, 10.0]]


def test_a_read_error_is_the_same_error_wherever_the_chunks_are_read(tmp_path: Path) -> None:
    """A polygon cell that is not JSON on line 4 of a CSV: the ReadError names file and line, whether this
    process or the child read it (the child sends the exception back; prelabel.prefetch rebuilds it), and
    nothing is written."""
    from prelabel.errors import ReadError

    csv = tmp_path / "bad.csv"
    csv.write_text("image,width,height,label,x1,y1,x2,y2,polygon\n"
                   "a.jpg,100,50,cat,10,10,20,20,\n"
                   "b.jpg,100,50,cat,10,10,20,20,\n"
                   'c.jpg,100,50,cat,10,10,20,20,"[[1, 2"\n', encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ReadError) as e:
        convert(csv, out / "o.json", fmt="predictions", options=ReadOptions(), stream=True, chunk_rows=1)
    with pytest.raises(ReadError) as whole:
        convert(csv, out / "w.json", fmt="predictions", options=ReadOptions())
    assert str(e.value) == str(whole.value)
    assert e.value.file == str(csv) and e.value.line == 4
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_an_adapter_can_ask_for_whole_reads_of_small_inputs(tmp_path: Path, monkeypatch) -> None:
    """STREAM_MIN_BYTES: a source under it is read whole (no stream.whole note: nothing went wrong), one over it
    is streamed."""
    fmt, src = "cvat", SOURCES["cvat"]
    calls: list[str] = []
    inner = _chunking(fmt, 1)

    def iter_chunks(path: Path, *, options: ReadOptions, report: Report, chunk_rows: int) -> Iterator[Dataset]:
        calls.append("stream")
        yield from inner(path, options=options, report=report, chunk_rows=chunk_rows)

    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0")
    monkeypatch.setattr(adapters.get(fmt), "iter_chunks", iter_chunks, raising=False)
    size = src.stat().st_size
    monkeypatch.setattr(adapters.get(fmt), "STREAM_MIN_BYTES", size + 1, raising=False)
    _, rep = _run(tmp_path, "small", fmt, src, stream=True)
    assert calls == [] and all(d["code"] != "stream.whole" for d in rep["diagnostics"])
    monkeypatch.setattr(adapters.get(fmt), "STREAM_MIN_BYTES", size, raising=False)
    _run(tmp_path, "big", fmt, src, stream=True)
    assert calls == ["stream"]


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
