"""Image sizes from headers: every supported format, EXIF orientation, the parallel path, unreadable files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from prelabel.imagesize import image_size, image_sizes, size_from_bytes


def _save(path: Path, w: int, h: int, fmt: str, **kw) -> Path:
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, (w, h)).save(path, fmt, **kw)
    return path


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"), ("JPEG", "jpg"),
                                     ("TIFF", "tif")])
def test_formats(tmp_path, fmt, ext):
    assert image_size(_save(tmp_path / f"a.{ext}", 37, 21, fmt)) == (37, 21)


@pytest.mark.parametrize("chunk", [b"VP8L", b"VP8 ", b"VP8X"])
def test_webp_chunks(tmp_path, chunk):
    kw: dict = {"lossless": chunk != b"VP8 "}
    if chunk == b"VP8X":  # an EXIF chunk makes Pillow write the extended header
        exif = Image.Exif()
        exif[0x010E] = "x"
        kw["exif"] = exif.tobytes()
    path = _save(tmp_path / "a.webp", 301, 157, "WEBP", **kw)
    assert path.read_bytes()[12:16] == chunk
    assert image_size(path) == (301, 157)


@pytest.mark.parametrize("orientation,expected", [(1, (400, 200)), (3, (400, 200)), (5, (200, 400)),
                                                  (6, (200, 400)), (8, (200, 400))])
def test_jpeg_exif_orientation(tmp_path, orientation, expected):
    # stored 400x200; orientations 5-8 turn it a quarter, so annotators see 200 wide, 400 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "phone.jpg", 400, 200, "JPEG", exif=exif.tobytes())
    assert image_size(path) == expected


def test_big_endian_exif(tmp_path):
    # Motorola (MM) byte order TIFF header inside APP1, orientation 6
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00" + \
        b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    buf = io.BytesIO()
    Image.new("RGB", (64, 32)).save(buf, "JPEG")
    data = buf.getvalue()
    seg = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    assert size_from_bytes(data[:2] + seg + data[2:]) == (32, 64)


def test_unreadable_and_missing(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert image_size(bad) is None
    assert image_size(tmp_path / "absent.png") is None
    assert size_from_bytes(b"") is None


def test_many_images_in_parallel_keep_their_order(tmp_path):
    paths = [_save(tmp_path / f"{i:03d}.png", 10 + i, 5 + i % 7, "PNG") for i in range(130)]
    paths.insert(50, tmp_path / "absent.png")
    sizes = image_sizes(paths, workers=3)
    assert sizes == [image_size(p) for p in paths]
    assert sizes[0] == (10, 5) and sizes[50] is None and sizes[-1] == (139, 5 + 129 % 7)
