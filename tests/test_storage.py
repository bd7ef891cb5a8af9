"""Remote inputs and outputs (prelabel.storage): S3 on a real API server (moto, 127.0.0.1), zip files, memory://.

The contract: the same dataset read from a local folder, from S3 and from a zip gives IDENTICAL COCO bytes, and
image files are never downloaded whole (only their first 64 KiB, with ranged reads).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner
from PIL import Image

from prelabel import storage
from prelabel.adapters.base import ReadOptions
from prelabel.cli import main
from prelabel.errors import ReadError, UsageError
from prelabel.imagesize import HEADER_BYTES, image_size
from prelabel.pipeline import convert

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
BUCKET = "prelabel-storage"
# (source inside sample_data, images root inside sample_data or None)
SOURCES = {
    "yolo": ("yolo", None),
    "voc": ("voc", None),
    "cvat": ("cvat/annotations.xml", "images"),
    "labelstudio": ("labelstudio/export.json", "images"),
}


def _zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return dest


@pytest.fixture(scope="module")
def sample_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _zip_folder(SAMPLE, tmp_path_factory.mktemp("zip") / "sample.zip")


@pytest.fixture(scope="module")
def bucket(s3_server, sample_zip: Path) -> str:
    """sample_data/ uploaded to s3://prelabel-storage/sample/ (and the zip of it beside)."""
    fs = s3_server.fs()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    fs.put(str(SAMPLE) + "/", f"{BUCKET}/sample/", recursive=True)
    fs.put_file(str(sample_zip), f"{BUCKET}/sample.zip")
    fs.invalidate_cache()
    return f"s3://{BUCKET}"


def _local_coco(name: str, out: Path) -> bytes:
    src, images = SOURCES[name]
    opts = ReadOptions(images=SAMPLE / images if images else None)
    res = convert(SAMPLE / src, out, options=opts)
    return res.paths[0].read_bytes()


# ------------------------------------------------------------------------------------------------ identical bytes
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_local_s3_and_zip_give_identical_coco(name, bucket, s3_server, sample_zip, tmp_path, self_ap):
    src, images = SOURCES[name]
    local = _local_coco(name, tmp_path / "local.json")
    so = s3_server.storage_options

    s3_opts = ReadOptions(images=f"{bucket}/sample/{images}" if images else None)  # type: ignore[arg-type]
    s3 = convert(f"{bucket}/sample/{src}", tmp_path / "s3.json", options=s3_opts, storage_options=so)
    zip_opts = ReadOptions(images=f"zip://{images}::{sample_zip}" if images else None)  # type: ignore[arg-type]
    zipped = convert(f"zip://{src}::file://{sample_zip}", tmp_path / "zip.json", options=zip_opts)

    assert s3.paths[0].read_bytes() == local
    assert zipped.paths[0].read_bytes() == local
    doc = json.loads(local)
    assert len(doc["images"]) == 5 and len(doc["annotations"]) == 7
    assert self_ap(doc) == 1.0
    # the dataset names where the data really is, not the deleted local copy
    assert s3.report.input["source"] == f"{bucket}/sample/{src}"
    paths = [p for p in s3.dataset.images["path"] if p is not None]
    assert paths and all(p.startswith(f"{bucket}/sample/") for p in paths)
    assert not any("prelabel-remote-" in d.source + d.message for d in s3.report.diagnostics)


def test_zip_inside_s3(bucket, s3_server, tmp_path):
    """A dataset in a zip on S3: zip://yolo::s3://bucket/sample.zip (storage options go to the S3 layer)."""
    local = _local_coco("yolo", tmp_path / "local.json")
    res = convert(f"zip://yolo::{bucket}/sample.zip", tmp_path / "out.json", storage_options=s3_server.storage_options)
    assert res.paths[0].read_bytes() == local


def test_data_yaml_url_brings_its_folder(bucket, s3_server, tmp_path):
    """A data.yaml names the folders around it: its folder is localized, and the yaml is the source."""
    local = convert(SAMPLE / "yolo" / "data.yaml", tmp_path / "local.json").paths[0].read_bytes()
    res = convert(f"{bucket}/sample/yolo/data.yaml", tmp_path / "s3.json", storage_options=s3_server.storage_options)
    assert res.paths[0].read_bytes() == local
    assert res.report.input["source"] == f"{bucket}/sample/yolo/data.yaml"
    assert sorted(res.dataset.images["path"])[0] == f"{bucket}/sample/yolo/images/empty.jpg"


def test_memory_filesystem_and_whole_zip_root(tmp_path, sample_zip):
    fs = fsspec.filesystem("memory")
    fs.put(str(SAMPLE / "voc") + "/", "/storage-test/voc/", recursive=True)
    local = _local_coco("voc", tmp_path / "local.json")
    assert convert("memory://storage-test/voc", tmp_path / "m.json").paths[0].read_bytes() == local
    # the zip's root holds yolo/, voc/, ...: a VOC root one level down
    voc_zip = _zip_folder(SAMPLE / "voc", tmp_path / "voc.zip")
    assert convert(f"zip://::{voc_zip}", tmp_path / "z.json", fmt="voc").paths[0].read_bytes() == local


# ------------------------------------------------------------------------------------------------ ranged reads
def _big_png(width: int, height: int, extra: int) -> bytes:
    """A valid PNG header of width x height followed by ``extra`` bytes (a large file whose size is in the first 24)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, "PNG")
    return buf.getvalue() + bytes(extra)


def test_images_are_read_with_ranged_reads_not_downloaded(bucket, s3_server, tmp_path):
    # a YOLO dataset whose one image is 300 KB: only its first 64 KiB may be fetched
    big = _big_png(640, 480, 300_000)
    ds = tmp_path / "big"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    (ds / "images" / "a.png").write_bytes(big)
    (ds / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (ds / "classes.txt").write_text("cat\n")
    fs = s3_server.fs()
    fs.put(str(ds) + "/", f"{BUCKET}/big/", recursive=True)
    fs.invalidate_cache()
    before = len(s3_server.requests)

    with storage.localize(f"{bucket}/big", storage_options=s3_server.storage_options) as loc:
        stand_in = loc.path / "images" / "a.png"
        assert stand_in.stat().st_size == HEADER_BYTES  # 65536 of 300_000+ bytes
        assert image_size(stand_in) == (640, 480)
        assert loc.stats["headers"] == 1 and loc.stats["header_bytes"] == HEADER_BYTES
        assert (loc.path / "labels" / "a.txt").read_text() == "0 0.5 0.5 0.25 0.5\n"

    served = [r for r in s3_server.requests[before:] if r.method == "GET" and r.path.endswith("/big/images/a.png")]
    assert len(served) == 1
    assert served[0].range == f"bytes=0-{HEADER_BYTES - 1}" and served[0].status == 206
    assert served[0].sent == HEADER_BYTES < len(big)

    # and the conversion from S3 equals the local one: box 640*0.25 = 160 wide at cx 320 -> x = 240, etc.
    out = convert(f"{bucket}/big", tmp_path / "s3.json", storage_options=s3_server.storage_options)
    assert out.paths[0].read_bytes() == convert(ds, tmp_path / "local.json").paths[0].read_bytes()
    assert json.loads(out.paths[0].read_bytes())["annotations"][0]["bbox"] == [240.0, 120.0, 160.0, 240.0]


def test_sample_images_fetched_by_range_only(bucket, s3_server, tmp_path):
    """Every GET of an image of the sample datasets carried a Range header (206), for the headers only."""
    before = len(s3_server.requests)
    convert(f"{bucket}/sample/yolo", tmp_path / "y.json", storage_options=s3_server.storage_options)
    got = [r for r in s3_server.requests[before:] if r.method == "GET" and r.path.endswith((".jpg", ".png"))]
    assert len(got) == 5  # the 5 images of sample_data/yolo/images
    assert all(r.range is not None and r.status == 206 for r in got)


def _jpeg_with_late_sof(width: int, height: int) -> bytes:
    """A JPEG whose SOF marker comes after 2 x 60000 bytes of APP13 segments (past the first 64 KiB)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, "JPEG")
    data = buf.getvalue()
    app = b"\xff\xed" + struct.pack(">H", 60_002) + bytes(60_000)
    return data[:2] + app + app + data[2:]


def test_jpeg_whose_size_lies_past_64k_gets_one_more_range(tmp_path):
    data = _jpeg_with_late_sof(33, 21)
    assert len(data) > 120_000
    fs = fsspec.filesystem("memory")
    fs.pipe("/late-sof/images/a.jpg", data + bytes(500_000))  # and a long tail that is never read
    with storage.localize("memory://late-sof") as loc:
        stand_in = loc.path / "images" / "a.jpg"
        assert HEADER_BYTES < stand_in.stat().st_size <= storage.JPEG_MAX_HEADER
        assert image_size(stand_in) == (33, 21)


def test_other_files_are_not_fetched():
    fs = fsspec.filesystem("memory")
    fs.pipe("/skipped/labels/a.txt", b"0 0.5 0.5 0.1 0.1\n")
    fs.pipe("/skipped/video.mp4", bytes(1000))
    fs.pipe("/skipped/weights.npy", bytes(1000))
    with storage.localize("memory://skipped") as loc:
        assert sorted(p.name for p in loc.path.rglob("*") if p.is_file()) == ["a.txt"]
        assert loc.stats["skipped"] == 2 and loc.stats["files"] == 1


# ------------------------------------------------------------------------------------------------ outputs
def test_cli_s3_to_s3_with_shards_and_report(bucket, s3_server, tmp_path):
    local = tmp_path / "local.json"
    runner = CliRunner()
    r = runner.invoke(main, ["convert", "sample_data/voc", "-o", str(local), "--max-file-size", "1KB"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    local_shards = sorted(tmp_path.glob("local-*.json"))
    assert len(local_shards) > 1

    args = ["convert", f"{bucket}/sample/voc", "-o", f"{bucket}/out/voc.json", "--max-file-size", "1KB",
            "--report", f"{bucket}/out/report.json", "--storage-option", f"endpoint_url={s3_server.url}",
            "--storage-option", "key=testing", "--storage-option", "secret=testing",
            "--storage-option", 'client_kwargs={"region_name": "us-east-1"}']
    r = runner.invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"to {bucket}/out/voc-001.json" in r.output
    fs = s3_server.fs()
    fs.invalidate_cache()
    remote = sorted(fs.glob(f"{BUCKET}/out/voc-*.json"))
    assert [p.rsplit("/", 1)[1] for p in remote] == [p.name.replace("local", "voc") for p in local_shards]
    for p, loc in zip(remote, local_shards, strict=True):
        assert fs.cat_file(p) == loc.read_bytes()
    report = json.loads(fs.cat_file(f"{BUCKET}/out/report.json"))
    assert report["output"]["files"] == [f"s3://{p}" for p in remote]
    assert report["input"]["source"] == f"{bucket}/sample/voc"


def test_endpoint_from_aws_endpoint_url(bucket, s3_server, tmp_path, monkeypatch):
    """With no storage option, the endpoint and credentials come from the AWS_* environment (botocore)."""
    import s3_server as srv
    import s3fs

    for k, v in {**srv.CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.url}.items():
        monkeypatch.setenv(k, v)
    s3fs.S3FileSystem.clear_instance_cache()
    out = tmp_path / "out.json"
    r = CliRunner().invoke(main, ["convert", f"{bucket}/sample/yolo", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == _local_coco("yolo", tmp_path / "local.json")
    s3fs.S3FileSystem.clear_instance_cache()


# ------------------------------------------------------------------------------------------------ errors
def test_missing_remote_source_is_a_read_error(bucket, s3_server, tmp_path):
    with pytest.raises(ReadError, match="no such file or folder") as e:
        convert(f"{bucket}/nothing-here", tmp_path / "o.json", storage_options=s3_server.storage_options)
    assert f"{bucket}/nothing-here" in str(e.value)


def test_storage_option_syntax():
    assert storage.parse_storage_options(["anon=true", "endpoint_url=http://x:1"]) == {
        "anon": True, "endpoint_url": "http://x:1"}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        storage.parse_storage_options(["endpoint_url"])
    r = CliRunner().invoke(main, ["convert", "memory://x/y", "-o", "o.json", "--storage-option", "oops"])
    assert r.exit_code == 2 and "--storage-option 'oops': expected KEY=VALUE" in r.output


def test_is_url():
    assert storage.is_url("s3://b/k") and storage.is_url("zip://a::/x.zip") and storage.is_url("gs://b")
    assert not storage.is_url("file:///tmp/x") and not storage.is_url("sample_data/yolo")
    assert not storage.is_url(Path("s3:/b/k"))
