"""CLI errors: one line of what went wrong, one line of what to do, the documented exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
PRELABEL = [str(Path(sys.executable).parent / "prelabel")]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PRELABEL, *args], capture_output=True, text=True, timeout=120)


def test_pointing_at_a_folder_of_datasets_names_the_sources_inside(tmp_path: Path) -> None:
    res = run("convert", str(SAMPLE), "-o", str(tmp_path / "out.json"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"error: {SAMPLE}: no known annotation format found here"
    assert lines[1].startswith("hint: these look like sources: ")
    for sub, fmt in (("coco/instances.json", "coco"), ("cvat", "cvat"),
                     ("labelstudio/export.json", "labelstudio"), ("voc", "voc"), ("yolo", "yolo")):
        assert f"{SAMPLE / sub} ({fmt})" in lines[1]
    assert "Traceback" not in res.stderr


def test_unknown_format_name_is_a_usage_error(tmp_path: Path) -> None:
    res = run("convert", str(SAMPLE / "yolo"), "--from", "kitti", "-o", str(tmp_path / "o.json"))
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["error: unknown format 'kitti'",
                                       "hint: use one of: coco, cvat, labelme, labelstudio, predictions, voc, yolo"]


def test_a_missing_source_says_so_and_what_to_check(tmp_path: Path) -> None:
    res = run("convert", str(tmp_path / "nope"), "-o", str(tmp_path / "o.json"))
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"error: {tmp_path / 'nope'}: no such file or folder",
                                       "hint: check the path: SRC is a dataset folder or an annotation file"]
