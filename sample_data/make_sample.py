"""Writes sample_data/: five tiny images and the same annotations in every format prelabel reads.

Run from the project root: ``python sample_data/make_sample.py``. Deterministic: the committed files are its
output. The truth below is in pixels as annotators see each image (continuous COCO coordinates, integer
corners so every format can express it exactly); each format is written here by hand from that truth,
independently of prelabel's own code, so tests can compare prelabel's reading of every format against it.

- street.jpg 96x64: a car (box) and a person (box + 3 keypoints)
- park.png 64x48: a dog (polygon) and a cat (box)
- portrait.jpg: stored 48x32 with EXIF orientation 6, seen 32x48: a cat (box)
- room.png 80x48: a dog (box) and a cat (polygon)
- empty.jpg 40x40: no objects
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent
CATEGORIES = ["cat", "dog", "car", "person"]
KEYPOINTS = ["head", "left_hand", "right_hand"]
SKELETON = [[1, 2], [1, 3]]
COLORS = {"cat": (230, 120, 40), "dog": (60, 140, 230), "car": (200, 40, 60), "person": (60, 180, 90)}

# file name -> (seen width, seen height, stored orientation, objects)
# object: (category, (x0, y0, x1, y1), polygon points or None, keypoints [(x, y, v)] or None, score)
IMAGES: dict[str, tuple[int, int, int, list[tuple]]] = {
    "street.jpg": (96, 64, 1, [
        ("car", (8, 30, 56, 58), None, None, 0.91),
        ("person", (62, 6, 86, 60), None, [(74, 12, 2), (64, 34, 2), (84, 34, 1)], 0.87),
    ]),
    "park.png": (64, 48, 1, [
        ("dog", (6, 14, 40, 42), [(6, 20), (30, 14), (40, 30), (22, 42), (8, 36)], None, 0.78),
        ("cat", (44, 8, 60, 24), None, None, 0.66),
    ]),
    "portrait.jpg": (32, 48, 6, [
        ("cat", (4, 10, 28, 40), None, None, 0.95),
    ]),
    "room.png": (80, 48, 1, [
        ("dog", (2, 2, 30, 28), None, None, 0.72),
        ("cat", (40, 10, 70, 40), [(40, 10), (70, 12), (66, 40), (44, 38)], None, 0.58),
    ]),
    "empty.jpg": (40, 40, 1, []),
}


def _fmt(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h, orient, objs) in IMAGES.items():
        seen = Image.new("RGB", (w, h), (235, 235, 225))
        d = ImageDraw.Draw(seen)
        for cat, (x0, y0, x1, y1), poly, _kps, _s in objs:
            if poly:
                d.polygon(poly, fill=COLORS[cat])
            else:
                d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=COLORS[cat])
        path = folder / name
        if orient == 6:
            stored = seen.transpose(Image.Transpose.ROTATE_90)  # displayed after a 90 deg clockwise turn
            exif = Image.Exif()
            exif[0x0112] = 6
            stored.save(path, "JPEG", quality=90, exif=exif.tobytes())
        elif name.endswith(".png"):
            seen.save(path, "PNG", optimize=True)
        else:
            seen.save(path, "JPEG", quality=90)


def write_yolo(folder: Path, images: Path) -> None:
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copytree(images, folder / "images", dirs_exist_ok=True)
    (folder / "data.yaml").write_text(
        "# Ultralytics detection dataset: the sample annotations as boxes\n"
        "path: .\ntrain: images\nval: images\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(CATEGORIES)))
    for name, (w, h, _o, objs) in IMAGES.items():
        if not objs:
            continue  # an image with no objects needs no label file
        lines = []
        for cat, (x0, y0, x1, y1), _p, _k, _s in objs:
            cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
            lines.append(f"{CATEGORIES.index(cat)} {cx:.10g} {cy:.10g} {bw:.10g} {bh:.10g}")
        (folder / "labels" / (Path(name).stem + ".txt")).write_text("\n".join(lines) + "\n")


def write_voc(folder: Path, images: Path) -> None:
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    shutil.copytree(images, folder / "JPEGImages", dirs_exist_ok=True)
    for name, (w, h, _o, objs) in IMAGES.items():
        parts = [f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{name}</filename>\n"
                 f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n"
                 "  <segmented>0</segmented>\n"]
        for cat, (x0, y0, x1, y1), _p, _k, _s in objs:
            # VOC: 1-based inclusive pixel indices: continuous [x0, x1) -> xmin = x0 + 1, xmax = x1
            parts.append(f"  <object>\n    <name>{cat}</name>\n    <pose>Unspecified</pose>\n"
                         "    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
                         f"    <bndbox>\n      <xmin>{x0 + 1}</xmin>\n      <ymin>{y0 + 1}</ymin>\n"
                         f"      <xmax>{x1}</xmax>\n      <ymax>{y1}</ymax>\n    </bndbox>\n  </object>\n")
        parts.append("</annotation>\n")
        (folder / "Annotations" / (Path(name).stem + ".xml")).write_text("".join(parts))


def write_cvat(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = "".join(f"      <label>\n        <name>{c}</name>\n        <type>any</type>\n"
                     "        <attributes>\n        </attributes>\n      </label>\n" for c in CATEGORIES)
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n'
           f'    <task>\n      <id>1</id>\n      <name>sample</name>\n      <size>{len(IMAGES)}</size>\n'
           f'      <mode>annotation</mode>\n      <labels>\n{labels}      </labels>\n    </task>\n  </meta>\n']
    for i, (name, (w, h, _o, objs)) in enumerate(IMAGES.items()):
        out.append(f'  <image id="{i}" name="{name}" width="{w}" height="{h}">\n')
        for cat, (x0, y0, x1, y1), poly, _k, _s in objs:
            if poly:
                pts = ";".join(f"{x:.2f},{y:.2f}" for x, y in poly)
                out.append(f'    <polygon label="{cat}" source="manual" occluded="0" points="{pts}" z_order="0">\n'
                           '    </polygon>\n')
            else:
                out.append(f'    <box label="{cat}" source="manual" occluded="0" xtl="{x0:.2f}" ytl="{y0:.2f}" '
                           f'xbr="{x1:.2f}" ybr="{y1:.2f}" z_order="0">\n    </box>\n')
        out.append("  </image>\n")
    out.append("</annotations>\n")
    path.write_text("".join(out))


def write_labelstudio(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tasks = []
    for t, (name, (w, h, _o, objs)) in enumerate(IMAGES.items(), start=1):
        result = []
        for k, (cat, (x0, y0, x1, y1), poly, kps, _s) in enumerate(objs):
            rid = f"t{t}r{k}"
            base = {"id": rid, "to_name": "image", "original_width": w, "original_height": h, "image_rotation": 0}
            if poly:
                result.append({**base, "from_name": "polygon", "type": "polygonlabels",
                               "value": {"points": [[x / w * 100, y / h * 100] for x, y in poly], "closed": True,
                                         "polygonlabels": [cat]}})
            else:
                result.append({**base, "from_name": "label", "type": "rectanglelabels",
                               "value": {"x": x0 / w * 100, "y": y0 / h * 100, "width": (x1 - x0) / w * 100,
                                         "height": (y1 - y0) / h * 100, "rotation": 0, "rectanglelabels": [cat]}})
            for j, (kx, ky, _v) in enumerate(kps or []):
                result.append({**base, "id": f"{rid}k{j}", "from_name": "kp", "type": "keypointlabels",
                               "parentID": rid,
                               "value": {"x": kx / w * 100, "y": ky / h * 100, "width": 0.5,
                                         "keypointlabels": [KEYPOINTS[j]]}})
        tasks.append({"id": t, "data": {"image": f"/data/upload/1/{t:08x}-{name}"},
                      "annotations": [{"id": 100 + t, "completed_by": 1, "was_cancelled": False, "result": result,
                                       "created_at": "2026-01-01T00:00:00.000000Z",
                                       "updated_at": "2026-01-01T00:00:00.000000Z"}],
                      "predictions": []})
    path.write_text(json.dumps(tasks, indent=1) + "\n")
    (path.parent / "label_config.xml").write_text(
        '<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image">\n'
        + "".join(f'    <Label value="{c}"/>\n' for c in CATEGORIES) + "  </RectangleLabels>\n"
        '  <PolygonLabels name="polygon" toName="image">\n'
        + "".join(f'    <Label value="{c}"/>\n' for c in CATEGORIES) + "  </PolygonLabels>\n"
        '  <KeyPointLabels name="kp" toName="image">\n'
        + "".join(f'    <Label value="{k}"/>\n' for k in KEYPOINTS) + "  </KeyPointLabels>\n</View>\n")


def write_coco(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, (name, (w, h, _o, objs)) in enumerate(IMAGES.items(), start=1):
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        for cat, (x0, y0, x1, y1), poly, kps, _s in objs:
            a = {"id": len(anns) + 1, "image_id": i, "category_id": CATEGORIES.index(cat) + 1,
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}
            if poly:
                flat = [float(v) for p in poly for v in p]
                a["segmentation"] = [flat]
                a["area"] = abs(sum(poly[k][0] * poly[(k + 1) % len(poly)][1]
                                    - poly[(k + 1) % len(poly)][0] * poly[k][1] for k in range(len(poly)))) / 2
            else:
                a["segmentation"] = []
                a["area"] = (x1 - x0) * (y1 - y0)
            if kps:
                a["keypoints"] = [v for kp in kps for v in kp]
                a["num_keypoints"] = sum(1 for kp in kps if kp[2] > 0)
            anns.append(a)
    cats = [{"id": i + 1, "name": c, "supercategory": "animal" if c in ("cat", "dog") else "thing"}
            for i, c in enumerate(CATEGORIES)]
    cats[3].update({"keypoints": KEYPOINTS, "skeleton": SKELETON})
    doc = {"info": {"description": "prelabel sample data"}, "licenses": [], "images": images,
           "annotations": anns, "categories": cats}
    path.write_text(json.dumps(doc, indent=1) + "\n")


def write_predictions(path: Path) -> None:
    """TensorFlow Object Detection CSV convention, plus a score column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax", "score"])
        for name, (w, h, _o, objs) in IMAGES.items():
            for cat, (x0, y0, x1, y1), _p, _k, s in objs:
                wr.writerow([name, w, h, cat, x0, y0, x1, y1, s])


def main() -> None:
    images = ROOT / "images"
    write_images(images)
    write_yolo(ROOT / "yolo", images)
    write_voc(ROOT / "voc", images)
    write_cvat(ROOT / "cvat" / "annotations.xml")
    write_labelstudio(ROOT / "labelstudio" / "export.json")
    write_coco(ROOT / "coco" / "instances.json")
    write_predictions(ROOT / "predictions" / "predictions.csv")


if __name__ == "__main__":
    main()
