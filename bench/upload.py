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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="large")
    ap.add_argument("--max-file-size", default="25MB")
    ap.add_argument("--workers", type=int, default=2, help="shards uploaded at once (the CLI default: 2)")
    a = ap.parse_args()
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
