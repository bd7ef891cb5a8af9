"""Run prelabel side by side with the peer tools on the same generated data, and print the ratios.

    python bench/run.py --size small            # 1,000 images: a few minutes
    python bench/run.py --size large            # 20,000 images, ~300,000 boxes: the issue's dataset

Every tool runs as a whole process (start-up, imports, reading, writing: what a user waits for), tools
alternate within each round, each round is repeated ``--runs`` times, and the median wall time and the peak
memory are reported: the peak resident memory of the largest process (``ru_maxrss`` from wait4), and the peak
of the summed proportional set size of the whole process tree, sampled every 20 ms in one extra round that is
not timed (a tool that forks workers uses their memory too; PSS counts pages shared after a fork once). Every output is checked: the annotation count must equal the truth
and every box must lie within ``--tolerance`` pixels of the truth (tools differ on the VOC origin by one pixel).
Peers are installed on demand into their own venvs under ``.peers/`` (ignored by git), never into prelabel's.
Every venv is compiled to bytecode once first (as pip does at install; uv does not, and PYTHONDONTWRITEBYTECODE
never writes it), so that no tool pays for compiling its imports. The table also gives the min-max wall time
and the median CPU time (user + sys), which other load on the machine disturbs less than wall time.
Results are printed as a table and written as JSON to ``bench/out/<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = ROOT / ".peers"
SIZES = {"small": 1000, "large": 20000}
PEER_PACKAGES = {"globox": "globox==2.9.0", "labelformat": "labelformat==0.1.17",
                 "lsconverter": "label-studio-sdk"}
NAMES = ",".join(f"class_{i:02d}" for i in range(80))

LS_SCRIPT = """
import sys
from label_studio_sdk.converter import Converter
config, inp, out = sys.argv[1:4]
c = Converter(config=open(config).read(), project_dir=".", download_resources=False)
c.convert_to_coco(inp, out, output_image_dir=out + "/images", is_dir=False)
"""


def peer_python(tool: str) -> Path:
    venv = PEERS / tool
    py = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"installing {PEER_PACKAGES[tool]} into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "uv"], check=True)
        subprocess.run([str(venv / "bin" / "uv"), "pip", "install", "-q", "-p", str(py), PEER_PACKAGES[tool]],
                       check=True)
        (venv / ".installed").touch()
    return py


def commands(fmt: str, data: Path, out: Path, baseline: Path | None = None) -> dict[str, tuple[list[str], Path]]:
    """tool -> (argv, the COCO file it writes) for one source format. ``baseline``: another checkout of
    prelabel with its own ``.venv`` (an earlier commit), run as the tool ``baseline`` beside this one."""
    prelabel = str(Path(sys.executable).parent / "prelabel")
    src = {"yolo": data / "yolo", "voc": data / "voc", "cvat": data / "cvat" / "annotations.xml",
           "labelstudio": data / "labelstudio" / "export.json"}[fmt]
    cmds: dict[str, tuple[list[str], Path]] = {
        "prelabel": ([prelabel, "-q", "convert", str(src), "--from", fmt, "-o", str(out / "prelabel.json"),
                      "--max-file-size", "10GB"], out / "prelabel.json")}
    if baseline is not None:
        cmds["baseline"] = ([str(baseline / ".venv" / "bin" / "prelabel"), "-q", "convert", str(src), "--from", fmt,
                             "-o", str(out / "baseline.json"), "--max-file-size", "10GB"], out / "baseline.json")
    g = str(PEERS / "globox" / "bin" / "globox")
    lf = str(PEERS / "labelformat" / "bin" / "labelformat")
    if fmt == "yolo":
        cmds["globox"] = ([g, "convert", str(data / "yolo" / "labels"), str(out / "globox.json"), "-f", "yolov5",
                           "-d", str(data / "yolo" / "images"), "-g", ".png", "-F", "coco", "-A"],
                          out / "globox.json")
        cmds["labelformat"] = ([lf, "convert", "--task", "object-detection", "--input-format", "yolov8",
                                "--output-format", "coco", "--input-file", str(data / "yolo" / "data.yaml"),
                                "--input-split", "train", "--output-file", str(out / "labelformat.json")],
                               out / "labelformat.json")
    elif fmt == "voc":
        cmds["globox"] = ([g, "convert", str(data / "voc" / "Annotations"), str(out / "globox.json"), "-f",
                           "pascalvoc", "-F", "coco", "-A"], out / "globox.json")
        cmds["labelformat"] = ([lf, "convert", "--task", "object-detection", "--input-format", "pascalvoc",
                                "--output-format", "coco", "--input-folder", str(data / "voc" / "Annotations"),
                                "--category-names", NAMES, "--output-file", str(out / "labelformat.json")],
                               out / "labelformat.json")
    elif fmt == "cvat":
        cmds["globox"] = ([g, "convert", str(src), str(out / "globox.json"), "-f", "cvat", "-F", "coco", "-A"],
                          out / "globox.json")
        cmds["labelformat"] = ([lf, "convert", "--task", "object-detection", "--input-format", "cvat",
                                "--output-format", "coco", "--input-file", str(src),
                                "--output-file", str(out / "labelformat.json")], out / "labelformat.json")
    elif fmt == "labelstudio":
        script = out / "ls_convert.py"
        script.write_text(LS_SCRIPT)
        cmds["lsconverter"] = ([str(PEERS / "lsconverter" / "bin" / "python"), str(script),
                                str(data / "labelstudio" / "label_config.xml"), str(src), str(out / "ls")],
                               out / "ls" / "result.json")
    return cmds


def ensure_bytecode(python: Path, *extra: Path) -> None:
    """Compile a venv's packages to bytecode once, as pip does at install time (uv does not by default, and a
    PYTHONDONTWRITEBYTECODE environment never writes it), so that no tool pays for compiling its imports."""
    marker = python.parent.parent / ".bytecode"
    dirs = [str(d) for d in extra]
    if not marker.exists():
        dirs.append("PURELIB")
    if not dirs:
        return
    code = ("import compileall, sys, sysconfig\n"
            "for d in sys.argv[1:]:\n"
            "    d = sysconfig.get_paths()['purelib'] if d == 'PURELIB' else d\n"
            "    compileall.compile_dir(d, quiet=2, workers=2)\n")
    subprocess.run([str(python), "-c", code, *dirs], check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    marker.touch()


# the libraries prelabel's reading and writing use: a baseline venv must hold the same versions, or the table
# compares venvs, not code (pyarrow alone, which pandas 3 uses for its strings when it is installed, moves CVAT's
# peak memory by about 36 MiB)
LIBRARIES = ("pandas", "numpy", "pyarrow", "orjson", "shapely", "pycocotools", "defusedxml", "lxml", "pillow",
             "click", "fsspec")


def library_versions(python: Path) -> dict[str, str | None]:
    """The version of each of LIBRARIES in the venv of ``python`` (None: not installed)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(n):\n"
            "    try:\n"
            "        return m.version(n)\n"
            "    except m.PackageNotFoundError:\n"
            "        return None\n"
            "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n")
    out = subprocess.run([str(python), "-c", code, *LIBRARIES], check=True, capture_output=True, text=True).stdout
    got: dict[str, str | None] = json.loads(out)
    return got


def same_libraries(python: Path, baseline: Path) -> str:
    """What differs between the two venvs' versions of LIBRARIES, as one line; empty when nothing does."""
    mine, theirs = library_versions(python), library_versions(baseline)
    return ", ".join(f"{n} {mine[n] or 'missing'} here, {theirs[n] or 'missing'} in the baseline"
                     for n in LIBRARIES if mine[n] != theirs[n])


# Every tool is started by this small helper process, not by the runner: a child's peak resident memory
# (ru_maxrss) starts at its parent's resident size when it forks, even across exec, and the runner grows
# when it loads outputs to check them. The helper stays at ~10 MiB, below any tool's own peak.
LAUNCHER = """
import json, os, subprocess, sys, time
sys.path.insert(0, BENCH)
from treemem import TreePeak

for line in sys.stdin:
    req = json.loads(line)
    t0 = time.perf_counter()
    proc = subprocess.Popen(req["argv"], cwd=req["cwd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreePeak(proc.pid) if req["sample"] else None
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    pss = sampler.stop() if sampler is not None else 0.0
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024.0,
                      "pss": pss, "rc": os.waitstatus_to_exitcode(status),
                      "err": err.decode(errors="replace")[-600:]}), flush=True)
""".replace("BENCH", repr(str(HERE)))


class Launcher:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str], cwd: Path, *, sample: bool = False) -> tuple[float, float, float, float, int, str]:
        """(wall seconds, CPU seconds, peak RSS MiB of the largest process, peak PSS MiB of the whole process
        tree (sampled every 20 ms when ``sample``, else 0), exit code, stderr tail) of one whole-process run."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "sample": sample}) + "\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        return r["wall"], r["cpu"], r["rss"], r["pss"], r["rc"], r["err"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def check(path: Path, truth: dict[str, np.ndarray], tolerance: float) -> tuple[bool, str]:
    """The output has the truth's annotation count and every box within ``tolerance`` px of the truth."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return False, f"unreadable output: {e}"
    n_truth = len(truth["image"])
    anns = doc.get("annotations", [])
    if len(anns) != n_truth:
        return False, f"{len(anns)} annotations, expected {n_truth}"
    name_of = {im["id"]: Path(im["file_name"]).name for im in doc["images"]}
    img_idx = np.array([int(name_of[a["image_id"]].rsplit("_", 1)[1].split(".")[0]) for a in anns])
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    got = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
    exp = np.column_stack([truth[k].astype(np.float64) for k in ("x0", "y0", "x1", "y1")])
    go, eo = np.argsort(img_idx, kind="stable"), np.argsort(truth["image"], kind="stable")
    gi, ei = img_idx[go], truth["image"][eo]
    got, exp = got[go], exp[eo]
    if not np.array_equal(gi, ei):
        return False, "annotations per image differ from the truth"
    bounds = np.flatnonzero(np.diff(ei)) + 1
    dev = 0.0
    for g, e in zip(np.split(got, bounds), np.split(exp, bounds), strict=True):
        if len(e):
            d = np.abs(e[:, None, :] - g[None, :, :]).max(axis=2).min(axis=1).max()
            dev = max(dev, float(d))
    if dev > tolerance:
        return False, f"box deviation up to {dev:.3f} px"
    return True, f"{n_truth} boxes, max deviation {dev:.3g} px"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--images", type=int, help="override the number of images")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="yolo,voc,cvat,labelstudio")
    ap.add_argument("--tools", default="prelabel,globox,labelformat,lsconverter")
    ap.add_argument("--tolerance", type=float, default=1.01)
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="another prelabel checkout with its own .venv (e.g. a worktree of an earlier commit): "
                         "run as the tool 'baseline' beside this one, for before/after tables")
    a = ap.parse_args()
    if a.baseline is not None:
        differ = same_libraries(Path(sys.executable), a.baseline / ".venv" / "bin" / "python")
        if differ:
            sys.exit(f"the baseline's venv differs from this one ({differ}): install the same versions there, "
                     "e.g. with uv pip install -p <baseline>/.venv/bin/python <package>==<version>")
    launcher = Launcher()  # first, while this process is small
    n = a.images or SIZES[a.size]
    data = HERE / "data" / f"{a.size}-{n}"
    if not (data / "truth.npz").exists():
        print(f"generating {n} images into {data} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--images", str(n), "--out", str(data)],
                       check=True)
    truth = dict(np.load(data / "truth.npz"))
    wanted = set(a.tools.split(","))
    for tool in sorted(wanted - {"prelabel"}):
        ensure_bytecode(peer_python(tool))
    if "prelabel" in wanted:
        ensure_bytecode(Path(sys.executable), ROOT / "prelabel")
    if a.baseline is not None:
        ensure_bytecode(a.baseline / ".venv" / "bin" / "python", a.baseline / "prelabel")
    results: list[dict[str, object]] = []
    for fmt in a.formats.split(","):
        out = HERE / "out" / a.size / fmt
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cmds = {t: c for t, c in commands(fmt, data, out, a.baseline).items()
                if t in wanted or (t == "baseline" and a.baseline is not None)}
        times: dict[str, list[float]] = {t: [] for t in cmds}
        cpus: dict[str, list[float]] = {t: [] for t in cmds}
        peaks: dict[str, list[float]] = {t: [] for t in cmds}
        trees: dict[str, list[float]] = {t: [] for t in cmds}
        notes: dict[str, str] = {}
        for k in range(a.runs + 1):  # the timed rounds, then one round that samples the memory of the tree
            sample = k == a.runs     # (sampling /proc costs CPU, so it is kept out of the timed rounds)
            for tool, (argv, _) in cmds.items():
                wall, cpu, rss, pss, rc, err = launcher.run(argv, out, sample=sample)
                if rc != 0:
                    notes[tool] = f"exit {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}"
                    continue
                if sample:
                    trees[tool].append(pss)
                    continue
                times[tool].append(wall)
                cpus[tool].append(cpu)
                peaks[tool].append(rss)
        for tool, (_argv, path) in cmds.items():
            ok, msg = check(path, truth, a.tolerance) if tool not in notes else (False, notes[tool])
            results.append({"format": fmt, "tool": tool, "runs": len(times[tool]),
                            "median_s": statistics.median(times[tool]) if times[tool] else None,
                            "min_s": min(times[tool]) if times[tool] else None,
                            "max_s": max(times[tool]) if times[tool] else None,
                            "cpu_s": statistics.median(cpus[tool]) if cpus[tool] else None,
                            "peak_mib": max(peaks[tool]) if peaks[tool] else None,
                            "tree_pss_mib": max(trees[tool]) if trees[tool] else None, "ok": ok, "check": msg})
    launcher.close()
    # ratios against the fastest peer of each format
    print(f"\n{n} images, {len(truth['image'])} boxes, {a.runs} run(s) each; ratio = fastest peer / prelabel\n")
    print(f"{'format':<12} {'tool':<12} {'median s':>9} {'min-max s':>12} {'cpu s':>7} {'peak MiB':>9} "
          f"{'tree MiB':>9} {'speed-up':>9}  check")
    summary = []
    for fmt in a.formats.split(","):
        rows = [r for r in results if r["format"] == fmt]
        pre = next((r for r in rows if r["tool"] == "prelabel"), None)
        peers = [r for r in rows if r["tool"] != "prelabel" and r["median_s"]]
        fastest = min(peers, key=lambda r: r["median_s"]) if peers else None  # type: ignore[arg-type,return-value]
        for r in rows:
            ratio = ""
            if pre and pre["median_s"] and r["median_s"]:
                ratio = f"{r['median_s'] / pre['median_s']:.1f}x"  # type: ignore[operator]
            med = f"{r['median_s']:.2f}" if r["median_s"] else "-"
            spread = f"{r['min_s']:.2f}-{r['max_s']:.2f}" if r["median_s"] else "-"
            cpu = f"{r['cpu_s']:.2f}" if r["cpu_s"] else "-"
            peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] else "-"
            tree = f"{r['tree_pss_mib']:.0f}" if r["tree_pss_mib"] else "-"
            print(f"{fmt:<12} {r['tool']:<12} {med:>9} {spread:>12} {cpu:>7} {peak:>9} {tree:>9} {ratio:>9}  "
                  f"{'ok' if r['ok'] else 'FAIL'}: {r['check']}")
        if pre and fastest and pre["median_s"]:
            summary.append({"format": fmt, "fastest_peer": fastest["tool"],
                            "speedup": fastest["median_s"] / pre["median_s"],  # type: ignore[operator]
                            "memory_ratio": (pre["peak_mib"] / fastest["peak_mib"])  # type: ignore[operator]
                            if pre["peak_mib"] and fastest["peak_mib"] else None})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    doc = {"size": a.size, "images": n, "boxes": int(len(truth["image"])), "runs": a.runs,
           "commit": commit.stdout.strip(), "results": results, "summary": summary}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / f"{a.size}.json").write_text(json.dumps(doc, indent=2))
    print(f"\nwritten to {HERE / 'out' / (a.size + '.json')}")


if __name__ == "__main__":
    main()
