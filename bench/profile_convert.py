"""Where the time of one ``prelabel convert`` goes: wall time per pipeline stage, and the top cProfile entries.

    python bench/profile_convert.py --size large --format yolo              # stage times
    python bench/profile_convert.py --size large --format voc --cprofile 25  # + the 25 top entries by cumulative time
    python bench/profile_convert.py --dataframe 1000000                      # the predictions DataFrame case

Stages are the pipeline's own steps, run the way ``prelabel convert`` runs them (read, convention hints, score filter,
reconcile, clip, COCO build and validation, write). Data comes from ``bench/generate.py`` (generated on demand).
cProfile sees the main process only: the adapters' worker processes show up as waiting time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = {"small": 1000, "large": 20000}
SOURCES = {"yolo": "yolo", "voc": "voc", "cvat": "cvat/annotations.xml", "labelstudio": "labelstudio/export.json"}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(stages: list[tuple[str, float, float]], name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    stages.append((name, time.perf_counter() - t0, _peak_mib()))
    return out


def run_stages(src: Path | None, fmt: str, out: Path, *, frame_rows: int = 0) -> list[tuple[str, float, float]]:
    stages: list[tuple[str, float, float]] = []
    t0 = time.perf_counter()
    from prelabel.cli import _tune_allocator

    _tune_allocator()  # as the command line does
    import prelabel.pipeline as pl
    from prelabel.converters.clip import clip
    from prelabel.converters.reconcile import reconcile
    from prelabel.converters.score import filter_min_score

    stages.append(("import", time.perf_counter() - t0, _peak_mib()))
    if frame_rows:
        frame = _timed(stages, "make DataFrame", lambda: _frame(frame_rows))
        from prelabel.adapters import predictions

        ds = _timed(stages, "from_dataframe", lambda: predictions.from_dataframe(frame))
    else:
        ds = _timed(stages, "read", lambda: pl.read(src, fmt=fmt))
    from prelabel.converters.conventions import convention_hints

    _timed(stages, "hints", lambda: ds.report.diagnostics.extend(convention_hints(ds)))
    ds = _timed(stages, "min_score", lambda: filter_min_score(ds, None))
    ds = _timed(stages, "reconcile", lambda: reconcile(ds))
    ds = _timed(stages, "clip", lambda: clip(ds))
    _timed(stages, "write_dataset", lambda: pl.write_dataset(ds, out, max_file_size=10 * 1024**3))
    return stages


def _frame(n: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n_img = max(1, n // 50)
    x1 = rng.uniform(0, 600, n)
    y1 = rng.uniform(0, 400, n)
    return pd.DataFrame({"image": np.char.add("img_", np.arange(n_img).astype(str))[rng.integers(0, n_img, n)],
                         "category": np.char.add("class_", rng.integers(0, 80, n).astype(str)),
                         "x1": x1, "y1": y1, "x2": x1 + rng.uniform(1, 40, n), "y2": y1 + rng.uniform(1, 40, n),
                         "score": rng.uniform(0, 1, n), "width": 640, "height": 480})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--images", type=int, help="override the number of images")
    ap.add_argument("--format", dest="fmt", default="yolo", choices=sorted(SOURCES))
    ap.add_argument("--dataframe", type=int, default=0, metavar="ROWS",
                    help="profile a predictions DataFrame of ROWS rows instead of a generated dataset")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the N top cProfile entries")
    ap.add_argument("--sort", default="cumulative", help="cProfile sort key (cumulative, tottime)")
    a = ap.parse_args()
    src: Path | None = None
    if not a.dataframe:
        n = a.images or SIZES[a.size]
        data = HERE / "data" / f"{a.size}-{n}"
        if not (data / "truth.npz").exists():
            subprocess.run([sys.executable, str(HERE / "generate.py"), "--images", str(n), "--out", str(data)],
                           check=True)
        src = data / SOURCES[a.fmt]
    with tempfile.TemporaryDirectory(prefix="prelabel-profile-") as tmp:
        out = Path(tmp) / "out.json"
        prof = cProfile.Profile() if a.cprofile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        stages = run_stages(src, a.fmt, out, frame_rows=a.dataframe)
        if prof:
            prof.disable()
        total = time.perf_counter() - t0
    what = f"DataFrame of {a.dataframe} rows" if a.dataframe else f"{a.fmt} {src}"
    print(f"{what}: {total:.2f} s in-process (+ interpreter start)")
    print(f"  {'stage':<16} {'seconds':>8} {'peak MiB so far':>16}")
    for name, s, peak in stages:
        print(f"  {name:<16} {s:8.3f} {peak:16.0f}")
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(a.sort).print_stats(a.cprofile)
        print(buf.getvalue())


if __name__ == "__main__":
    main()
