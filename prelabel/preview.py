"""A contact sheet of images with their annotations drawn: see the result before uploading it.

:func:`render` draws up to ``n`` images of a Dataset as tiles on one sheet (Pillow only): boxes as outlines,
polygons and RLE masks filled semi-transparent with an outline, keypoints as dots joined by the category's
skeleton, each in its category's colour with a small name tag (and the score of predictions). Every outline
has a thin black halo so it stays visible on any image. Under each tile: the file name, and in red what the
report says went wrong for that image (clipped, dropped, unmatched); those images come first. A legend
(colour swatch, category name, annotation count) closes the sheet.

Layout (pixels), so a reader can find a box on the sheet:

- the sheet has a :data:`MARGIN` border and a :data:`HEADER` line of text on top; tiles are :data:`TILE`
  square cells in a grid of ``ceil(sqrt(k))`` columns for ``k`` images, :data:`GAP` apart, each followed by a
  :data:`CAPTION` strip for its text; the legend comes after the last row;
- cell ``i`` (row ``i // cols``, column ``i % cols``) starts at ``x = MARGIN + col * (TILE + GAP)``,
  ``y = MARGIN + HEADER + row * (TILE + CAPTION + GAP)``;
- an image of (recorded) size ``W x H`` is scaled by :func:`tile_scale`: a whole factor ``TILE // max(W, H)``
  when that is 2 or more (tiny images become readable, nearest-neighbour pixels), else ``TILE / max(W, H)``;
  it is centred in its cell: offset ``((TILE - tw) // 2, (TILE - th) // 2)`` with ``tw = round(W * s)``;
- a box ``[x, y, w, h]`` is outlined 2 px wide INSIDE the scaled box: its left edge is the pixel columns
  ``round(x * s)`` and ``round(x * s) + 1`` of the tile, its right edge ``round((x + w) * s) - 2`` and ``- 1``;
  the halo is the column on each side of those.

Images are opened with their EXIF orientation applied (as the annotations see them) and stretched to the
recorded size. An image that cannot be found is a grey placeholder of the recorded size saying so. Colours
come from a fixed palette in alphabetical order of the category names, so one category set always gets the
same colours. The same input gives the same PNG bytes (Pillow's bundled default font, no timestamps).

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.preview import HEADER, MARGIN, category_colors, render
    >>> ds = Dataset.build(images={"file_name": ["nowhere.jpg"], "width": [64], "height": [32]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [8.0], "y": [4.0], "w": [16.0], "h": [8.0]})
    >>> sheet = render(ds)
    >>> s = 4  # 256 // 64: the 64 x 32 image becomes a 256 x 128 tile at (MARGIN, MARGIN + HEADER + 64)
    >>> x, y = MARGIN + 8 * s, MARGIN + HEADER + 64 + 4 * s + 10  # the box's left edge, 10 px down
    >>> sheet.getpixel((x, y)) == category_colors(["cat"])["cat"]
    True
"""

from __future__ import annotations

import colorsys
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .converters.coco import write_json_atomic
from .converters.conventions import source_text
from .errors import PrelabelError, UsageError
from .geometry import rle_decode
from .model import Dataset
from .paths import safe_join, safe_relative
from .progress import progress
from .storage import is_url, join_url, url_to_fs

__all__ = [
    "CAPTION", "GAP", "HEADER", "LEGEND_ROW", "MARGIN", "PALETTE", "SWATCH", "TILE", "category_colors",
    "legend_entries", "place_labels", "problem_images", "render", "save", "select_images", "tile_scale", "to_png",
]

TILE = 256          # cell size: the long side of an image tile
MARGIN = 8          # sheet border
GAP = 8             # between cells (and between the grid and the legend)
HEADER = 22         # title line above the grid
CAPTION = 32        # text strip under each cell: file name, then problems or size
LEGEND_ROW = 18     # one legend line
SWATCH = 12         # legend colour swatch

BACKGROUND = (255, 255, 255)
CELL = (228, 228, 228)
PLACEHOLDER = (150, 150, 150)
TEXT = (20, 20, 20)
MUTED = (100, 100, 100)
PROBLEM = (200, 0, 0)
HALO = (0, 0, 0)
FILL_ALPHA = 80     # polygon fill opacity (of 255)
MASK_ALPHA = 110    # mask fill opacity

# a fixed palette of distinguishable colours (after Sasha Trubetskoy's 20 colours), then golden-ratio hues
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 130, 200), (255, 225, 25), (240, 50, 230), (230, 25, 75), (60, 180, 75), (245, 130, 48),
    (70, 240, 240), (145, 30, 180), (210, 245, 60), (0, 128, 128), (250, 190, 212), (170, 110, 40),
    (128, 0, 0), (220, 190, 255), (128, 128, 0), (0, 0, 128), (170, 255, 195), (255, 215, 180),
    (128, 128, 128), (255, 250, 200),
)

_FONT_CACHE: dict[int, Any] = {}


def _font(size: int) -> Any:
    if size not in _FONT_CACHE:
        try:
            _FONT_CACHE[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: the bitmap default font has one size
            _FONT_CACHE[size] = ImageFont.load_default()
    return _FONT_CACHE[size]


# ---------------------------------------------------------------------------------------------- colours
def _colour(i: int) -> tuple[int, int, int]:
    if i < len(PALETTE):
        return PALETTE[i]
    r, g, b = colorsys.hsv_to_rgb(((i - len(PALETTE)) * 0.6180339887498949 + 0.07) % 1.0, 0.8, 0.92)
    return (round(r * 255), round(g * 255), round(b * 255))


def category_colors(names: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """Each category name's colour: the palette in alphabetical order of the (distinct) names.

    >>> category_colors(["dog", "cat"])
    {'cat': (0, 130, 200), 'dog': (255, 225, 25)}
    """
    return {name: _colour(i) for i, name in enumerate(sorted({str(n) for n in names}))}


def legend_entries(ds: Dataset) -> list[tuple[str, tuple[int, int, int], int]]:
    """The legend, in drawing order: (category name, colour, annotations in the whole dataset)."""
    colours = category_colors(ds.all_category_names)
    counts = ds.annotations["category"].astype(str).value_counts().to_dict() if len(ds.annotations) else {}
    return [(name, colours[name], int(counts.get(name, 0))) for name in sorted(colours)]


# ---------------------------------------------------------------------------------------------- problems
_LINE = re.compile(r"^(.*):(\d+)$")


def problem_images(ds: Dataset, *, source: Dataset | None = None) -> dict[int, dict[str, int]]:
    """Images the report has something to say about: ``{image row: {code: count}}``.

    Drops and changes are matched to images by their source location (``file:line``): first against the
    annotations of ``source`` (the dataset as read, before steps dropped rows; same images table) and of
    ``ds``, then by the file alone when one image has that ``src_file`` or ``file_name``. Warnings and errors
    of the report are matched by their source the same way (an image file name, a label file). An image that
    has fewer annotations in ``ds`` than in ``source`` had drops even when their source names no one image (a
    COCO file, a local project): it counts them as ``dropped``.
    """
    rep = ds.report
    parts = [f[["reason", "source"]] for f in (rep.drops, rep.changes) if not f.empty]
    diags = [(d.code, d.source) for d in rep.diagnostics if d.severity != "info"]
    if diags:
        parts.append(pd.DataFrame(diags, columns=["reason", "source"]))
    lost: dict[int, int] = {}
    if source is not None and len(source.images) == len(ds.images):
        n_img = len(ds.images)
        before = np.bincount(source.annotations["image"].to_numpy(dtype=np.int64), minlength=n_img)
        after = np.bincount(ds.annotations["image"].to_numpy(dtype=np.int64), minlength=n_img)
        lost = {int(i): int(before[i] - after[i]) for i in np.flatnonzero(before > after).tolist()}
    if not parts:
        return {i: {"dropped": n} for i, n in lost.items()}
    todo = pd.concat(parts, ignore_index=True).astype(str)
    # file:line -> image, from annotation rows; a key naming two different images cannot tell which one
    keyed: list[pd.DataFrame] = []
    for d in (source, ds):
        if d is None or len(d.annotations) == 0:
            continue
        a = d.annotations
        files = a["src_file"].astype(str)
        keys = files.where(a["src_line"].to_numpy() == 0, files + ":" + a["src_line"].astype(str))
        keyed.append(pd.DataFrame({"key": keys.to_numpy(), "image": a["image"].to_numpy(dtype=np.int64)}))
    where = pd.Series(np.nan, index=todo.index)
    if keyed:
        pairs = pd.concat(keyed, ignore_index=True).drop_duplicates()
        pairs = pairs[~pairs["key"].duplicated(keep=False)]
        where = todo["source"].map(pairs.set_index("key")["image"])
    # then the file alone (the source itself, or its part before ':line'), when one image has that src_file
    # or file_name
    img = ds.images
    by_file = pd.concat([pd.Series(np.arange(len(img)), index=img[c].astype(str).to_numpy())
                         for c in ("src_file", "file_name")])
    by_file = by_file[~by_file.index.duplicated(keep=False) & (by_file.index != "")]
    file_part = todo["source"].str.replace(_LINE, r"\1", regex=True)
    for lookup in (todo["source"], file_part):
        missing = where.isna()
        if not missing.any():
            break
        where = where.where(~missing, lookup.map(by_file))
    found = todo.assign(image=where).dropna(subset=["image"])
    out: dict[int, dict[str, int]] = {}
    if len(found):
        counts = found.groupby([found["image"].astype(np.int64), "reason"], sort=True).size()
        for (i, code), c in counts.items():
            out.setdefault(int(i), {})[str(code)] = int(c)
    for i, n in lost.items():   # drops that the sources did not place on their image
        codes = out.setdefault(i, {})
        if not any(str(c).startswith("dropped") for c in codes):
            codes["dropped"] = n
    return dict(sorted(out.items()))


def select_images(ds: Dataset, problems: Mapping[int, Any], *, n: int = 16, seed: int = 0) -> list[int]:
    """The image rows to draw: those with problems first (in dataset order), then the others; when there
    are more than ``n``, the others are a random sample (``seed``) kept in dataset order."""
    if n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})")
    total = len(ds.images)
    first = [i for i in sorted(problems) if 0 <= i < total][:n]
    room = n - len(first)
    keep = np.ones(total, dtype=bool)
    keep[first] = False
    others = np.flatnonzero(keep)
    if room <= 0:
        return first
    if len(others) > room:
        rng = np.random.default_rng(seed)
        others = np.sort(rng.choice(others, size=room, replace=False))
    return first + [int(i) for i in others]


# ---------------------------------------------------------------------------------------------- layout
def tile_scale(width: int, height: int) -> float:
    """The scale of an image of this (recorded) size on its tile (see the module docstring).

    >>> tile_scale(96, 64), tile_scale(200, 100), tile_scale(1024, 768)
    (2.0, 1.28, 0.25)
    """
    long = max(int(width), int(height))
    if long <= 0:
        return 1.0
    if 2 * long <= TILE:
        return float(TILE // long)
    return TILE / long


def _tile_size(width: int, height: int) -> tuple[int, int, float]:
    if width <= 0 or height <= 0:
        return TILE, TILE, 1.0
    s = tile_scale(width, height)
    return max(1, round(width * s)), max(1, round(height * s)), s


def _fit(text: str, font: Any, width: int, *, keep: str = "end") -> str:
    """``text`` shortened with "..." to fit ``width`` pixels, keeping its end (file names) or its start."""
    if font.getlength(text) <= width:
        return text
    ell = "..."
    if keep == "start":
        n = 0
        while n < len(text) and font.getlength(text[:n + 1] + ell) <= width:
            n += 1
        return text[:n] + ell
    lo = 0
    while lo < len(text) and font.getlength(ell + text[-(lo + 1):]) <= width:
        lo += 1
    return ell + text[-lo:] if lo else ell


def _text_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


# ---------------------------------------------------------------------------------------------- images
def _resolve(ds: Dataset, row: int, images: str | Path | None,
             storage_options: Mapping[str, Any] | None = None) -> Path | io.BytesIO | None:
    """The image file of ``row``: under the images root, else its ``path``; a URL (either) is downloaded."""
    name = str(ds.images.at[row, "file_name"])
    if is_url(images):
        rel = safe_relative(name)
        got = _fetch(join_url(str(images), rel), storage_options) if rel is not None else None
        if got is not None:
            return got
    elif images is not None:
        p = safe_join(Path(images), name)
        if p is not None and p.is_file():
            return p
    path = ds.images.at[row, "path"]
    if is_url(path):
        return _fetch(str(path), storage_options)
    if isinstance(path, (str, Path)) and str(path) and Path(path).is_file():
        return Path(path)
    return None


def _fetch(url: str, storage_options: Mapping[str, Any] | None) -> io.BytesIO | None:
    """The bytes of a remote image (:mod:`prelabel.storage`), or None when it cannot be had."""
    try:
        fs, path = url_to_fs(url, storage_options)
        return io.BytesIO(fs.cat_file(path))
    except (OSError, ValueError, PrelabelError):
        return None


def _load(path: Path | io.BytesIO, tw: int, th: int, width: int, height: int) -> tuple[Image.Image | None, str]:
    """The image scaled to the tile (EXIF orientation applied), and a note when it differs from the record."""
    try:
        with Image.open(path) as im:
            orient = im.getexif().get(0x0112, 1)
            sw, sh = im.size
            seen = (sh, sw) if orient in (5, 6, 7, 8) else (sw, sh)
            if im.format == "JPEG":
                im.draft("RGB", (max(tw, th), max(tw, th)))
            oriented = ImageOps.exif_transpose(im)
            rgb = oriented.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, "image unreadable"
    note = "" if seen == (width, height) else f"file is {seen[0]}x{seen[1]}"
    if rgb.size != (tw, th):
        resample = Image.Resampling.NEAREST if tw >= rgb.width else Image.Resampling.BILINEAR
        rgb = rgb.resize((tw, th), resample)
    return rgb, note


def _placeholder(tw: int, th: int, name: str, why: str) -> Image.Image:
    im = Image.new("RGB", (tw, th), PLACEHOLDER)
    d = ImageDraw.Draw(im)
    font = _font(12)
    lines = [_fit(name, font, tw - 8), why]
    total = 16 * len(lines)
    y = max(2, (th - total) // 2)
    for line in lines:
        w = font.getlength(line)
        d.text((max(2, (tw - w) / 2), y), line, fill=(255, 255, 255), font=font)
        y += 16
    return im


# ---------------------------------------------------------------------------------------------- drawing
def _draw_tile(tile: Image.Image, ann: pd.DataFrame, rows: np.ndarray, s: float,
               colours: Mapping[str, tuple[int, int, int]], skeletons: Mapping[str, Any]) -> Image.Image:
    """Draw the annotation ``rows`` on ``tile`` (scaled by ``s``); returns the new tile."""
    if len(rows) == 0:
        return tile
    th, tw = tile.height, tile.width
    overlay = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    od = ImageDraw.Draw(overlay)
    outlines: list[tuple[str, Any, tuple[int, int, int]]] = []
    cats = ann["category"].to_numpy(dtype=object)
    seg = ann["segmentation"].to_numpy(dtype=object)
    kps = ann["keypoints"].to_numpy(dtype=object)
    box = ann[["x", "y", "w", "h"]].to_numpy(dtype=np.float64)
    score = ann["score"].to_numpy(dtype=np.float64)
    tags: list[tuple[float, float, str, tuple[int, int, int]]] = []
    for r in rows:
        col = colours.get(str(cats[r]), (255, 0, 0))
        g = seg[r]
        x, y, w, h = box[r]
        if isinstance(g, dict):
            mask = _mask_tile(g, tw, th)
            if mask is not None:
                layer = Image.new("RGBA", (tw, th), (*col, MASK_ALPHA))
                overlay.paste(layer, (0, 0), Image.fromarray(mask * 255))
                outlines.append(("edge", _edges(mask), col))
        elif isinstance(g, (list, tuple)) and len(g):
            for part in g:
                pts = np.asarray(part, dtype=np.float64).reshape(-1, 2) * s
                if len(pts) >= 3 and np.isfinite(pts).all():
                    flat = [(float(px), float(py)) for px, py in pts]
                    od.polygon(flat, fill=(*col, FILL_ALPHA))
                    outlines.append(("poly", flat, col))
        elif np.isfinite(box[r]).all() and w > 0 and h > 0:
            x0, y0 = round(x * s), round(y * s)
            x1, y1 = round((x + w) * s) - 1, round((y + h) * s) - 1
            if x1 >= x0 and y1 >= y0:
                outlines.append(("box", (x0, y0, x1, y1), col))
        k = kps[r]
        if k is not None and not isinstance(k, float):
            outlines.append(("kps", (np.asarray(k, dtype=np.float64).reshape(-1, 3), skeletons.get(str(cats[r]))),
                             col))
        if np.isfinite(box[r]).all():
            label = str(cats[r]) + (f" {score[r]:.2f}" if np.isfinite(score[r]) else "")
            tags.append((x * s, y * s, label, col))
    out = Image.alpha_composite(tile.convert("RGBA"), overlay)
    d = ImageDraw.Draw(out)
    for kind, geo, col in outlines:
        if kind == "box":
            x0, y0, x1, y1 = geo
            d.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=HALO, width=4)
            d.rectangle((x0, y0, x1, y1), outline=col, width=2)
        elif kind == "poly":
            ring = [*geo, geo[0]]
            d.line(ring, fill=HALO, width=4, joint="curve")
            d.line(ring, fill=col, width=2, joint="curve")
        elif kind == "edge":
            edge = Image.fromarray(geo.astype(np.uint8) * 255)
            out.paste(Image.new("RGBA", (tw, th), (*col, 255)), (0, 0), edge)
    font = _font(10)
    spots = place_labels([(tx, ty, int(font.getlength(label)) + 4) for tx, ty, label, _ in tags], tw, th)
    for (_tx, _ty, label, col), (left, top) in zip(tags, spots, strict=True):
        lw = int(font.getlength(label)) + 4
        d.rectangle((left, top, left + lw, top + 12), fill=col)
        d.text((left + 2, top), label, fill=_text_colour(col), font=font)
    for kind, geo, col in outlines:  # keypoints last: small, and never hidden by a tag
        if kind == "kps":
            _draw_keypoints(d, geo[0], geo[1], s, col)
    return out.convert("RGB")


def place_labels(tags: Sequence[tuple[float, float, int]], tw: int, th: int, *,
                 height: int = 13) -> list[tuple[float, float]]:
    """Where to draw each label (x, y of its box's corner, its width), so that no two overlap: above the box
    when it fits, else below its top edge; a label that would cover one already placed moves down a line (then
    up, when the tile ends) until it is clear.

    >>> place_labels([(10, 30, 40), (14, 31, 40), (200, 30, 40)], 256, 256)
    [(10, 17), (14, 31), (200, 17)]
    """
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float]] = []
    for tx, ty, lw in tags:
        left = min(max(0.0, tx), max(0.0, tw - lw))
        top = ty - height if ty - height >= 0 else ty + 2
        tries = [top + k * height for k in range(0, th // height + 1)] + \
                [top - k * height for k in range(1, th // height + 1)]
        for cand in tries:
            if cand < 0 or cand + height > th + height:
                continue
            if not any(left < x1 and x0 < left + lw and cand < y1 and y0 < cand + height
                       for x0, y0, x1, y1 in placed):
                top = cand
                break
        placed.append((left, top, left + lw, top + height))
        out.append((left, top))
    return out


def _mask_tile(rle: Mapping[str, Any], tw: int, th: int) -> np.ndarray | None:
    try:
        m = rle_decode(dict(rle))
    except (ValueError, TypeError, KeyError):
        return None
    if m.size == 0:
        return None
    im = Image.fromarray((m > 0).astype(np.uint8) * 255).resize((tw, th), Image.Resampling.NEAREST)
    out: np.ndarray = (np.asarray(im) > 0).astype(np.uint8)
    return out


def _edges(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (the image border counts as outside)."""
    m = mask.astype(bool)
    p = np.pad(m, 1, constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    edge: np.ndarray = m & ~inner
    return edge


def _draw_keypoints(d: ImageDraw.ImageDraw, k: np.ndarray, skeleton: Any, s: float,
                    col: tuple[int, int, int]) -> None:
    visible = (k[:, 2] > 0) & np.isfinite(k[:, :2]).all(axis=1)
    pts = k[:, :2] * s
    if isinstance(skeleton, (list, tuple)):
        for pair in skeleton:
            try:
                a, b = int(pair[0]) - 1, int(pair[1]) - 1
            except (TypeError, ValueError, IndexError):
                continue
            if 0 <= a < len(k) and 0 <= b < len(k) and visible[a] and visible[b]:
                seg = [(float(pts[a, 0]), float(pts[a, 1])), (float(pts[b, 0]), float(pts[b, 1]))]
                d.line(seg, fill=HALO, width=4)
                d.line(seg, fill=col, width=2)
    for j in np.flatnonzero(visible):
        px, py = float(pts[j, 0]), float(pts[j, 1])
        fill = col if k[j, 2] >= 2 else None  # labelled but not visible: a ring
        d.ellipse((px - 4, py - 4, px + 4, py + 4), fill=fill, outline=HALO, width=1)
        if fill is None:
            d.ellipse((px - 3, py - 3, px + 3, py + 3), outline=col, width=2)


# ---------------------------------------------------------------------------------------------- the sheet
def render(ds: Dataset, *, images: str | Path | None = None, n: int = 16, seed: int = 0,
           source: Dataset | None = None, show_progress: bool = False,
           storage_options: Mapping[str, Any] | None = None) -> Image.Image:
    """The contact sheet of ``ds`` (see the module docstring) as an RGB PIL image.

    ``images`` is the images root (file names are looked up under it first, then the ``path`` column);
    ``n`` the most images drawn; ``seed`` picks which when there are more; ``source`` the dataset as read
    before prepare steps dropped rows, so dropped annotations find their image (:func:`problem_images`).
    The root and the paths may be fsspec URLs (``s3://...``): the drawn images are downloaded, with
    ``storage_options`` (:mod:`prelabel.storage`).
    """
    root = images if is_url(images) else (Path(images) if images is not None else None)
    problems = problem_images(ds, source=source)
    chosen = select_images(ds, problems, n=n, seed=seed)
    k = len(chosen)
    cols = max(1, math.ceil(math.sqrt(k))) if k else 1
    rows_n = math.ceil(k / cols) if k else 0
    width = 2 * MARGIN + cols * TILE + (cols - 1) * GAP
    grid_h = rows_n * (TILE + CAPTION) + max(0, rows_n - 1) * GAP
    legend = legend_entries(ds)
    font, small = _font(12), _font(10)
    # legend flow: each entry is a swatch, its text, and a 16 px space
    placed: list[tuple[int, int, str, tuple[int, int, int], str]] = []
    lx, lrow = MARGIN, 0
    for name, col, count in legend:
        text = _fit(f"{name} ({count})", font, width - 2 * MARGIN - SWATCH - 4)
        item_w = SWATCH + 4 + int(math.ceil(font.getlength(text)))
        if lx > MARGIN and lx + item_w > width - MARGIN:
            lx, lrow = MARGIN, lrow + 1
        placed.append((lx, lrow, name, col, text))
        lx += item_w + 16
    legend_rows = (lrow + 1) if legend else 0
    legend_y = MARGIN + HEADER + grid_h + GAP
    height = legend_y + legend_rows * LEGEND_ROW + MARGIN
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(sheet)

    src_txt = source_text(ds.report.input.get("source"))
    title = (f"{k} of {len(ds.images)} image(s), {len(ds.annotations)} annotation(s)"
             + (f"; {sum(1 for i in chosen if i in problems)} with problems first" if problems else ""))
    d.text((MARGIN, MARGIN + 2), _fit(f"{title}   {src_txt}" if src_txt else title, font, width - 2 * MARGIN,
                                      keep="start"), fill=TEXT, font=font)

    ann = ds.annotations
    img_of = ann["image"].to_numpy(dtype=np.int64)
    order = np.argsort(img_of, kind="stable")
    starts = np.searchsorted(img_of[order], np.arange(len(ds.images) + 1))
    colours = {name: col for name, col, _ in legend}
    skeletons = {str(nm): sk for nm, sk in zip(ds.categories["name"], ds.categories["skeleton"], strict=True)}
    widths = ds.images["width"].to_numpy(dtype=np.int64)
    heights = ds.images["height"].to_numpy(dtype=np.int64)

    with progress(k, desc="drawing", unit="images", enabled=show_progress) as bar:
        for pos, i in enumerate(chosen):
            col_i, row_i = pos % cols, pos // cols
            cx = MARGIN + col_i * (TILE + GAP)
            cy = MARGIN + HEADER + row_i * (TILE + CAPTION + GAP)
            W, H = int(widths[i]), int(heights[i])
            tw, th, s = _tile_size(W, H)
            name = str(ds.images.at[i, "file_name"])
            notes: list[str] = []
            path = _resolve(ds, i, root, storage_options)
            tile: Image.Image | None = None
            if path is not None:
                tile, note = _load(path, tw, th, W, H)
                if note:
                    notes.append(note)
            if tile is None:
                why = notes.pop() if notes else "image not found"
                notes.append(why)
                tile = _placeholder(tw, th, name, why)
            rows = order[starts[i]:starts[i + 1]]
            tile = _draw_tile(tile, ann, rows, s, colours, skeletons)
            d.rectangle((cx, cy, cx + TILE - 1, cy + TILE - 1), fill=CELL)
            sheet.paste(tile, (cx + (TILE - tw) // 2, cy + (TILE - th) // 2))
            d.text((cx, cy + TILE + 2), _fit(name, font, TILE), fill=TEXT, font=font)
            probs = [f"{code} {c}" if c > 1 else code for code, c in problems.get(i, {}).items()]
            line2 = ", ".join([*notes, *probs])
            if line2:
                d.text((cx, cy + TILE + 17), _fit(line2, small, TILE), fill=PROBLEM, font=small)
            else:
                d.text((cx, cy + TILE + 17), f"{W}x{H}, {len(rows)} annotation(s)", fill=MUTED, font=small)
            bar.advance()

    for lx, lrow, _name, col, text in placed:
        y = legend_y + lrow * LEGEND_ROW
        sy = y + (LEGEND_ROW - SWATCH) // 2
        d.rectangle((lx, sy, lx + SWATCH - 1, sy + SWATCH - 1), fill=col, outline=HALO)
        d.text((lx + SWATCH + 4, y + 2), text, fill=TEXT, font=font)
    return sheet


def to_png(sheet: Image.Image) -> bytes:
    """The PNG bytes of a sheet (no metadata: the same pixels give the same bytes)."""
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def save(ds: Dataset, out: str | Path, *, images: str | Path | None = None, n: int = 16, seed: int = 0,
         source: Dataset | None = None, show_progress: bool = False,
         storage_options: Mapping[str, Any] | None = None) -> Path:
    """Render ``ds`` (see :func:`render`) and write the PNG to ``out`` atomically; returns ``out``."""
    sheet = render(ds, images=images, n=n, seed=seed, source=source, show_progress=show_progress,
                   storage_options=storage_options)
    p = Path(out)
    write_json_atomic(p, to_png(sheet))  # an atomic bytes writer, whatever the name says
    return p
