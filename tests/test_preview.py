"""prelabel preview: the contact sheet draws each object where it is, in its colour, problems first.

Layout constants (prelabel/preview.py): MARGIN 8, HEADER 22, TILE 256, GAP 8, CAPTION 32, LEGEND_ROW 18,
SWATCH 12. Cell i starts at x = 8 + col * 264, y = 30 + row * 296; an image W x H whose long side fits twice in
256 is scaled by the whole factor 256 // long, and centred in its cell. Box outlines are 2 px wide inside the
scaled box (left edge columns round(x*s), +1; right edge round((x+w)*s) - 2, - 1), with a black 1 px halo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from prelabel import preview as pv
from prelabel.adapters.base import ReadOptions
from prelabel.cli import main
from prelabel.geometry import rle_encode
from prelabel.model import Dataset
from prelabel.pipeline import prepare, read

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
IMAGES = SAMPLE / "images"
BLACK = (0, 0, 0)


@pytest.fixture(scope="module")
def coco_sheet() -> tuple[Image.Image, dict[str, tuple[int, int, int]], Dataset]:
    ds = read(SAMPLE / "coco" / "instances.json", options=ReadOptions(images=IMAGES))
    return pv.render(ds, images=IMAGES), pv.category_colors(ds.category_names), ds


def test_palette_is_alphabetical_and_distinct(coco_sheet) -> None:
    _, colours, _ = coco_sheet
    # car, cat, dog, person in alphabetical order take the first four palette colours
    assert colours == {"car": pv.PALETTE[0], "cat": pv.PALETTE[1], "dog": pv.PALETTE[2], "person": pv.PALETTE[3]}
    assert len(set(pv.PALETTE)) == len(pv.PALETTE)
    # the colours do not depend on the order a format lists its categories in
    assert pv.category_colors(["person", "dog", "car", "cat"]) == colours


def test_sheet_size(coco_sheet) -> None:
    sheet, _, _ = coco_sheet
    # 5 images -> 3 columns, 2 rows. width 8 + 3*256 + 2*8 + 8 = 800;
    # grid 2*(256+32) + 8 = 584; legend at 8 + 22 + 584 + 8 = 622, one row of 18, margin 8 -> 648
    assert sheet.size == (800, 648)


def test_box_edges_at_hand_computed_pixels(coco_sheet) -> None:
    sheet, colours, _ = coco_sheet
    px = sheet.getpixel
    # street.jpg 96x64, cell 0 at (8, 30): s = 256 // 96 = 2 -> 192 x 128 tile at (8 + 32, 30 + 64) = (40, 94).
    # car [8, 30, 48, 28]: left edge tile columns 16, 17 -> sheet 56, 57; right edge round(56*2) - 2, -1 = 110,
    # 111 -> 150, 151; rows 60 .. 115 -> sheet 154 .. 209, middle row 181
    assert px((56, 181)) == colours["car"] and px((57, 181)) == colours["car"]
    assert px((55, 181)) == BLACK and px((58, 181)) == BLACK  # the halo on both sides
    assert px((150, 181)) == colours["car"] and px((151, 181)) == colours["car"]
    assert px((152, 181)) == BLACK
    # park.png 64x48, cell 1 at (272, 30): s = 4 -> 256 x 192 tile at (272, 30 + 32) = (272, 62).
    # cat [44, 8, 16, 16]: top edge tile rows 32, 33 -> sheet 94, 95; columns 176 .. 239 -> 448 .. 511
    assert px((480, 94)) == colours["cat"] and px((480, 95)) == colours["cat"]
    # room.png 80x48, cell 3 (row 1, col 0) at (8, 326): s = 3 -> 240 x 144 at (8 + 8, 326 + 56) = (16, 382).
    # dog [2, 2, 28, 26]: left edge tile column 6 -> sheet 22; rows 6 .. 83 -> 388 .. 465
    assert px((22, 426)) == colours["dog"]


def test_exif_orientation_applied(coco_sheet) -> None:
    sheet, colours, _ = coco_sheet
    px = sheet.getpixel
    # portrait.jpg stored 48x32 with orientation 6, seen 32x48: cell 2 at (536, 30), s = 256 // 48 = 5 ->
    # 160 x 240 tile at (536 + 48, 30 + 8) = (584, 38). cat [4, 10, 24, 30]: left edge tile column 20 -> 604
    assert px((604, 160)) == colours["cat"]
    # inside the box the image is the cat's orange fill (230, 120, 40; JPEG): tile (80, 125) -> (664, 163);
    # below it the background (235, 235, 225): tile (10, 225) -> (594, 263). Unrotated, these would swap.
    assert np.allclose(px((664, 163)), (230, 120, 40), atol=12)
    assert np.allclose(px((594, 263)), (235, 235, 225), atol=12)


def test_polygon_and_keypoints(coco_sheet) -> None:
    sheet, colours, _ = coco_sheet
    px = sheet.getpixel
    # room.png cat polygon edge (70, 12) -> (66, 40), scaled by 3: (210, 36) -> (198, 120), midpoint
    # (204, 78) -> sheet (16 + 204, 382 + 78) = (220, 460)
    assert px((220, 460)) == colours["cat"]
    # street.jpg person head keypoint (74, 12) v=2 -> tile (148, 24) -> sheet (188, 118): a filled dot
    assert px((188, 118)) == colours["person"]
    # skeleton head -> left hand (64, 34): tile (128, 68); midpoint (138, 46) -> sheet (178, 140)
    assert px((178, 140)) == colours["person"]


def test_legend(coco_sheet) -> None:
    sheet, colours, ds = coco_sheet
    # the legend lists every category, alphabetically, with its count (sample truth: cat 3, dog 2, car 1,
    # person 1) and colour
    assert pv.legend_entries(ds) == [("car", colours["car"], 1), ("cat", colours["cat"], 3),
                                     ("dog", colours["dog"], 2), ("person", colours["person"], 1)]
    # first swatch: x 8 .. 19, y 622 + (18 - 12) // 2 = 625 .. 636
    assert sheet.getpixel((14, 630)) == colours["car"]
    assert sheet.getpixel((8, 625)) == BLACK  # its outline


def _problem_dataset(tmp_path: Path) -> tuple[Dataset, Dataset]:
    """Three 40x40 images: a.png (red, fine), b.png (blue, a box over its right border), c.png (green, a box
    entirely outside: dropped)."""
    for name, rgb in (("a.png", (255, 0, 0)), ("b.png", (0, 0, 255)), ("c.png", (0, 255, 0))):
        Image.new("RGB", (40, 40), rgb).save(tmp_path / name)
    raw = Dataset.build(
        images={"file_name": ["a.png", "b.png", "c.png"], "width": [40, 40, 40], "height": [40, 40, 40]},
        annotations={"image": [0, 1, 2], "category": ["cat", "cat", "dog"], "x": [5.0, 30.0, 50.0],
                     "y": [5.0, 5.0, 5.0], "w": [10.0, 20.0, 5.0], "h": [10.0, 10.0, 5.0],
                     "src_file": ["labels.txt"] * 3, "src_line": [1, 2, 3]})
    return raw, prepare(raw, unknown="keep")


def test_problem_images_come_first(tmp_path: Path) -> None:
    raw, ds = _problem_dataset(tmp_path)
    assert len(ds) == 2  # c.png's box was dropped
    probs = pv.problem_images(ds, source=raw)
    assert probs == {1: {"clipped": 1}, 2: {"dropped.outside": 1}}
    assert pv.select_images(ds, probs, n=16) == [1, 2, 0]
    sheet = pv.render(ds, images=tmp_path, source=raw)
    # 3 images -> 2 columns. 40x40, s = 6 -> 240 x 240 tiles at cell + (8, 8).
    # cell 0 at (8, 30): tile (16, 38); its pixel (20, 200) (tile (4, 162), below every box) is b.png's blue
    assert sheet.getpixel((20, 200)) == (0, 0, 255)
    # cell 1 at (272, 30): c.png, green; cell 2 (row 1) at (8, 326): a.png, red
    assert sheet.getpixel((284, 200)) == (0, 255, 0)
    assert sheet.getpixel((20, 496)) == (255, 0, 0)
    # the problem is written in red under the tile: some pixels of the second caption line are red-ish
    cap = np.asarray(sheet.crop((8, 30 + 256 + 17, 8 + 256, 30 + 256 + 30)))
    assert ((cap[..., 0] > 150) & (cap[..., 1] < 80) & (cap[..., 2] < 80)).any()
    # b.png's clipped box: x 30 .. 40 -> tile columns 180, 181 for its left edge -> sheet 196, 197
    assert sheet.getpixel((196, 120)) == pv.category_colors(["cat", "dog"])["cat"]


def test_problems_matched_by_file(tmp_path: Path) -> None:
    ds = Dataset.build(images={"file_name": ["a.png", "b.png", "c.png"], "width": [8] * 3, "height": [8] * 3,
                               "src_file": ["labels/a.txt", "labels/b.txt", "labels/c.txt"]})
    # a row dropped while reading never reached the table: its label file names the image
    ds.report.drop_one("dropped.invalid", category="cat", source_file="labels/b.txt", source_line=7)
    # a warning about an image file; an info note is not a problem
    ds.report.note("image.missing", "c.png", "no such file")
    ds.report.note("image.unlabeled", "a.png", "no label file", severity="info")
    assert pv.problem_images(ds) == {1: {"dropped.invalid": 1}, 2: {"image.missing": 1}}


def test_sampling_with_seed(tmp_path: Path) -> None:
    raw, ds = _problem_dataset(tmp_path)
    # n = 2: both problem images, no room for the others
    assert pv.select_images(ds, pv.problem_images(ds, source=raw), n=2, seed=5) == [1, 2]
    many = Dataset.build(images={"file_name": [f"{i}.png" for i in range(10)], "width": [10] * 10,
                                 "height": [10] * 10})
    a = pv.select_images(many, {}, n=4, seed=1)
    assert len(a) == 4 and a == sorted(a) and a == pv.select_images(many, {}, n=4, seed=1)
    assert pv.select_images(many, {}, n=20) == list(range(10))


def test_missing_image_placeholder() -> None:
    ds = Dataset.build(images={"file_name": ["missing.jpg"], "width": [50], "height": [20]},
                       annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [1.0], "w": [10.0],
                                    "h": [10.0]})
    sheet = pv.render(ds, images="/nonexistent")
    # 50x20: s = 256 // 50 = 5 -> a 250 x 100 placeholder at (8 + 3, 30 + 78) = (11, 108) .. (260, 207)
    assert sheet.getpixel((11, 150)) == pv.PLACEHOLDER  # left of the box and the text
    assert sheet.getpixel((10, 150)) == pv.CELL  # just outside: the recorded size is kept
    assert sheet.getpixel((200, 207)) == pv.PLACEHOLDER and sheet.getpixel((200, 208)) == pv.CELL
    # the box is still drawn: left edge tile column 5 -> sheet 16
    assert sheet.getpixel((16, 140)) == pv.category_colors(["cat"])["cat"]


def test_mask_drawn_semi_transparent(tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), (255, 255, 255)).save(tmp_path / "m.png")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:16, 8:16] = 1  # an 8x8 square: x 8 .. 16, y 8 .. 16
    ds = Dataset.build(images={"file_name": ["m.png"], "width": [32], "height": [32]},
                       annotations={"image": [0], "category": ["dog"], "x": [8.0], "y": [8.0], "w": [8.0],
                                    "h": [8.0], "segmentation": [rle_encode(mask)]})
    sheet = pv.render(ds, images=tmp_path)
    colour = pv.category_colors(["dog"])["dog"]
    # s = 8 -> 256 x 256 tile at (8, 30). The mask's left edge is tile column 64 -> sheet 72, full colour
    assert sheet.getpixel((72, 30 + 100)) == colour
    # inside: white blended with the colour at MASK_ALPHA / 255
    a = pv.MASK_ALPHA / 255
    expected = [255 * (1 - a) + c * a for c in colour]
    assert np.allclose(sheet.getpixel((108, 130)), expected, atol=2)
    # outside the mask the image is untouched
    assert sheet.getpixel((40, 280)) == (255, 255, 255)


def test_same_input_same_png_bytes(tmp_path: Path) -> None:
    runner = CliRunner()
    outs = []
    for name in ("one.png", "two.png"):
        res = runner.invoke(main, ["preview", str(SAMPLE / "cvat" / "annotations.xml"), "--images", str(IMAGES),
                                   "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert outs[0][:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(tmp_path / "one.png") as im:
        assert im.size == (800, 648)


def test_cli_preview_n_and_quiet(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["-q", "preview", str(SAMPLE / "yolo"), "-o", str(tmp_path / "p.png"),
                                    "--n", "2", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert res.output == ""
    with Image.open(tmp_path / "p.png") as im:
        # 2 images -> 2 columns, 1 row: width 8 + 2*256 + 8 + 8 = 536
        assert im.size[0] == 536
    res = CliRunner().invoke(main, ["preview", str(SAMPLE / "yolo"), "-o", str(tmp_path / "p.png"), "--n", "0"])
    assert res.exit_code == 2


def test_cli_preview_reads_url_sources_and_draws_remote_images(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/preview-url/cvat/annotations.xml", (SAMPLE / "cvat" / "annotations.xml").read_bytes())
    for p in IMAGES.iterdir():
        fs.pipe(f"/preview-url/images/{p.name}", p.read_bytes())
    runner = CliRunner()
    res = runner.invoke(main, ["-q", "preview", str(SAMPLE / "cvat" / "annotations.xml"), "--images", str(IMAGES),
                               "-o", str(tmp_path / "local.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["-q", "preview", "memory://preview-url/cvat/annotations.xml", "--images",
                               "memory://preview-url/images", "-o", str(tmp_path / "remote.png")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "local.png") as a, Image.open(tmp_path / "remote.png") as b:
        assert a.size == b.size == (800, 648)
        # below the header line (which names the source) the sheets are the same pixels: the remote images
        # were downloaded and drawn, not grey "image not found" tiles
        below = (0, pv.MARGIN + pv.HEADER, a.size[0], a.size[1])
        assert np.array_equal(np.asarray(a.crop(below)), np.asarray(b.crop(below)))
    fs.rm("/preview-url", recursive=True)
