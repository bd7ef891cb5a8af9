"""Large inputs: wall time and peak memory of ``prelabel convert`` on a ~1 GB CVAT XML and a 1,000,000-row
prediction CSV.

    python bench/memory.py                         # 1 GB CVAT + 1M-row CSV (needs ~3 GB of disk, a few minutes)
    python bench/memory.py --cvat-mb 100,300,1024  # several CVAT sizes: does the peak grow with the file?
    python bench/memory.py --quick                 # 50 MB CVAT + 100,000 rows: a smoke run
    python bench/memory.py --keep                  # keep the generated data and outputs

The inputs are generated with a fixed seed and streamed to disk under ``bench/data/memory/`` (ignored by git):
never held in memory whole. Each conversion runs the venv's ``prelabel`` CLI as a subprocess (start-up, imports,
reading, writing: what a user waits for); the peak resident memory of the largest process comes from
``os.wait4`` (``ru_maxrss``), and the peak of the whole process tree (the reading child included) is the
summed PSS sampled every 20 ms (``bench/treemem.py``).
Every run is checked: the report's ledger must balance and count every generated box. The figures are printed
as a table and written to ``bench/out/memory.json``; the data is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from treemem import TreePeak  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "memory"
OUT = HERE / "out"
PRELABEL = Path(sys.executable).with_name("prelabel")
LABELS = [f"class_{i:02d}" for i in range(20)]
BOXES_PER_IMAGE = 20
IMAGES_PER_CHUNK = 2000


# ------------------------------------------------------------------------------------------ generation
def write_cvat(path: Path, target_bytes: int, *, seed: int = 0) -> dict[str, int]:
    """A CVAT for images 1.1 XML of about ``target_bytes``, written in chunks of images (boxes only)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ['<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n'
            "    <task>\n      <name>memory</name>\n      <mode>annotation</mode>\n      <labels>\n"]
    head += [f"        <label>\n          <name>{n}</name>\n          <type>rectangle</type>\n"
             "          <attributes>\n          </attributes>\n        </label>\n" for n in LABELS]
    head.append("      </labels>\n    </task>\n  </meta>\n")
    n_img = n_box = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(head))
        while f.tell() < target_bytes:
            k = IMAGES_PER_CHUNK * BOXES_PER_IMAGE
            x1 = rng.uniform(0, 600, k)
            y1 = rng.uniform(0, 440, k)
            x2 = x1 + rng.uniform(2, 40, k)
            y2 = y1 + rng.uniform(2, 40, k)
            lab = rng.integers(0, len(LABELS), k)
            parts: list[str] = []
            for i in range(IMAGES_PER_CHUNK):
                parts.append(f'  <image id="{n_img}" name="img_{n_img:08d}.jpg" width="640" height="480">\n')
                for j in range(i * BOXES_PER_IMAGE, (i + 1) * BOXES_PER_IMAGE):
                    parts.append(f'    <box label="{LABELS[lab[j]]}" source="manual" occluded="0" '
                                 f'xtl="{x1[j]:.2f}" ytl="{y1[j]:.2f}" xbr="{x2[j]:.2f}" ybr="{y2[j]:.2f}" '
                                 'z_order="0">\n    </box>\n')
                parts.append("  </image>\n")
                n_img += 1
            n_box += k
            f.write("".join(parts))
        f.write("</annotations>\n")
        size = f.tell()
    return {"images": n_img, "boxes": n_box, "bytes": size}


def write_csv(path: Path, rows: int, *, seed: int = 0) -> dict[str, int]:
    """A prediction CSV (TensorFlow Object Detection columns plus a score) of ``rows`` rows, in chunks."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    per_image = 10
    chunk = 100_000
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("filename,width,height,class,xmin,ymin,xmax,ymax,score\n")
        done = 0
        while done < rows:
            k = min(chunk, rows - done)
            idx = np.arange(done, done + k) // per_image
            x1 = rng.uniform(0, 600, k)
            y1 = rng.uniform(0, 440, k)
            x2 = x1 + rng.uniform(2, 40, k)
            y2 = y1 + rng.uniform(2, 40, k)
            lab = rng.integers(0, len(LABELS), k)
            sc = rng.uniform(0.05, 1.0, k)
            f.write("".join(f"img_{idx[j]:08d}.jpg,640,480,{LABELS[lab[j]]},{x1[j]:.2f},{y1[j]:.2f},"
                            f"{x2[j]:.2f},{y2[j]:.2f},{sc[j]:.4f}\n" for j in range(k)))
            done += k
        size = f.tell()
    return {"images": -(-rows // per_image), "boxes": rows, "bytes": size}


# ------------------------------------------------------------------------------------------ measuring
def run(cmd: list[str], *, limit_gb: float = 0) -> dict[str, Any]:
    """Run ``cmd``; wall time, peak RSS (MB, from wait4) and exit code. ``limit_gb`` caps the child's address
    space (RLIMIT_AS), so that a conversion needing more fails with MemoryError instead of swapping the host."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")

    def cap() -> None:
        if limit_gb > 0:
            lim = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, preexec_fn=cap)
    sampler = TreePeak(proc.pid)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    tree_mb = sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "tree_pss_mb": round(tree_mb, 1), "exit": proc.returncode,
            "stderr_tail": err.decode(errors="replace")[-600:]}


def convert(name: str, src: Path, fmt: str, truth: dict[str, int], out_dir: Path, *,
            limit_gb: float = 0) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / f"{name}.report.json"
    res = run([str(PRELABEL), "-q", "convert", str(src), "--from", fmt, "-o", str(out_dir / f"{name}.json"),
               "--report", str(report)], limit_gb=limit_gb)
    res.update(name=name, input_mb=round(truth["bytes"] / 2**20, 1), boxes=truth["boxes"], images=truth["images"])
    if res["exit"] == 0:
        ledger = json.loads(report.read_text())["ledger"]
        res["ledger"] = ledger
        res["ok"] = bool(ledger["balanced"] and ledger["read"] == truth["boxes"])
        outs = sorted(out_dir.glob(f"{name}*.json"))
        res["output_mb"] = round(sum(p.stat().st_size for p in outs if not p.name.endswith("report.json")) / 2**20,
                                 1)
    else:
        res["ok"] = False
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cvat-mb", default="1024", help="CVAT XML size(s) in MB, comma-separated (default 1024)")
    ap.add_argument("--csv-rows", type=int, default=1_000_000, help="rows of the prediction CSV (0: skip)")
    ap.add_argument("--quick", action="store_true", help="50 MB CVAT and 100,000 rows")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and the outputs")
    ap.add_argument("--limit-gb", type=float, default=16.0,
                    help="address-space cap of each conversion (RLIMIT_AS, GB; 0: none); default 16")
    args = ap.parse_args()
    sizes = [50] if args.quick else [int(s) for s in str(args.cvat_mb).split(",") if s.strip()]
    rows = 100_000 if args.quick else args.csv_rows
    need = (max(sizes, default=0) * 2**20) * 2 + rows * 200
    free = shutil.disk_usage(HERE).free
    if need > free:
        sys.exit(f"not enough disk: about {need / 2**30:.1f} GB needed, {free / 2**30:.1f} GB free")

    baseline = run([str(PRELABEL), "--version"])
    results: list[dict[str, Any]] = []
    out_dir = DATA / "out"
    try:
        for mb in sizes:
            src = DATA / f"cvat_{mb}mb.xml"
            t0 = time.perf_counter()
            truth = write_cvat(src, mb * 2**20)
            print(f"generated {src.name}: {truth['bytes'] / 2**20:.0f} MB, {truth['boxes']:,} boxes "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            results.append(convert(f"cvat_{mb}mb", src, "cvat", truth, out_dir, limit_gb=args.limit_gb))
            print(json.dumps(results[-1]), flush=True)
            if not args.keep:
                src.unlink()
                shutil.rmtree(out_dir, ignore_errors=True)
        if rows:
            src = DATA / f"predictions_{rows}.csv"
            truth = write_csv(src, rows)
            print(f"generated {src.name}: {truth['bytes'] / 2**20:.0f} MB, {rows:,} rows", flush=True)
            results.append(convert(f"csv_{rows}", src, "predictions", truth, out_dir, limit_gb=args.limit_gb))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(DATA, ignore_errors=True)

    print(f"\nbaseline (prelabel --version): {baseline['peak_rss_mb']:.0f} MB peak RSS, {baseline['wall_s']:.1f} s")
    print(f"{'input':<22}{'in MB':>8}{'boxes':>12}{'out MB':>8}{'wall s':>9}{'peak MB':>9}{'tree MB':>9}"
          f"{'MB/M boxes':>12}  ok")
    for r in results:
        per = (r["peak_rss_mb"] - baseline["peak_rss_mb"]) / (r["boxes"] / 1e6)
        print(f"{r['name']:<22}{r['input_mb']:>8.0f}{r['boxes']:>12,}{r.get('output_mb', 0):>8.0f}"
              f"{r['wall_s']:>9.1f}{r['peak_rss_mb']:>9.0f}{r.get('tree_pss_mb', 0):>9.0f}{per:>12.0f}  {r['ok']}")
        if not r["ok"]:
            print(f"  exit {r['exit']}: {r['stderr_tail']}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "memory.json").write_text(json.dumps({"baseline": baseline, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
