"""Is the upload stage bound by the server or by prelabel? prelabel's own CPU per shard against the server's.

    python bench/upload.py                 # the large bench dataset (20,000 images, ~300,000 boxes)
    python bench/upload.py --size small    # 1,000 images

The bench's YOLO dataset (``bench/generate.py``) is converted to COCO shards of ``--max-file-size`` (default
25 MB, the command line's default); a local project is made for its images; then two uploads run, each as a
whole ``prelabel upload`` process:

- to ``labellerr:PROJECT`` served by ``prelabel serve`` in another process over loopback (the recorded
  Labellerr contract: upload, then poll the job): the client's CPU (user + sys, from ``wait4``) against the
  server's (``/proc/PID/stat`` before and after) and the wall time, per shard;
- to ``local:DIR`` (the embedded project: there the "server" is SQLite in the same process).

Printed as a table and written to ``bench/out/upload.json``. The client's CPU per shard includes its start-up
(imports), spread over the shards.

Label Studio mode (``--labelstudio``): a real Label Studio 1.23.2 on SQLite, started from ``.ls/template`` as the
tests start it (``tests/ls_server.py``), receives N images with exactly 15 boxes each::

    python bench/upload.py --labelstudio 2000     # or 20000

three whole ``prelabel upload`` processes run: the first upload (``--to labelstudio:new --create-project ...
--images DIR``: images uploaded, tasks created, predictions imported and read back), then two replace re-uploads
of the same file to that project. Each is timed (wall, client CPU, and the CPU of Label Studio's process tree), and
afterwards every task must hold exactly one prediction of the model version with its 15 regions. Written to
``bench/out/upload-labelstudio-N.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PRELABEL = Path(sys.executable).with_name("prelabel")
SIZES = {"small": 1000, "large": 20000}
CREDS = {"LABELLERR_API_KEY": "bench-key", "LABELLERR_API_SECRET": "bench-secret", "LABELLERR_CLIENT_ID": "bench"}
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """user + sys seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _client(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a client process; wall and CPU (user + sys) from wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "code": os.waitstatus_to_exitcode(status),
            "out": out.decode(), "err": err.decode()}


def _session_cpu(sid: int) -> float:
    """user + sys seconds of every live process of session ``sid`` (Label Studio and any children)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


_LOG_LINE = re.compile(r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*?"(GET|POST|DELETE) (\S+) HTTP')
_PHASES = {"list/read back (GET /api/tasks, fields=all)": ("GET", "/api/tasks?", "fields=all"),
           "import predictions": ("POST", "/import/predictions", ""),
           "delete replaced (DELETE /api/predictions/ID)": ("DELETE", "/api/predictions/", ""),
           "delete in bulk (DELETE /api/projects/ID/model-versions/)": ("DELETE", "/model-versions/", "")}


def _phases(log_text: str) -> dict[str, dict[str, float]]:
    """Per phase, from Label Studio's request log: requests, and seconds from the first to the last answer."""
    import datetime as dt

    seen: dict[str, list[float]] = {k: [] for k in _PHASES}
    busy: dict[str, float] = dict.fromkeys(_PHASES, 0.0)
    last, prev = None, None
    for line in log_text.splitlines():
        m = _LOG_LINE.match(line)
        if not m or line == last:          # Label Studio logs each request twice
            continue
        last = line
        when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, (method, part, extra) in _PHASES.items():
            if m.group(2) == method and part in m.group(3) and extra in m.group(3):
                seen[name].append(when)
                busy[name] += when - prev if prev is not None else 0.0
        prev = when
    # busy_s: per request, the time since the previous answer (one request at a time: about its own duration)
    return {k: {"requests": len(v), "span_s": round(max(v) - min(v), 1) if v else 0.0,
                "busy_s": round(busy[k], 1)} for k, v in seen.items()}


def labelstudio(n: int, boxes: int = 15) -> None:
    """First upload and two replace re-uploads of ``n`` images x ``boxes`` boxes into a real Label Studio."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import httpx
    import ls_server
    from generate import png_header

    work = HERE / "data" / f"upload-labelstudio-{n}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "images").mkdir(parents=True)
    rng = __import__("numpy").random.default_rng(0)
    names = [f"{i:06d}.png" for i in range(n)]
    cats = [{"id": c + 1, "name": f"class_{c}"} for c in range(10)]
    images, anns = [], []
    for i, name in enumerate(names, 1):
        w, h = int(rng.integers(320, 1921)), int(rng.integers(320, 1921))
        (work / "images" / name).write_bytes(png_header(w, h))
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        for _ in range(boxes):
            bw, bh = int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 11)),
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0, "segmentation": [],
                         "score": round(float(rng.uniform(0.3, 1.0)), 3)})
    coco = work / "coco.json"
    coco.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "categories": cats,
                                "annotations": anns}))
    server = ls_server.start()
    env = dict(os.environ, LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY=server.token, PRELABEL_PROGRESS="off")
    runs: list[dict[str, Any]] = []
    try:
        target = "labelstudio:new"
        for step in ("first upload", "replace re-upload 1", "replace re-upload 2"):
            extra = ["--create-project", "bench", "--images", str(work / "images")] if step == "first upload" else []
            cpu0 = _session_cpu(server.pid)
            log0 = server.log.stat().st_size
            up = _client([str(PRELABEL), "upload", str(coco), "--to", target, *extra, "--no-journal", "--json"], env)
            srv = _session_cpu(server.pid) - cpu0
            if up["code"]:
                sys.exit(f"{step} failed:\n{up['out']}\n{up['err']}")
            out = json.loads(up["out"])
            target = out["target"]
            runs.append({"step": step, "wall_s": round(up["wall"], 1), "client_cpu_s": round(up["cpu"], 1),
                         "server_cpu_s": round(srv, 1), "applied": out["annotations_applied"],
                         "replaced": out["annotations_replaced"], "images_replaced": out["images_replaced"],
                         "phases": _phases(server.log.read_bytes()[log0:].decode(errors="replace"))})
            print(runs[-1], flush=True)
        # every task: exactly one prediction with all its regions
        pid = int(target.split(":")[1])
        per_task: list[int] = []
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {server.token}"}, timeout=600) as c:
            page = 1
            while len(per_task) < n:
                body = c.get("/api/tasks", params={"project": pid, "fields": "all", "include": "id,predictions",
                                                   "page": page, "page_size": 500}).json()
                per_task += [len(p["result"]) if len(t["predictions"]) == 1 else -1 for t in body["tasks"]
                             for p in t["predictions"][:1] or [{"result": []}]]
                page += 1
        ok = per_task == [boxes] * n
    finally:
        server.stop()
    result = {"images": n, "boxes": len(anns), "runs": runs, "every_task_one_prediction_with_all_regions": ok}
    OUT.mkdir(exist_ok=True)
    (OUT / f"upload-labelstudio-{n}.json").write_text(json.dumps(result, indent=1))
    print(f"{n} images x {boxes} boxes into Label Studio {ls_server.LS_VERSION} (SQLite)")
    print(f"{'step':<22} {'wall s':>7} {'client cpu s':>13} {'server cpu s':>13} {'applied':>9} {'replaced':>9}")
    for r in runs:
        print(f"{r['step']:<22} {r['wall_s']:>7} {r['client_cpu_s']:>13} {r['server_cpu_s']:>13} {r['applied']:>9} "
              f"{r['replaced']:>9}")
    for r in runs:
        print(f"{r['step']}: " + "; ".join(f"{k}: {v['requests']} requests, {v['busy_s']} s"
                                          for k, v in r["phases"].items()))
    print(f"every task holds exactly one prediction with its {boxes} regions: {ok}")
    if not ok:
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="large")
    ap.add_argument("--max-file-size", default="25MB")
    ap.add_argument("--workers", type=int, default=2, help="shards uploaded at once (the CLI default: 2)")
    ap.add_argument("--labelstudio", type=int, metavar="N", help="Label Studio mode: N images x 15 boxes")
    a = ap.parse_args()
    if a.labelstudio:
        labelstudio(a.labelstudio)
        return
    n = SIZES[a.size]
    data = HERE / "data" / f"{a.size}-{n}"
    if not (data / "yolo").is_dir():
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--size", a.size], check=True)
    work = HERE / "data" / f"upload-{a.size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, **CREDS, PRELABEL_PROGRESS="off")
    coco = work / "coco.json"
    conv = _client([str(PRELABEL), "-q", "convert", str(data / "yolo"), "--from", "yolo", "-o", str(coco),
                    "--max-file-size", a.max_file_size], env)
    if conv["code"]:
        sys.exit(conv["err"])
    shards = sorted(work.glob("coco*.json"))
    boxes = sum(len(json.loads(p.read_bytes())["annotations"]) for p in shards)
    results: dict[str, Any] = {"size": a.size, "images": n, "boxes": boxes, "shards": len(shards),
                               "shard_mb": round(sum(p.stat().st_size for p in shards) / len(shards) / 2**20, 1),
                               "workers": a.workers}

    # --- Labellerr contract over loopback: prelabel serve in its own process
    proj = work / "served"
    init = _client([str(PRELABEL), "project", "init", str(proj), "--images", str(data / "yolo" / "images"),
                    "--schema", str(data / "yolo" / "data.yaml"), "--project-id", "bench"], env)
    if init["code"]:
        sys.exit(init["err"])
    server = subprocess.Popen([str(PRELABEL), "serve", str(proj), "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if not m:
            sys.exit(f"prelabel serve did not start: {line!r}")
        srv_cpu0 = _cpu_of(server.pid)
        up = _client([str(PRELABEL), "upload", str(coco), "--to", "labellerr:bench", "--workers", str(a.workers),
                      "--no-journal", "--json"], dict(env, LABELLERR_BASE_URL=m.group(1)))
        srv_cpu = _cpu_of(server.pid) - srv_cpu0
    finally:
        server.terminate()
        server.wait()
    if up["code"]:
        sys.exit(up["err"])
    applied = json.loads(up["out"])["annotations_applied"]
    results["labellerr"] = {"wall_s": round(up["wall"], 2), "client_cpu_s": round(up["cpu"], 2),
                            "server_cpu_s": round(srv_cpu, 2), "applied": applied,
                            "client_cpu_per_shard_s": round(up["cpu"] / len(shards), 3),
                            "server_cpu_per_shard_s": round(srv_cpu / len(shards), 3)}

    # --- the local project (SQLite in the client's process)
    local = work / "local"
    init = _client([str(PRELABEL), "project", "init", str(local), "--images", str(data / "yolo" / "images"),
                    "--schema", str(data / "yolo" / "data.yaml")], env)
    if init["code"]:
        sys.exit(init["err"])
    up = _client([str(PRELABEL), "upload", str(coco), "--to", f"local:{local}", "--workers", str(a.workers),
                  "--no-journal", "--json"], env)
    if up["code"]:
        sys.exit(up["err"])
    results["local"] = {"wall_s": round(up["wall"], 2), "cpu_s": round(up["cpu"], 2),
                        "applied": json.loads(up["out"])["annotations_applied"],
                        "cpu_per_shard_s": round(up["cpu"] / len(shards), 3)}

    OUT.mkdir(exist_ok=True)
    (OUT / "upload.json").write_text(json.dumps(results, indent=1))
    lab, loc = results["labellerr"], results["local"]
    print(f"{n} images, {boxes} boxes in {len(shards)} shard(s) of ~{results['shard_mb']} MB, "
          f"{a.workers} upload worker(s)")
    print(f"{'target':<22} {'wall s':>7} {'client cpu s':>13} {'server cpu s':>13} {'client cpu/shard':>17} "
          f"{'applied':>9}")
    print(f"{'labellerr (serve)':<22} {lab['wall_s']:>7} {lab['client_cpu_s']:>13} {lab['server_cpu_s']:>13} "
          f"{lab['client_cpu_per_shard_s']:>17} {lab['applied']:>9}")
    print(f"{'local (SQLite)':<22} {loc['wall_s']:>7} {loc['cpu_s']:>13} {'(same process)':>13} "
          f"{loc['cpu_per_shard_s']:>17} {loc['applied']:>9}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
