"""How the Dask engine scales: images per second with 1, 2 and 4 local worker processes, against the local engine.

    python bench/scaling.py                       # 20,000 images (bench/data/large-20000), YOLO and VOC
    python bench/scaling.py --size small --runs 1 # 1,000 images, quick
    python bench/scaling.py --s3                  # also from S3 (moto on 127.0.0.1): localize, 1 and 2 workers

For each format: the local engine (``prelabel.pipeline.read``: YOLO reads in one process, header reads in
threads; VOC uses its own process pool above 2000 files), then ``read_dask`` on a LocalCluster of N worker
processes (one thread each, 127.0.0.1) started once per N (its start-up time is printed apart, the read times
exclude it). Each time is the median of ``--runs``; "total" adds reconcile + clip + write, which run on the
client for every engine. Every Dask output is checked byte for byte against the local engine's COCO.
Results go to ``bench/out/scaling-<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = {"small": 1000, "large": 20000}


def data_dir(size: str) -> Path:
    n = SIZES[size]
    d = HERE / "data" / f"{size}-{n}"
    if not (d / "yolo").is_dir():
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--images", str(n), "--out", str(d)], check=True)
    return d


def _timed(fn: Any, runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _coco_bytes(ds: Any, out: Path) -> tuple[float, bytes]:
    from prelabel.pipeline import prepare, write_dataset

    t = time.perf_counter()
    res = write_dataset(prepare(ds), out, max_file_size=1 << 40)
    return time.perf_counter() - t, res.paths[0].read_bytes()


def bench_format(fmt: str, src: Any, n_images: int, workers: list[int], runs: int, tmp: Path,
                 storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from prelabel.distributed import dask_client, read_dask
    from prelabel.pipeline import read

    rows: list[dict[str, Any]] = []
    t_read, ds = _timed(lambda: read(src, storage_options=storage_options), runs)
    t_write, ref = _coco_bytes(ds, tmp / f"{fmt}-local.json")
    rows.append({"format": fmt, "engine": "local", "workers": 0, "start_s": 0.0, "read_s": t_read,
                 "total_s": t_read + t_write, "images_per_s": n_images / t_read, "identical": True})
    print(_line(rows[-1]), flush=True)
    for w in workers:
        t0 = time.perf_counter()
        with dask_client(workers=w, processes=True) as client:
            start = time.perf_counter() - t0
            read_dask(src, client=client, storage_options=storage_options)  # warm the workers' imports
            t_read, ds = _timed(lambda c=client: read_dask(src, client=c, storage_options=storage_options), runs)
        t_write, got = _coco_bytes(ds, tmp / f"{fmt}-dask{w}.json")
        rows.append({"format": fmt, "engine": "dask", "workers": w, "start_s": start, "read_s": t_read,
                     "total_s": t_read + t_write, "images_per_s": n_images / t_read, "identical": got == ref})
        print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    who = "local" if r["engine"] == "local" else f"dask x{r['workers']}"
    return (f"{r['format']:<8} {who:<8} start {r['start_s']:5.2f} s  read {r['read_s']:6.2f} s  "
            f"total {r['total_s']:6.2f} s  {r['images_per_s']:9.0f} images/s  identical={r['identical']}")


def bench_s3(data: Path, n_images: int, runs: int, tmp: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    import s3_server

    server = s3_server.start()
    try:
        fs = server.fs()
        fs.mkdir("bench")
        t = time.perf_counter()
        fs.put(str(data / "yolo") + "/", "bench/yolo/", recursive=True)
        print(f"uploaded {n_images} images + labels to moto in {time.perf_counter() - t:.1f} s", flush=True)
        rows = bench_format("yolo-s3", "s3://bench/yolo", n_images, [1, 2], runs, tmp,
                            storage_options=server.storage_options)
        gets = [r for r in server.requests if r.method == "GET" and r.path.endswith(".png")]
        print(f"image GETs: {len(gets)}, all ranged: {all(r.range for r in gets)}", flush=True)
        return rows
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="large")
    ap.add_argument("--formats", default="yolo,voc")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--s3", action="store_true", help="also read YOLO from S3 (moto on 127.0.0.1)")
    args = ap.parse_args()
    data = data_dir(args.size)
    n = SIZES[args.size]
    workers = [int(w) for w in args.workers.split(",") if w]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{n} images, {cpus} CPU(s), median of {args.runs} run(s)", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            rows += bench_format(fmt, data / fmt, n, workers, args.runs, Path(tmp))
        if args.s3:
            rows += bench_s3(data, n, max(1, args.runs // 2), Path(tmp))
    out = HERE / "out" / f"scaling-{args.size}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"images": n, "cpus": cpus, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
