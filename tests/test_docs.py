"""The documentation cannot rot: its commands and examples are run, its references checked.

What runs, and where (each in a fresh temporary folder holding a copy of ``sample_data/``, so relative paths
such as ``sample_data/yolo`` work and nothing is written into the repository):

- README.md: the ```bash block after "Quick start: command line", line by line, with the venv's ``prelabel``
  first on PATH (the ``. .venv/bin/activate`` line is what that PATH does); every line must exit 0. Then the
  COCO it wrote is checked (valid, AP 1.0 against itself) and the local project holds what was uploaded.
- README.md and docs/**/*.md: every ```python block, in order, in one namespace per file.
- docs/**/*.md: every ```bash block, in order, each as one ``bash -euo pipefail`` script. There ``prelabel`` is a
  small launcher that has a pre-imported prelabel process fork and run ``prelabel.cli:main`` (the console
  script's entry point) with the same arguments, folder, environment and stdin/stdout/stderr, and returns its
  exit code; signals are passed on. It saves the ~1 s import per command; the README quick start above runs the
  real installed script. ``PRELABEL_DOCS_REAL=1`` runs the docs with the real script too.

Not run: other README blocks (``make demo`` / ``make test``), and blocks marked ```text, ```console,
```py-norun or ```sh-norun (commands that need a server or credentials, sample output). ```py-models blocks
need torch and Ultralytics: tests/test_models_torch.py runs them under ``make test-models``.

Checked without running: every format of ``prelabel formats`` has docs/formats/<name>.md; every command and
option of the CLI is in docs/cli.md; every report code and every ``--option`` the docs name exists.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import click
import pytest

from prelabel.adapters import FORMATS
from prelabel.cli import main as cli_main
from prelabel.report import CODES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent  # the venv running the tests: its bin holds the 'prelabel' script

# Quick-start commands whose subcommand is not implemented yet: {subcommand: reason}. Temporary only: an
# entry here turns that command's failure into an xfail. Empty: every README command is real.
PENDING: dict[str, str] = {}

_FENCE = re.compile(r"^```([^\s`]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """The fenced blocks of ``lang`` in ``path``: (1-based line of the first code line, code)."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) == lang:
            out.append((text.count("\n", 0, m.start(2)) + 1, m.group(2)))
    return out


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def quickstart_commands() -> list[str]:
    """The command lines of the README's ```bash block after the "Quick start: command line" heading."""
    text = README.read_text(encoding="utf-8")
    head = re.search(r"^#+ Quick start: command line\s*$", text, re.M)
    if head is None:
        raise AssertionError("README.md has no 'Quick start: command line' heading")
    m = _FENCE.search(text, head.end())
    if m is None or m.group(1) != "bash":
        raise AssertionError("README.md: no ```bash block after 'Quick start: command line'")
    lines = [ln.strip() for ln in m.group(2).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PRELABEL_CONFIG", None)
    for var in ("LABELLERR_API_KEY", "LABELLERR_API_SECRET", "LABELLERR_CLIENT_ID", "LABELLERR_BASE_URL",
                "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        env.pop(var, None)
    env["PRELABEL_CONFIG"] = "/nonexistent/prelabel-docs-test.json"  # never a user's real credentials
    env["COLUMNS"] = "110"
    return env


def _workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "sample_data", root / "sample_data",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _subcommand(line: str) -> str:
    words = line.split()
    return words[1] if len(words) > 1 and words[0] == "prelabel" else ""


# ------------------------------------------------------------------------------------ README quick start
QUICKSTART = quickstart_commands()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs the README quick-start lines in order in one workspace; returns their results by index."""
    ws = _workspace(tmp_path_factory.mktemp("readme"))
    results: dict[int, subprocess.CompletedProcess[str]] = {}
    for i, line in enumerate(QUICKSTART):
        if line.startswith((". ", "source ")):
            continue  # activating the venv: the PATH of _env() does it
        results[i] = subprocess.run(["bash", "-c", line], cwd=ws, env=_env(), capture_output=True, text=True,
                                    timeout=300, check=False)
    return {"ws": ws, "results": results}


def test_quickstart_activates_the_venv_make_creates() -> None:
    first = QUICKSTART[0]
    assert first == ". .venv/bin/activate", "the quick start should begin by activating the venv 'make' creates"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^VENV\s*\?=\s*\.venv\s*$", makefile, re.M), "Makefile no longer creates .venv"
    assert (VENV_BIN / "prelabel").exists(), f"no prelabel script in {VENV_BIN}: install the package first"


_RUN = [i for i, c in enumerate(QUICKSTART) if not c.startswith((". ", "source "))]


@pytest.mark.parametrize("index", _RUN, ids=[f"{i}-{_subcommand(QUICKSTART[i])}" for i in _RUN])
def test_quickstart_command_runs(quickstart: dict[str, Any], index: int) -> None:
    line = QUICKSTART[index]
    sub = _subcommand(line)
    if sub in PENDING:
        pytest.xfail(f"'prelabel {sub}' is not implemented yet: {PENDING[sub]}")
    res = quickstart["results"][index]
    assert res.returncode == 0, (f"README quick start: `{line}` exited {res.returncode}\n"
                                 f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-2000:]}")


def test_quickstart_outputs_are_what_the_readme_says(quickstart: dict[str, Any], self_ap: Any) -> None:
    import json

    import prelabel

    ws: Path = quickstart["ws"]
    out = ws / "build" / "out.json"
    if not out.is_file():
        pytest.fail("the quick start wrote no build/out.json")
    assert prelabel.validate(out, images_root=ws / "sample_data" / "images").ok
    doc = json.loads(out.read_text())
    # sample_data holds 5 images and 7 objects (sample_data/make_sample.py); YOLO keeps the unlabelled image
    assert (len(doc["images"]), len(doc["annotations"])) == (5, 7)
    assert self_ap(doc) == 1.0
    report = json.loads((ws / "build" / "report.json").read_text())
    assert report["ledger"] == {"read": 7, "written": 7, "dropped": 0, "balanced": True}
    # --min-score 0.6 drops the one sample prediction scored 0.58 (the cat in room.png)
    preds = json.loads((ws / "build" / "preds.json").read_text())
    assert len(preds["annotations"]) == 6 and min(a["score"] for a in preds["annotations"]) >= 0.6
    if "upload" not in PENDING:
        from prelabel.upload.local import LocalProject

        st = LocalProject(ws / "build" / "project").status()
        assert st["annotations"] == 7 and st["assets"] == 5


# ------------------------------------------------------------------------------------ runnable examples
PY_DOCS = [p for p in doc_files() if blocks(p, "python")]
SH_DOCS = [p for p in sorted(DOCS.rglob("*.md")) if blocks(p, "bash")]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    ws = _workspace(tmp_path / "ws")
    monkeypatch.chdir(ws)
    for var in ("LABELLERR_API_KEY", "LABELLERR_API_SECRET", "LABELLERR_CLIENT_ID", "LABELLERR_BASE_URL",
                "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PRELABEL_CONFIG", "/nonexistent/prelabel-docs-test.json")
    yield ws


@pytest.mark.parametrize("doc", PY_DOCS, ids=[rel(p) for p in PY_DOCS])
def test_python_examples_run(doc: Path, workspace: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for line, code in blocks(doc, "python"):
        # compiled with the doc's name and padded to its line, so a traceback points into the .md file
        compiled = compile("\n" * (line - 1) + code, str(doc), "exec")
        with redirect_stdout(io.StringIO()):
            try:
                exec(compiled, namespace)  # noqa: S102 - the documentation's own examples
            except Exception as e:
                pytest.fail(f"{rel(doc)}:{line}: the ```python block raised {type(e).__name__}: {e}")


@pytest.mark.parametrize("doc", SH_DOCS, ids=[rel(p) for p in SH_DOCS])
def test_shell_examples_run(doc: Path, tmp_path: Path, launcher: dict[str, str]) -> None:
    import os

    ws = _workspace(tmp_path / "ws")
    env = _env()
    if launcher:
        env["PATH"] = f"{launcher['PATH_PREFIX']}{os.pathsep}{env['PATH']}"
        env["PRELABEL_DOCS_ZYGOTE"] = launcher["PRELABEL_DOCS_ZYGOTE"]
    for line, code in blocks(doc, "bash"):
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=ws, env=env, capture_output=True,
                             text=True, timeout=300, check=False)
        assert res.returncode == 0, (f"{rel(doc)}:{line}: the ```bash block exited {res.returncode}\n{code}\n"
                                     f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-2000:]}")


# ------------------------------------------------------------------------------------ fast launcher
_ZYGOTE = r"""
import json, os, signal, socket, sys, traceback
import prelabel, prelabel.cli, prelabel.pipeline, prelabel.inspection, prelabel.upload.driver
for _m in ("yolo", "voc", "cvat", "labelstudio", "coco", "predictions"):
    __import__("prelabel.adapters." + _m)
for _m in ("prelabel.upload.local", "prelabel.upload.labellerr", "prelabel.upload.server", "prelabel.preview"):
    try:
        __import__(_m)
    except ImportError:
        pass
signal.signal(signal.SIGCHLD, signal.SIG_IGN)          # workers are reaped automatically
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(16)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    if os.fork():
        for fd in fds:
            os.close(fd)
        conn.close()
        continue
    srv.close()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    req = json.loads(data)
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    conn.sendall(("pid %d\n" % os.getpid()).encode())
    sys.argv = ["prelabel", *req["argv"]]
    code = 0
    try:
        prelabel.cli.main(args=req["argv"], prog_name="prelabel")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(("exit %d\n" % code).encode())
    finally:
        os._exit(code)
"""

_LAUNCHER = r"""
import json, os, signal, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["PRELABEL_DOCS_ZYGOTE"])
req = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
socket.send_fds(s, [json.dumps(req).encode()], [0, 1, 2])
f = s.makefile("r")
pid = int(f.readline().split()[1])
def forward(sig, _frame):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, forward)
line = f.readline()
sys.exit(int(line.split()[1]) if line.startswith("exit ") else 143)
"""


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Env additions that put the fast ``prelabel`` launcher first on PATH (or nothing, for the real script)."""
    import os

    if os.environ.get("PRELABEL_DOCS_REAL") or not hasattr(__import__("socket"), "send_fds"):
        yield {}
        return
    d = tmp_path_factory.mktemp("launcher")
    sock = str(d / "zygote.sock")
    log = d / "zygote.log"
    with open(log, "w") as err:
        zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE, sock], stdout=subprocess.PIPE, stderr=err,
                                  stdin=subprocess.DEVNULL, text=True, env=_env())
    try:
        ready = zygote.stdout.readline() if zygote.stdout else ""
        if ready.strip() != "ready":
            zygote.kill()
            pytest.fail(f"the docs launcher did not start: {log.read_text()[-2000:]}")
        bin_dir = d / "bin"
        bin_dir.mkdir()
        script = bin_dir / "prelabel"
        script.write_text(f"#!{sys.executable} -S\n{_LAUNCHER}")
        script.chmod(0o755)
        yield {"PATH_PREFIX": str(bin_dir), "PRELABEL_DOCS_ZYGOTE": sock}
    finally:
        zygote.kill()
        zygote.wait()


# ------------------------------------------------------------------------------------ references
def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{path} ")


def _all_docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in doc_files())


def _code_spans(text: str) -> list[str]:
    """Where the docs name commands, options and codes: `inline code`, and the lines of fenced blocks that
    call prelabel (other tools' options, such as pip's, are not prelabel's to check)."""
    spans = re.findall(r"`([^`\n]+)`", _FENCE.sub("", text))
    for m in _FENCE.finditer(text):
        spans += [ln for ln in m.group(2).splitlines() if "prelabel " in ln]
    return spans


def test_every_format_has_a_page() -> None:
    out = subprocess.run([str(VENV_BIN / "prelabel"), "formats"], capture_output=True, text=True, env=_env(),
                         timeout=120, check=True).stdout
    listed = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    assert sorted(listed) == sorted(FORMATS)
    missing = [f for f in listed if not (DOCS / "formats" / f"{f}.md").is_file()]
    assert not missing, f"formats without a docs/formats/<name>.md page: {missing}"
    readme = README.read_text(encoding="utf-8")
    for f in listed:
        assert f"| `{f}` |" in readme, f"README formats table lacks `{f}`"
        assert f"formats/{f}.md" in (DOCS / "README.md").read_text(encoding="utf-8"), f"docs/README.md: no {f}"


def test_every_command_and_option_is_in_cli_md() -> None:
    cli_md = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []
    for path, cmd in _commands(cli_main):
        if f"prelabel {path}" not in cli_md:
            missing.append(f"prelabel {path}")
        for param in cmd.params:
            if isinstance(param, click.Option):
                for opt in param.opts + param.secondary_opts:
                    if opt.startswith("--") and opt != "--help" and f"`{opt}" not in cli_md:
                        missing.append(f"prelabel {path} {opt}")
    for param in cli_main.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and opt != "--help" and f"`{opt}" not in cli_md:
                missing.append(f"prelabel {opt}")
    assert not missing, f"docs/cli.md does not document: {missing}"


def _other_tools_options() -> set[str]:
    """Options of the project's own scripts (bench/, scripts/), which the docs may name too."""
    found: set[str] = set()
    for folder in (ROOT / "bench", ROOT / "scripts"):
        for f in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            found.update(re.findall(r"add_argument\(\s*[\"'](--[a-z0-9-]+)", f.read_text(encoding="utf-8")))
    return found


def test_options_named_in_the_docs_exist() -> None:
    known = {"--help"} | _other_tools_options()
    for param in cli_main.params:
        known.update(getattr(param, "opts", []))
    for _path, cmd in _commands(cli_main):
        for param in cmd.params:
            if isinstance(param, click.Option):
                known.update(param.opts + param.secondary_opts)
    bad = []
    for doc in doc_files():
        for span in _code_spans(doc.read_text(encoding="utf-8")):
            for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span):
                if opt not in known:
                    bad.append(f"{rel(doc)}: {opt}")
    assert not bad, f"options the CLI does not have: {sorted(set(bad))}"


def test_report_codes_named_in_the_docs_exist() -> None:
    # a code in backticks on its own (`dropped.no_image`); prefixes that also begin ordinary names (value.,
    # file., task.) are left out, and so are file names
    pattern = re.compile(r"^(?:dropped|image|category|coordinates|skeleton)\.[a-z_]+$")
    files = re.compile(r"\.(?:jpe?g|png|txt|xml|json|csv|ya?ml|md)$")
    bad = []
    for doc in doc_files():
        for span in re.findall(r"`([^`\n]+)`", _FENCE.sub("", doc.read_text(encoding="utf-8"))):
            span = span.strip()
            if pattern.match(span) and not files.search(span) and span not in CODES:
                bad.append(f"{rel(doc)}: {span}")
    assert not bad, f"report codes that prelabel.report.CODES does not have: {sorted(set(bad))}"


def test_docs_link_to_files_that_exist() -> None:
    bad = []
    for doc in doc_files():
        text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                bad.append(f"{rel(doc)} -> {target}")
    assert not bad, f"broken relative links: {bad}"
