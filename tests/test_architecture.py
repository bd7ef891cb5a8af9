"""The floor plan of docs/architecture.md, checked: imports only point down the floors, no import cycles, no
private name imported from another module, and no import hidden inside a function except of optional
dependencies (the two faces, ``cli.py`` and ``__init__.py``, import lazily so ``prelabel --help`` is instant)."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from prelabel.adapters import predictions
from prelabel.adapters.base import ReadOptions
from prelabel.engine import PartStream
from prelabel.model import Dataset
from prelabel.report import Report

PKG = Path(__file__).resolve().parents[1] / "prelabel"

# module (or package prefix) -> floor; the longest matching prefix wins
FLOORS = {
    "errors": 1, "memory": 1, "paths": 1, "geometry": 1, "imagesize": 1, "report": 1, "model": 1, "gcpause": 1, "workers": 1,
    "progress": 1, "junk": 1, "labelconfig": 1, "images": 1,
    "adapters": 2, "converters": 2,
    "adapters.yolo_layout": 2, "adapters.yolo_rows": 2, "adapters.yolo_run": 2, "adapters.yolo_geometry": 2,
    "adapters.voc_xml": 2, "adapters.table_columns": 2, "adapters.table_build": 2,
    "adapters.labelstudio_tasks": 2, "adapters.labelstudio_reader": 2, "adapters.labelstudio_regions": 2,
    "adapters.json_array": 2, "adapters.cvat_reader": 2, "adapters.cvat_shapes": 2, "adapters.cvat_tracks": 2,
    "upload.labelstudio_client": 3, "upload.labelstudio_results": 3, "upload.labelstudio_replace": 3,
    "storage": 3, "distributed": 3, "upload": 3,
    "pipeline": 4, "engine": 4, "preload": 4, "inspection": 4, "preview": 4, "pushing": 4,
    "cli": 5, "cli_upload": 5, "__init__": 5, "__main__": 5, "labellerr": 5,
}
LAZY_FACES = {"cli", "__init__"}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def _floor(mod: str) -> int:
    parts = mod.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in FLOORS:
            return FLOORS[key]
    raise KeyError(f"{mod}: no floor in FLOORS (add it, and to docs/architecture.md)")


def _imports() -> list[tuple[str, str, str, int, bool]]:
    """(module, imported module, imported name, line, inside a function) for every relative import."""
    out = []
    for path in sorted(PKG.rglob("*.py")):
        mod = _module(path)
        pkg = mod.split(".") if path.name == "__init__.py" and mod != "__init__" else mod.split(".")[:-1]
        tree = ast.parse(path.read_text())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        guarded = {id(n) for i in ast.walk(tree) if isinstance(i, ast.If) and "TYPE_CHECKING" in ast.unparse(i.test)
                   for n in ast.walk(i)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.level or id(node) in guarded:
                continue
            base = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                is_mod = (PKG / sub.replace(".", "/")).with_suffix(".py").is_file() or (PKG / sub.replace(".", "/")).is_dir()
                out.append((mod, sub if is_mod else (target or "__init__"), alias.name, node.lineno, id(node) in nested))
    return out


def test_imports_point_down_the_floors() -> None:
    up = [f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)}) at line {line}"
          for m, t, _, line, _ in _imports() if _floor(t) > _floor(m)]
    assert up == []


def test_no_private_name_crosses_a_module() -> None:
    private = [f"{m}:{line} imports {name} from {t}" for m, t, name, line, _ in _imports()
               if name.startswith("_") and not name.startswith("__") and t != m]
    assert private == []


def test_no_hidden_imports_and_no_cycles() -> None:
    hidden = [f"{m}:{line} imports {t} inside a function" for m, t, _, line, inner in _imports()
              if inner and m not in LAZY_FACES]
    assert hidden == []
    edges: dict[str, set[str]] = {}
    for m, t, _, _, _ in _imports():
        if t != m:
            edges.setdefault(m, set()).add(t)

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            x = todo.pop()
            for y in edges.get(x, ()):
                if y == b:
                    return True
                if y not in seen:
                    seen.add(y)
                    todo.append(y)
        return False

    cycles = sorted({tuple(sorted((a, b))) for a, ts in edges.items() for b in ts if reaches(b, a)})
    assert cycles == []


def test_every_module_is_on_the_floor_plan() -> None:
    plan = (PKG.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*.py"))
               if p.name != "__init__.py" or p.parent == PKG
               if f"`{p.relative_to(PKG).as_posix()}`" not in plan]
    assert missing == []


def test_concat_of_streamed_chunks_counts_the_shared_report_once(tmp_path: Path) -> None:
    # 7 rows over 3 images, streamed in parts of whole images (the engine's PartStream over the table's plan),
    # the parts' tables given one shared report (the stream's merged one)
    df = pd.DataFrame({"filename": ["a.jpg"] * 3 + ["b.jpg"] * 2 + ["c.jpg"] * 2, "width": 100, "height": 50,
                       "class": "car", "xmin": 1.0, "ymin": 2.0, "xmax": 11.0, "ymax": 12.0})
    csv = tmp_path / "preds.csv"
    df.to_csv(csv, index=False)
    stream = PartStream(predictions, csv, options=ReadOptions(), parts=3)
    tables = list(stream)
    report = stream.report
    chunks = [Dataset(images=i, categories=c, annotations=a, report=report) for i, c, a in tables]
    assert len(chunks) == 3 and all(c.report is report for c in chunks)
    merged = Dataset.concat(chunks)
    assert (merged.report.read, len(merged.annotations), len(merged.images)) == (7, 7, 3)
    assert merged.report.read == predictions.read(csv, options=ReadOptions(), report=Report()).report.read
