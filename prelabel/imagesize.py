"""Image sizes from file headers, EXIF orientation applied; pixels are never decoded.

PNG, JPEG (with EXIF orientation), GIF, BMP and WebP are read from the first bytes of the file by hand, which
is several times faster than opening the image with Pillow; any other format falls back to Pillow's lazy
header read. Sizes are as annotators see the image: a phone photo stored 400x200 with orientation 6 is
200 wide and 400 high.

Example:
    >>> import io
    >>> from PIL import Image
    >>> from prelabel.imagesize import size_from_bytes
    >>> buf = io.BytesIO(); Image.new("RGB", (40, 20)).save(buf, "PNG")
    >>> size_from_bytes(buf.getvalue())
    (40, 20)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["HEADER_BYTES", "MAX_SIDE", "image_size", "image_sizes", "size_from_bytes"]

HEADER_BYTES = 64 * 1024  # EXIF (APP1) may come before SOF; 64 KiB covers it in practice
MAX_SIDE = 2**31 - 1  # the largest image width/height a source may give (int32, as pycocotools)


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    orientation = 1
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[i + 10:i + 2 + seglen]) or orientation
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        i += 2 + seglen
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    if len(tiff) < 8:
        return None
    endian = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if endian is None:
        return None
    (ifd,) = struct.unpack(endian + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(endian + "H", tiff[ifd:ifd + 2])
    for k in range(count):
        off = ifd + 2 + 12 * k
        if off + 12 > len(tiff):
            return None
        tag, typ = struct.unpack(endian + "HH", tiff[off:off + 4])
        if tag == 0x0112:
            val = struct.unpack(endian + "H", tiff[off + 8:off + 10])[0]
            return int(val) if 1 <= val <= 8 else None
    return None


def size_from_bytes(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of an image file, or None when the format is not recognised."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(int(w)), abs(int(h))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return int(w & 0x3FFF), int(h & 0x3FFF)
        if chunk == b"VP8L":
            b = data[21:25]
            w = 1 + (((b[1] & 0x3F) << 8) | b[0])
            h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
            return int(w), int(h)
        if chunk == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
            return w, h
    return None


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of the image at ``path`` as annotators see it, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(HEADER_BYTES)
    except OSError:
        return None
    size = size_from_bytes(data)
    if size is None and data[:2] == b"\xff\xd8":
        # EXIF or SOF beyond the first block: read the whole header region
        try:
            with open(path, "rb") as f:
                size = _jpeg(f.read())
        except OSError:
            return None
    if size is not None:
        return size
    return _pillow_size(path)


def _pillow_size(path: str | Path) -> tuple[int, int] | None:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return None
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def image_sizes(paths: Iterable[str | Path], *, workers: int = 8) -> list[tuple[int, int] | None]:
    """Sizes of many images, read in parallel threads (header reads are I/O bound)."""
    items = list(paths)
    if len(items) < 64:
        return [image_size(p) for p in items]
    # one task per slice: ThreadPoolExecutor.map ignores chunksize, and a task per image costs more than the read
    step = max(64, -(-len(items) // (workers * 4)))
    slices = [items[i:i + step] for i in range(0, len(items), step)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [s for part in pool.map(_sizes_of, slices) for s in part]


def _sizes_of(paths: list[str | Path]) -> list[tuple[int, int] | None]:
    return [image_size(p) for p in paths]
