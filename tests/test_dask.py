"""The Dask engine (prelabel.distributed): split the files across workers, merge, and write byte-identical COCO.

Most tests share one local cluster of 2 thread workers (processes=False: quick to start); one test runs the CLI,
which starts a cluster of 2 worker processes on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prelabel.adapters.base import ReadOptions
from prelabel.cli import main
from prelabel.distributed import dask_client, partition_bounds, read_dask
from prelabel.errors import UsageError
from prelabel.pipeline import convert, prepare, read, write_dataset

pytest.importorskip("distributed")  # in the test extra; the engine itself says how to install it

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, processes=False) as c:
        yield c


def _write(ds, out: Path) -> list[bytes]:
    res = write_dataset(prepare(ds), out, max_file_size=25 * 1024**2)
    return [p.read_bytes() for p in res.paths]


def _same(local, dask) -> None:
    """Same report counts, drops and diagnostics."""
    assert dask.report.read == local.report.read
    assert dask.report.dropped_counts() == local.report.dropped_counts()
    assert dask.report.diagnostics == local.report.diagnostics


def test_partition_bounds():
    # 10 files in 3 runs: 4 + 3 + 3, contiguous, in order
    assert partition_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert partition_bounds(2, 5) == [(0, 1), (1, 2)]
    assert partition_bounds(0, 3) == [(0, 0)]


@pytest.mark.parametrize("name", ["yolo", "voc"])
def test_file_per_image_formats_split_and_identical(name, client, tmp_path, self_ap):
    local = read(SAMPLE / name)
    dask = read_dask(SAMPLE / name, client=client, partitions=3)  # 5 images in runs of 2 + 2 + 1
    assert _write(dask, tmp_path / "d.json") == _write(local, tmp_path / "l.json")
    _same(local, dask)
    doc = json.loads((tmp_path / "d.json").read_bytes())
    assert len(doc["images"]) == 5 and len(doc["annotations"]) == 7
    assert self_ap(doc) == 1.0


@pytest.mark.parametrize("src", ["cvat/annotations.xml", "labelstudio/export.json"])
def test_small_single_files_run_as_one_partition(src, client, tmp_path):
    opts = ReadOptions(images=SAMPLE / "images")
    local = read(SAMPLE / src, options=opts)
    dask = read_dask(SAMPLE / src, options=opts, client=client, partitions=4)
    assert _write(dask, tmp_path / "d.json") == _write(local, tmp_path / "l.json")
    _same(local, dask)


def _voc_folder(root: Path, n: int) -> Path:
    """n VOC files; every 7th has no <size> (read from its image header), categories appear in a shifting order."""
    from PIL import Image

    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    names = ["cat", "dog", "car", "person", "bike"]
    for i in range(n):
        stem = f"img_{i:03d}"
        Image.new("RGB", (50 + i, 40)).save(root / "JPEGImages" / f"{stem}.png")
        size = "" if i % 7 == 3 else f"<size><width>{50 + i}</width><height>40</height></size>"
        objs = "".join(f"<object><name>{names[(i + k) % 5]}</name><bndbox><xmin>{1 + k}</xmin><ymin>2</ymin>"
                       f"<xmax>{20 + k}</xmax><ymax>30</ymax></bndbox></object>" for k in range(i % 3 + 1))
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.png</filename>{size}{objs}</annotation>")
    return root


def test_voc_many_parts_sizes_from_headers(client, tmp_path):
    src = _voc_folder(tmp_path / "voc", 30)
    local = read(src)
    dask = read_dask(src, client=client, partitions=4)
    assert _write(dask, tmp_path / "d.json") == _write(local, tmp_path / "l.json")
    _same(local, dask)
    # 30 files with 1, 2, 3, 1, 2, 3, ... objects: 10 * (1 + 2 + 3) = 60
    assert len(dask) == 60 and list(dask.categories["name"]) == ["cat", "dog", "car", "person", "bike"]


def _yolo_folder(root: Path, rows: list[str]) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, text in enumerate(rows):
        Image.new("RGB", (100, 50)).save(root / "images" / f"{i:02d}.png")
        if text is not None:
            (root / "labels" / f"{i:02d}.txt").write_text(text)
    return root


def test_yolo_unnamed_classes_and_orphans(client, tmp_path):
    # no names file: classes named by index; the largest index differs between parts; one label has no image
    src = _yolo_folder(tmp_path / "y", ["1 0.5 0.5 0.2 0.2\n", "0 0.5 0.5 0.2 0.2\n", "4 0.5 0.5 0.2 0.2\n",
                                        "2 0.5 0.5 0.2 0.2\n3 0.1 0.1 0.1 0.1\n"])
    (src / "labels" / "99.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    local = read(src)
    dask = read_dask(src, client=client, partitions=3)
    assert list(dask.categories["name"]) == ["0", "1", "2", "3", "4"]
    assert _write(dask, tmp_path / "d.json") == _write(local, tmp_path / "l.json")
    _same(local, dask)
    assert dask.report.dropped_counts() == {"dropped.no_image": 1}


@pytest.mark.parametrize("other", ["segment", "detect"])
def test_yolo_whole_dataset_inference_falls_back_to_one_partition(other, client, tmp_path):
    # 9-column rows: polygons when the rest of the dataset is polygons, else dropped as ambiguous. The part
    # holding that file cannot know, so the engine reads the whole source as one partition.
    poly = "0 0.1 0.1 0.9 0.1 0.9 0.9 0.5 0.95 0.1 0.9 0.05 0.5\n"  # 13 numbers: a 6-point polygon
    box = "0 0.5 0.5 0.2 0.2\n"
    nine = "0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"
    first = poly if other == "segment" else box
    src = _yolo_folder(tmp_path / "y", [first, first, first, nine])
    (src / "classes.txt").write_text("cat\n")
    local = read(src)
    dask = read_dask(src, client=client, partitions=2)
    assert _write(dask, tmp_path / "d.json") == _write(local, tmp_path / "l.json")
    _same(local, dask)
    assert dask.report.dropped_counts() == ({} if other == "segment" else {"dropped.ambiguous": 1})


def test_remote_source_each_worker_fetches_its_part(client, s3_server, tmp_path):
    fs = s3_server.fs()
    if not fs.exists("prelabel-dask"):
        fs.mkdir("prelabel-dask")
    for name in ("yolo", "voc"):
        fs.put(str(SAMPLE / name) + "/", f"prelabel-dask/{name}/", recursive=True)
    fs.invalidate_cache()
    for name in ("yolo", "voc"):
        before = len(s3_server.requests)
        dask = read_dask(f"s3://prelabel-dask/{name}", client=client, partitions=3,
                         storage_options=s3_server.storage_options)
        assert _write(dask, tmp_path / f"{name}-d.json") == _write(read(SAMPLE / name), tmp_path / f"{name}-l.json")
        assert dask.report.input["source"] == f"s3://prelabel-dask/{name}"
        # the client listed the images but read none; the workers read each image header once, by range
        image_gets = [r for r in s3_server.requests[before:] if r.method == "GET"
                      and r.path.endswith((".png", ".jpg"))]
        assert len(image_gets) == 5 and all(r.status == 206 for r in image_gets)
        # converted map-only from S3: each worker fetches, reads and serializes its part; the local bytes
        local = convert(SAMPLE / name, tmp_path / f"{name}-cl.json")
        remote = convert(f"s3://prelabel-dask/{name}", tmp_path / f"{name}-cd.json", engine="dask", client=client,
                         partitions=3, storage_options=s3_server.storage_options)
        assert remote.paths[0].read_bytes() == local.paths[0].read_bytes()
        assert remote.report.input["source"] == f"s3://prelabel-dask/{name}"


def test_local_cluster_starts_no_dashboard_and_asks_for_no_port_8787(monkeypatch):
    """No Bokeh dashboard on the scheduler or the workers (recorded through stand-in dashboard modules, which
    the scheduler and workers import only to start one), and no HTTP server on 8787, held here."""
    import socket
    import sys
    import types
    import warnings

    import distributed.dashboard

    started: list[str] = []
    for part in ("scheduler", "worker"):
        fake = types.ModuleType(f"distributed.dashboard.{part}")
        fake.connect = lambda *a, _part=part, **k: started.append(_part)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, fake.__name__, fake)
        monkeypatch.setattr(distributed.dashboard, part, fake, raising=False)
    held = socket.socket()
    try:
        try:
            held.bind(("127.0.0.1", 8787))
            held.listen()
        except OSError:
            pass  # already taken by something else: as good
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with dask_client(workers=2, processes=False) as c:
                info = c.scheduler_info()
                ports = [info["services"]["dashboard"], *(w["services"]["dashboard"]
                                                          for w in info["workers"].values())]
    finally:
        held.close()
    assert started == []
    assert len(ports) == 3 and 8787 not in ports
    assert [str(w.message) for w in seen if "8787" in str(w.message)] == []


def test_cli_engine_dask_with_worker_processes(tmp_path):
    """The CLI starts a local cluster of 2 worker processes (127.0.0.1, no dashboard) and writes the same shards."""
    runner = CliRunner()
    base = ["convert", "sample_data/yolo", "--max-file-size", "1KB"]
    r = runner.invoke(main, [*base, "-o", str(tmp_path / "local.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, [*base, "-o", str(tmp_path / "dask.json"), "--engine", "dask", "--workers", "2"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    local = sorted(tmp_path.glob("local-*.json"))
    dask = sorted(tmp_path.glob("dask-*.json"))
    assert len(local) == len(dask) > 1
    assert [p.read_bytes() for p in dask] == [p.read_bytes() for p in local]


def test_convert_engine_keyword(client, tmp_path):
    """pipeline.convert(engine="dask", scheduler=ADDRESS) connects to an existing scheduler."""
    address = client.scheduler.address
    if not address.startswith("inproc://"):
        pytest.skip("needs the in-process cluster")
    res = convert(SAMPLE / "voc", tmp_path / "d.json", engine="dask", scheduler=address)
    assert res.paths[0].read_bytes() == convert(SAMPLE / "voc", tmp_path / "l.json").paths[0].read_bytes()


def _read_task(fn, args):
    """The read a submitted task runs and its arguments (the engine submits each read through ``_guarded``)."""
    return (args[0], args[1:]) if fn.__name__ == "_guarded" else (fn, args)


class _Counting:
    """A client that counts the partitions the engine submits."""

    def __init__(self, client):
        self.client, self.parts = client, []

    def submit(self, fn, *args, **kw):
        read, rest = _read_task(fn, args)
        self.parts.append(type(rest[1]).__name__ if len(rest) > 1 and hasattr(rest[1], "source") else read.__name__)
        return self.client.submit(fn, *args, **kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_large_label_studio_export_is_split(client, tmp_path):
    """A 9 MB export (at least 2 MB a partition): 4 byte ranges of whole tasks, the output as the local read's."""
    import orjson
    from test_labelstudio_speed_equivalence import _plain

    src = tmp_path / "export.json"
    src.write_bytes(orjson.dumps([_plain(i) for i in range(1, 20_001)]))
    assert 8 * 2**20 < src.stat().st_size < 10 * 2**20
    counting = _Counting(client)
    dask = read_dask(src, client=counting)
    assert counting.parts == ["ByteRange"] * 4  # 9 MB // 2 MB, within 4 a worker
    local = read(src)
    assert len(local.annotations) == 40_000
    assert _write(dask, tmp_path / "d.json") == _write(local, tmp_path / "l.json")
    _same(local, dask)


def test_coco_file_split_into_partitions(client, tmp_path):
    # a COCO file of about 6 MB in image order: cut into byte ranges of its annotations (at least 2 MB each, 4
    # a worker), each read on a worker; the same COCO and report as the local read
    images = [{"id": i + 1, "file_name": f"img_{i:05d}.jpg", "width": 640, "height": 480} for i in range(20_000)]
    annotations = [{"id": k + 1, "image_id": k // 3 + 1, "category_id": 1 + k % 3, "iscrowd": 0,
                    "bbox": [1.5 + k % 7, 2.0, 30.25, 40.0], "area": 1210.0} for k in range(60_000)]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]
    src = tmp_path / "big.json"
    src.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    size = src.stat().st_size
    assert 6 * 2**20 <= size < 8 * 2**20
    local = read(src)
    want = _write(local, tmp_path / "l.json")
    for partitions, parts in [(None, 3), (5, 5)]:  # None: size // 2 MB = 3 (fewer than 2 workers * 4)
        counting = _Counting(client)
        dask = read_dask(src, client=counting, partitions=partitions)
        assert counting.parts == ["ByteRange"] * parts
        assert _write(dask, tmp_path / f"d{parts}.json") == want
        _same(local, dask)
        assert {**dask.report.to_dict(), "output": None} == {**local.report.to_dict(), "output": None}
    assert len(local) == 60_000 and len(local.images) == 20_000


# ------------------------------------------------------------------------------------------- map-only convert
class _Watching:
    """A client that records everything that reaches it from the workers (gathered, or a future's result)."""

    def __init__(self, client):
        self.client, self.received, self.reads = client, [], 0

    def submit(self, fn, *args, **kw):
        if _read_task(fn, args)[0].__name__ in ("read_one_part", "_read_whole", "_read_remote_part"):
            self.reads += 1
        return _Future(self.client.submit(fn, *[_unwrap(a) for a in args], **kw), self)

    def gather(self, futures):
        got = self.client.gather([_unwrap(f) for f in futures])
        self.received.extend(got)
        return got

    def __getattr__(self, name):
        return getattr(self.client, name)


class _Future:
    def __init__(self, future, watch):
        self.future, self.watch = future, watch

    def result(self):
        got = self.future.result()
        self.watch.received.append(got)
        return got


def _unwrap(x):
    return x.future if isinstance(x, _Future) else x


def _everything(obj, seen=None):
    """``obj`` and what it holds (containers, dataclass fields), each once."""
    import dataclasses

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _everything(x, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _everything(getattr(obj, f.name), seen)


def _local_and_dask(src, tmp_path, client, **kw):
    local = convert(src, tmp_path / "local" / "out.json", **kw)
    watch = _Watching(client)
    dask = convert(src, tmp_path / "dask" / "out.json", engine="dask", client=watch, **kw)
    assert [p.read_bytes() for p in dask.paths] == [p.read_bytes() for p in local.paths]
    assert {**dask.report.to_dict(), "output": None} == {**local.report.to_dict(), "output": None}
    return local, dask, watch


def _no_rows_reached_the_client(watch) -> None:
    from prelabel.converters.coco_write import Piece
    from prelabel.model import Dataset

    held = list(_everything(watch.received))
    assert not [x for x in held if isinstance(x, Dataset)]
    assert [x for x in held if isinstance(x, Piece)]  # the bytes came as pieces


def test_convert_map_only_on_a_large_label_studio_export(client, tmp_path):
    """A 9 MB export: 4 partitions (at least 2 MB each), each reconciled, clipped and serialized on its worker;
    the client receives names, counts, reports and bytes, never a partition's rows; the bytes and the report
    are the local engine's."""
    import orjson
    from test_labelstudio_speed_equivalence import _plain

    src = tmp_path / "export.json"
    src.write_bytes(orjson.dumps([_plain(i) for i in range(1, 20_001)]))
    local, dask, watch = _local_and_dask(src, tmp_path, client, max_file_size=4 * 2**20)
    assert watch.reads == 4
    assert len(local.paths) == 3 and local.report.output["annotations"] == 40_000
    _no_rows_reached_the_client(watch)


def test_convert_map_only_on_a_large_cvat_file(client, tmp_path):
    """A CVAT XML of about 5 MB (2 partitions) with every kind of shape: the same bytes and report."""
    from test_equivalence import _cvat

    src = _cvat(tmp_path / "big.xml", 16_000, seed=4)
    assert 4 * 2**20 < src.stat().st_size < 8 * 2**20
    local, dask, watch = _local_and_dask(src, tmp_path, client)
    assert watch.reads == src.stat().st_size // (2 * 2**20)
    _no_rows_reached_the_client(watch)
    assert dask.report.output["annotations"] == local.report.output["annotations"] > 10_000


def test_convert_an_image_named_in_two_partitions_is_converted_as_one(client, tmp_path):
    """Two VOC files naming one image, in two partitions: no partition can see it, so the source is converted
    again as one partition, which finds it as the local engine does (the same error, nothing written)."""
    import re
    import shutil

    from prelabel.errors import ValidationError

    src = tmp_path / "voc"
    shutil.copytree(SAMPLE / "voc", src)
    street = src / "Annotations" / "street.xml"  # the last of 5 files; empty.xml is the first
    street.write_text(re.sub(r"<filename>.*?</filename>", "<filename>empty.jpg</filename>", street.read_text()))
    with pytest.raises(ValidationError) as local:
        convert(src, tmp_path / "l.json")
    watch = _Watching(client)
    with pytest.raises(ValidationError) as dask:
        convert(src, tmp_path / "d.json", engine="dask", client=watch, partitions=3)
    assert watch.reads == 3 + 1  # three partitions, then the whole folder as one
    assert str(dask.value) == str(local.value).replace("l.json", "d.json")
    assert "images[4] (id 5): file_name 'empty.jpg' is also the name of images[0] (id 1)" in str(local.value)
    assert not (tmp_path / "d.json").exists()


def test_convert_map_only_with_a_mapping_a_schema_and_scores(client, tmp_path):
    """The categories decided on the client before any row is mapped: a mapping renaming one class and
    dropping another, a schema with its own ids, a score filter and boxes to clip, in every partition; the
    rows without a score (kept by the filter) counted over every partition."""
    rows = ["image,class,score,x1,y1,x2,y2,image_width,image_height"]
    for i in range(3000):
        c = ("cat", "kitty", "dog", "noise")[i % 4]
        score = f"{(i % 10) / 10:.1f}" if i % 10 != 9 else ""  # a 0.9 left empty: kept either way
        rows.append(f"img{i // 3:04d}.jpg,{c},{score},{i % 50},5,{60 + i % 50},40,100,80")
    src = tmp_path / "preds.csv"
    src.write_text("\n".join(rows) + "\n")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"kitty": "cat", "noise": None}))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps([{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]))
    local, dask, watch = _local_and_dask(src, tmp_path, client, partitions=3, mapping=mapping, schema=schema,
                                         min_score=0.35)
    assert watch.reads == 3
    doc = json.loads(local.paths[0].read_bytes())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(7, "dog"), (3, "cat")]
    # the score filter comes first: 4 of every 10 rows (0.0-0.3) dropped; of the rest, "noise" is mapped to null
    kept = [i for i in range(3000) if i % 10 >= 4 and i % 4 != 3]
    assert local.report.dropped_counts() == {"dropped.min_score": 1200, "dropped.mapped_to_null": 450}
    assert [(d.severity, d.message) for d in dask.report.diagnostics if d.code == "score.missing"] == [
        ("info", "300 of 3000 annotation(s) have no score: min_score=0.35 kept them (ground truth, or scores not "
                 "read: a table names its score column with ReadOptions(columns={'score': 'NAME'}))")]
    assert [(a["category_id"], a["bbox"]) for a in doc["annotations"]] == [
        (7 if i % 4 == 2 else 3, [float(i % 50), 5.0, float(min(60 + i % 50, 100) - i % 50), 35.0]) for i in kept]
    assert len(kept) == 1350


def test_convert_map_only_unknown_category_error(client, tmp_path):
    """unknown="error" with rows of a class the schema lacks: the local engine's error, counted over the
    whole source, and nothing written."""
    rows = ["image,class,x1,y1,x2,y2,image_width,image_height"] + [
        f"img{i // 2:04d}.jpg,{('cat', 'bird')[i % 2]},1,1,5,5,10,10" for i in range(2000)]
    src = tmp_path / "preds.csv"
    src.write_text("\n".join(rows) + "\n")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps([{"id": 1, "name": "cat"}]))
    from prelabel.errors import CategoryError

    with pytest.raises(CategoryError) as local:
        convert(src, tmp_path / "l.json", schema=schema)
    with pytest.raises(CategoryError) as dask:
        convert(src, tmp_path / "d.json", schema=schema, engine="dask", client=client, partitions=3)
    assert str(dask.value) == str(local.value)
    assert "'bird'" in str(local.value) and "1000" in str(local.value)
    assert not (tmp_path / "d.json").exists()


def test_engine_read_parts_on_dask_is_read_dask(client, tmp_path):
    """engine.read_parts(engine="dask") runs the Dask engine's own read in ``workers`` partitions."""
    from prelabel.engine import read_parts

    watch = _Watching(client)
    ds = read_parts(SAMPLE / "voc", engine="dask", client=watch, workers=3)
    assert watch.reads == 3  # 5 files in runs of 2 + 2 + 1
    assert _write(ds, tmp_path / "d.json") == _write(read(SAMPLE / "voc"), tmp_path / "l.json")
    with pytest.raises(UsageError, match="needs a client"):
        read_parts(SAMPLE / "voc", engine="dask")


def test_a_part_that_needs_the_whole_source_logs_no_failed_task(client, tmp_path, caplog):
    """Label Studio keypoints are named over the whole export, so each part refuses to stand alone
    (``NeedsWholeRead``) and the source is read as one partition: a planned outcome, which a user's own cluster
    must not log as a failed task with a traceback (``distributed.worker - ERROR - Compute Failed``)."""
    import logging

    src = SAMPLE / "labelstudio" / "export.json"
    local = convert(src, tmp_path / "l.json")
    with caplog.at_level(logging.INFO):
        watch = _Watching(client)
        dask = convert(src, tmp_path / "d.json", engine="dask", client=watch, partitions=3)
        ds = read_dask(src, client=client, partitions=3)
    assert watch.reads == 3 + 1  # three byte ranges refused, then the export as one partition
    assert [p.read_bytes() for p in dask.paths] == [p.read_bytes() for p in local.paths]
    assert len(ds) == 7
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
