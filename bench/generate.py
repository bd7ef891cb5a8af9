"""Generate the benchmark dataset: the same annotations in YOLO, Pascal VOC, CVAT and Label Studio.

Fixed seed, so every run (and every tool) sees the same bytes. Images are written as tiny PNG headers
(signature + IHDR + IEND, about 60 bytes): enough for any tool that reads an image size from its header,
never full images.

    python bench/generate.py --images 20000 --out bench/data/large

The truth (``truth.npz``: image index, class, x0, y0, x1, y1 in pixels) is kept beside the data so the runner
can check every tool's output.
"""

from __future__ import annotations

import argparse
import json
import struct
import zlib
from pathlib import Path

import numpy as np

N_CATEGORIES = 80
NAMES = [f"class_{i:02d}" for i in range(N_CATEGORIES)]


def png_header(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_truth(n_images: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    widths = rng.integers(320, 1921, n_images)
    heights = rng.integers(320, 1921, n_images)
    counts = rng.poisson(15, n_images)
    img = np.repeat(np.arange(n_images), counts)
    n = img.size
    w, h = widths[img], heights[img]
    bw = np.maximum(2, (rng.uniform(0.02, 0.5, n) * w).astype(np.int64))
    bh = np.maximum(2, (rng.uniform(0.02, 0.5, n) * h).astype(np.int64))
    x0 = (rng.uniform(0, 1, n) * (w - bw)).astype(np.int64)
    y0 = (rng.uniform(0, 1, n) * (h - bh)).astype(np.int64)
    cls = rng.integers(0, N_CATEGORIES, n)
    return {"widths": widths, "heights": heights, "image": img, "cls": cls, "x0": x0, "y0": y0,
            "x1": x0 + bw, "y1": y0 + bh}


def _groups(t: dict[str, np.ndarray]) -> list[np.ndarray]:
    bounds = np.searchsorted(t["image"], np.arange(len(t["widths"]) + 1))
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(len(t["widths"]))]


def write_all(out: Path, n_images: int, *, seed: int = 0) -> None:
    t = make_truth(n_images, seed)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "truth.npz", **t)
    groups = _groups(t)
    names = [f"img_{i:06d}.png" for i in range(n_images)]
    # images: tiny headers, shared by every format through hard links where possible
    imgdir = out / "yolo" / "images"
    imgdir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (imgdir / name).write_bytes(png_header(int(t["widths"][i]), int(t["heights"][i])))
    # YOLO
    lab = out / "yolo" / "labels"
    lab.mkdir(parents=True, exist_ok=True)
    (out / "yolo" / "data.yaml").write_text(
        "path: .\ntrain: images\nval: images\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES)))
    for i, rows in enumerate(groups):
        W, H = float(t["widths"][i]), float(t["heights"][i])
        x0, y0, x1, y1 = t["x0"][rows], t["y0"][rows], t["x1"][rows], t["y1"][rows]
        arr = np.column_stack([(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H])
        lines = [f"{c} {a:.6f} {b:.6f} {c2:.6f} {d:.6f}" for c, (a, b, c2, d) in zip(t["cls"][rows], arr.tolist(), strict=True)]
        (lab / f"img_{i:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    (out / "yolo" / "classes.txt").write_text("\n".join(NAMES) + "\n")
    # VOC (1-based pixel indices)
    ann = out / "voc" / "Annotations"
    ann.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(groups):
        objs = "".join(
            f"<object><name>{NAMES[c]}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{a + 1}</xmin><ymin>{b + 1}</ymin><xmax>{c2}</xmax><ymax>{d}</ymax></bndbox></object>\n"
            for c, a, b, c2, d in zip(t["cls"][rows].tolist(), t["x0"][rows].tolist(), t["y0"][rows].tolist(),
                                      t["x1"][rows].tolist(), t["y1"][rows].tolist(), strict=True))
        (ann / f"img_{i:06d}.xml").write_text(
            f"<annotation><folder>JPEGImages</folder><filename>{names[i]}</filename><size><width>{t['widths'][i]}"
            f"</width><height>{t['heights'][i]}</height><depth>3</depth></size><segmented>0</segmented>\n{objs}"
            "</annotation>\n")
    # CVAT for images 1.1
    cv = out / "cvat"
    cv.mkdir(parents=True, exist_ok=True)
    with (cv / "annotations.xml").open("w") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n<version>1.1</version>\n<meta><task>'
                f"<id>1</id><name>bench</name><size>{n_images}</size><mode>annotation</mode><labels>"
                + "".join(f"<label><name>{n}</name><type>rectangle</type><attributes></attributes></label>"
                          for n in NAMES) + "</labels></task></meta>\n")
        for i, rows in enumerate(groups):
            f.write(f'<image id="{i}" name="{names[i]}" width="{t["widths"][i]}" height="{t["heights"][i]}">\n')
            for c, a, b, c2, d in zip(t["cls"][rows].tolist(), t["x0"][rows].tolist(), t["y0"][rows].tolist(),
                                      t["x1"][rows].tolist(), t["y1"][rows].tolist(), strict=True):
                f.write(f'<box label="{NAMES[c]}" source="manual" occluded="0" xtl="{a:.2f}" ytl="{b:.2f}" '
                        f'xbr="{c2:.2f}" ybr="{d:.2f}" z_order="0"></box>\n')
            f.write("</image>\n")
        f.write("</annotations>\n")
    # Label Studio JSON export
    ls = out / "labelstudio"
    ls.mkdir(parents=True, exist_ok=True)
    tasks = []
    for i, rows in enumerate(groups):
        W, H = int(t["widths"][i]), int(t["heights"][i])
        result = [{"id": f"{i}-{k}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                   "original_width": W, "original_height": H, "image_rotation": 0,
                   "value": {"x": a / W * 100, "y": b / H * 100, "width": (c2 - a) / W * 100,
                             "height": (d - b) / H * 100, "rotation": 0, "rectanglelabels": [NAMES[c]]}}
                  for k, (c, a, b, c2, d) in enumerate(zip(t["cls"][rows].tolist(), t["x0"][rows].tolist(),
                                                           t["y0"][rows].tolist(), t["x1"][rows].tolist(),
                                                           t["y1"][rows].tolist(), strict=True))]
        tasks.append({"id": i + 1, "data": {"image": f"/data/upload/1/{i:08x}-{names[i]}"},
                      "annotations": [{"id": i + 1, "completed_by": 1, "was_cancelled": False, "result": result}],
                      "predictions": []})
    (ls / "export.json").write_text(json.dumps(tasks))
    (ls / "label_config.xml").write_text(
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        + "".join(f'<Label value="{n}"/>' for n in NAMES) + "</RectangleLabels></View>\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    write_all(a.out, a.images, seed=a.seed)


if __name__ == "__main__":
    main()
