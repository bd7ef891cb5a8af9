"""Progress on stderr (plain lines, rich bars, nothing with -q), --help examples, --version, shell completion.

The CLI runs in-process (click's CliRunner: stderr is not a terminal). ``PRELABEL_PROGRESS=plain`` with
``PRELABEL_PROGRESS_INTERVAL=0`` makes every progress step a line, so the lines can be asserted exactly
(without the interval, a run this short prints none: that is checked too).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from upload_support import coco_doc, make_images, write_json

from prelabel import __version__
from prelabel.cli import main
from prelabel.progress import Stages, format_eta, progress
from prelabel.upload.driver import UploadProgress, upload
from prelabel.upload.local import LocalProject

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
PLAIN = {"PRELABEL_PROGRESS": "plain", "PRELABEL_PROGRESS_INTERVAL": "0"}
ETA = r"ETA \d+:\d\d:\d\d"

# sample_data/voc/Annotations holds 5 XML files (empty, park, portrait, room, street); the output is one file
# VOC streams (prelabel.pipeline._convert_stream): chunks are read, reconciled, clipped and written as they
# come, so the stages are reading (with the files) and writing
VOC_STAGES = [  # the 5 XML files are read in 5 parts (prelabel.engine.PartStream), counted as each part is in
    "convert: reading",
    "convert: reading 0/5 files",
    "convert: reading 1/5 files",
    "convert: reading 2/5 files",
    "convert: reading 3/5 files",
    "convert: reading 4/5 files",
    "convert: reading 5/5 files",
    "convert: writing",
    "convert: writing 1/1 files",
]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


# ---------------------------------------------------------------------------------------------- the facade
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_most_every_interval_and_a_last_line() -> None:
    clock, out = FakeClock(), io.StringIO()
    with progress(10, desc="reading", unit="files", stream=out, interval=2.0, clock=clock, mode="plain") as bar:
        clock.now += 1.0
        bar.advance(3)          # 1 s after the start: too soon
        clock.now += 1.5
        bar.advance(2)          # 2.5 s: a line
        clock.now += 0.5
        bar.advance(1)          # 0.5 s after it: too soon
    # the last state (6/10) was not printed: one more line at the end
    assert out.getvalue().splitlines() == ["reading 5/10 files", "reading 6/10 files"]


def test_a_short_run_prints_nothing_and_off_prints_nothing() -> None:
    clock, out = FakeClock(), io.StringIO()
    with progress(3, desc="reading", unit="files", stream=out, interval=2.0, clock=clock, mode="plain") as bar:
        bar.advance(3)
    assert out.getvalue() == ""
    with progress(3, desc="reading", stream=out, interval=0.0, mode="off") as bar:
        bar.advance(3)
    with progress(3, desc="reading", stream=out, interval=0.0, mode="plain", enabled=False) as bar:
        bar.advance(3)
    assert out.getvalue() == "" and bar.done == 3


def test_environment_picks_the_mode_and_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()  # not a terminal: 'auto' would be plain; 'rich' forces a bar anyway
    monkeypatch.setenv("PRELABEL_PROGRESS", "rich")
    with progress(2, desc="drawing", stream=out) as bar:
        assert bar.mode == "rich"
        bar.advance(2)
    monkeypatch.setenv("PRELABEL_PROGRESS", "off")
    with progress(2, desc="drawing", stream=out) as bar:
        assert bar.mode == "off"
    monkeypatch.setenv("PRELABEL_PROGRESS", "auto")
    monkeypatch.setenv("PRELABEL_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    with progress(2, desc="drawing", unit="images", stream=out) as bar:
        assert bar.mode == "plain"
        bar.advance()
    assert out.getvalue().splitlines() == ["drawing 1/2 images"]


def test_update_line_shapes() -> None:
    out = io.StringIO()
    with progress(None, desc="upload:", unit="shards", stream=out, interval=0.0, mode="plain") as bar:
        bar.update(completed=0, total=3, note="0 annotations applied")
        bar.update(completed=1, note="12 annotations applied", eta=2.4)
        bar.update(completed=3, note="36 annotations applied", eta=None)
    assert out.getvalue().splitlines() == ["upload: 0/3 shards, 0 annotations applied",
                                           "upload: 1/3 shards, 12 annotations applied, ETA 0:00:02",
                                           "upload: 3/3 shards, 36 annotations applied"]
    assert format_eta(3725.4) == "1:02:05"


def test_stages_unknown_totals_and_repeated_states() -> None:
    out = io.StringIO()
    with Stages("convert", stream=out, interval=0.0, mode="plain") as hook:
        hook("reading")
        hook("reading")         # the same line again: not repeated
        hook("reading", 500, 2000)
        hook("clipping")
    assert out.getvalue().splitlines() == ["convert: reading", "convert: reading 500/2000 files",
                                           "convert: clipping"]


# ---------------------------------------------------------------------------------------------- convert
@pytest.mark.parametrize("child", ["0", "always"])
def test_convert_voc_plain_stage_lines(tmp_path: Path, child: str) -> None:
    """The same lines whether the files are read here or in the reading child (its progress is forwarded)."""
    out = tmp_path / "voc.json"
    r = run("convert", str(SAMPLE / "voc"), "-o", str(out), env={**PLAIN, "PRELABEL_READ_IN_CHILD": child})
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert err[:len(VOC_STAGES)] == VOC_STAGES
    assert err[-1].startswith("wrote 5 image(s)")      # the summary follows the progress lines
    assert r.stdout == ""


def test_convert_yolo_counts_the_files_it_reads(tmp_path: Path) -> None:
    # sample_data/yolo: 5 images, 4 of them with a label file (empty.jpg has none): 9 files read, images (their
    # headers) and label files, counted part by part
    labels = sorted(p.name for p in (SAMPLE / "yolo").rglob("*.txt") if p.name != "classes.txt")
    r = run("convert", str(SAMPLE / "yolo"), "-o", str(tmp_path / "y.json"), env=PLAIN)
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    n = len(labels) + 5
    assert n == 9
    assert f"convert: reading 0/{n} files" in err and f"convert: reading {n}/{n} files" in err


def test_quiet_and_short_runs_print_no_progress(tmp_path: Path) -> None:
    r = run("-q", "convert", str(SAMPLE / "voc"), "-o", str(tmp_path / "q.json"), env=PLAIN)
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""
    # the default (no terminal, 2 s between lines): this short run prints the summary only
    r = run("convert", str(SAMPLE / "voc"), "-o", str(tmp_path / "d.json"),
            env={"PRELABEL_PROGRESS": "auto", "PRELABEL_PROGRESS_INTERVAL": ""})
    assert r.exit_code == 0
    assert not any(line.startswith("convert:") for line in r.stderr.splitlines())


def test_pipeline_hook_is_called_per_stage(tmp_path: Path) -> None:
    from prelabel.pipeline import convert

    calls: list[tuple[str, int, int | None]] = []
    convert(SAMPLE / "voc", tmp_path / "o.json", progress=lambda s, d, t: calls.append((s, d, t)))
    assert calls == [("reading", 0, None), ("reading", 0, 5), ("reading", 5, 5), ("reconciling", 0, None),
                     ("clipping", 0, None), ("writing", 0, None), ("writing", 1, 1)]


# ---------------------------------------------------------------------------------------------- upload
def _three_shards(tmp_path: Path) -> tuple[Path, Path]:
    """A project (made with 'prelabel project init') and a COCO of 3 images x 15 boxes: 3 shards at 2 KB."""
    names = ["a.png", "b.png", "c.png"]
    make_images(tmp_path / "imgs", names)
    r = run("project", "init", str(tmp_path / "proj"), "--images", str(tmp_path / "imgs"), "--categories",
            "cat,dog")
    assert r.exit_code == 0, r.output
    doc = coco_doc([(n, [("cat", [i, i, 5, 5]) for i in range(15)]) for n in names], ["cat", "dog"])
    return tmp_path / "proj", write_json(tmp_path / "big.json", doc)


def test_upload_plain_lines_shards_annotations_eta(tmp_path: Path) -> None:
    proj, coco = _three_shards(tmp_path)
    r = run("upload", str(coco), "--to", f"local:{proj}", "--max-file-size", "2KB", env=PLAIN)
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert err[0].endswith("uploading it as 3 shards of whole images")
    # each shard is one image of 15 boxes, whatever order the 2 workers finish them in: 15, 30, 45 applied
    assert err[1] == "upload: 0/3 shards, 0 annotations applied"
    assert re.fullmatch(rf"upload: 1/3 shards, 15 annotations applied, {ETA}", err[2]), err[2]
    assert re.fullmatch(rf"upload: 2/3 shards, 30 annotations applied, {ETA}", err[3]), err[3]
    assert err[4:] == ["upload: 3/3 shards, 45 annotations applied"]
    assert r.stdout.splitlines()[1] == "  annotations applied: 45 in 3 shards"
    assert LocalProject(proj).status()["annotations"] == 45


def test_upload_json_stdout_parses_with_progress_on(tmp_path: Path) -> None:
    proj, coco = _three_shards(tmp_path)
    for mode in ("plain", "rich"):
        r = run("upload", str(coco), "--to", f"local:{proj}", "--max-file-size", "2KB", "--json",
                env={"PRELABEL_PROGRESS": mode, "PRELABEL_PROGRESS_INTERVAL": "0"})
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["status"] == "completed" and doc["annotations_applied"] == 45 and len(doc["shards"]) == 3
        assert "shards" in r.stderr    # the progress went to stderr
    r = run("-q", "upload", str(coco), "--to", f"local:{proj}", "--max-file-size", "2KB", "--json", env=PLAIN)
    assert r.stderr == "" and json.loads(r.stdout)["annotations_applied"] == 45


def test_upload_dry_run_and_resumed_shards_through_the_api(tmp_path: Path) -> None:
    proj, coco = _three_shards(tmp_path)
    seen: list[UploadProgress] = []
    upload(coco, f"local:{proj}", max_file_size=2048, dry_run=True, progress=seen.append)
    assert [(p.shards_done, p.shards_total, p.annotations_applied, p.dry_run) for p in seen] == [
        (0, 3, 0, True), (1, 3, 15, True), (2, 3, 30, True), (3, 3, 45, True)]
    assert seen[0].eta is None and seen[-1].eta is None and seen[1].eta is not None
    seen.clear()
    upload(coco, f"local:{proj}", max_file_size=2048, workers=1, progress=seen.append)
    assert [(p.shards_done, p.annotations_applied) for p in seen] == [(0, 0), (1, 15), (2, 30), (3, 45)]


def test_push_shows_both_convert_and_upload(tmp_path: Path) -> None:
    r = run("project", "init", str(tmp_path / "proj"), "--images", str(SAMPLE / "images"), "--categories",
            "cat,dog,car,person")
    assert r.exit_code == 0
    r = run("push", str(SAMPLE / "voc"), "--to", f"local:{tmp_path / 'proj'}", env=PLAIN)
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert err[1:1 + len(VOC_STAGES)] == VOC_STAGES        # after the 'categories: reconciling ...' line
    # sample_data/voc: 7 objects (cat 3, dog 2, car 1, person 1), one file, one shard
    assert err[-2:] == ["upload: 0/1 shards, 0 annotations applied", "upload: 1/1 shards, 7 annotations applied"]


# ---------------------------------------------------------------------------------------------- help, version
def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


COMMANDS = _all_commands(main)


def test_the_command_list_is_complete() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"", "convert", "validate", "formats", "inspect", "preview", "upload", "push", "project",
            "project init", "project status", "project export", "serve", "completion"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda c: " ".join(c) or "prelabel")
def test_every_help_has_examples(path: tuple[str, ...]) -> None:
    r = run(*path, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.stdout
    # click's \b kept the example lines as written: each starts with 'prelabel', an env assignment or eval
    lines = r.stdout.split("Examples:", 1)[1].splitlines()[1:]
    examples = [ln.strip() for ln in lines[:next((i for i, ln in enumerate(lines) if not ln.strip()), len(lines))]]
    assert examples and all(re.match(r"(prelabel |eval |[A-Z_]+=)", e) for e in examples), examples


def test_version() -> None:
    r = run("--version")
    assert r.exit_code == 0 and r.stdout == f"prelabel, version {__version__}\n"


# ---------------------------------------------------------------------------------------------- completion
def test_completion_scripts() -> None:
    r = run("completion", "bash")
    assert r.exit_code == 0
    assert "_PRELABEL_COMPLETE=bash_complete" in r.stdout and "complete " in r.stdout
    # the same as click's own entry point
    same = CliRunner().invoke(main, [], prog_name="prelabel", env={"_PRELABEL_COMPLETE": "bash_source"})
    assert same.stdout.strip() == r.stdout.strip()
    for shell in ("zsh", "fish"):
        r = run("completion", shell)
        assert r.exit_code == 0 and f"_PRELABEL_COMPLETE={shell}_complete" in r.stdout
    r = run("completion", env={"SHELL": "/usr/bin/fish"})
    assert r.exit_code == 0 and "_PRELABEL_COMPLETE=fish_complete" in r.stdout
    r = CliRunner().invoke(main, ["completion"], env={"SHELL": "/bin/tcsh"})
    assert r.exit_code == 2 and "no completion for the shell 'tcsh'" in r.stderr


def test_completion_completes_commands_and_choices() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {"_PRELABEL_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        r = CliRunner().invoke(main, [], prog_name="prelabel", env=env)
        return r.stdout.splitlines()

    assert complete("prelabel con", 1) == ["plain,convert"]
    assert complete("prelabel project ", 2) == ["plain,export", "plain,init", "plain,status"]
    assert complete("prelabel convert x --unknown ", 4) == ["plain,error", "plain,drop", "plain,keep"]


# ---------------------------------------------------------------------------------------------- adapter hooks
VOC_XML = ("<annotation><filename>{name}.jpg</filename><size><width>20</width><height>10</height></size>"
           "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>6</xmax><ymax>8</ymax></bndbox>"
           "</object></annotation>")


@pytest.mark.parametrize(("n_files", "workers", "expected"), [
    (1001, 1, [(0, 1001), (500, 1001), (1000, 1001), (1001, 1001)]),   # runs of 500 files in this process
    (6, 2, None),                                                       # a pool of 2: counted per chunk
])
def test_voc_file_count_hook_gives_the_same_dataset(tmp_path: Path, n_files: int, workers: int,
                                                    expected: list[tuple[int, int]] | None) -> None:
    from prelabel.adapters.base import ReadOptions
    from prelabel.pipeline import read

    for i in range(n_files):
        (tmp_path / f"{i:05d}.xml").write_text(VOC_XML.format(name=f"{i:05d}"))
    calls: list[tuple[str, int, int | None]] = []
    opts = ReadOptions(extra={"voc_workers": workers})
    with_hook = read(tmp_path, fmt="voc", options=opts, progress=lambda s, d, t: calls.append((s, d, t)))
    without = read(tmp_path, fmt="voc", options=opts)
    counts = [(d, t) for s, d, t in calls if s == "reading" and t is not None]
    if expected is not None:
        assert counts == expected
    else:
        assert counts[0] == (0, n_files) and counts[-1] == (n_files, n_files)
        assert [d for d, _ in counts] == sorted(d for d, _ in counts) and len(counts) > 2
    assert with_hook.images.equals(without.images)
    assert with_hook.annotations.equals(without.annotations)
    assert len(with_hook.annotations) == n_files
    # VOC xmin=2 is the 2nd pixel (1-based): x = 2 - 1 = 1, w = 6 - 2 + 1 = 5; y = 3 - 1 = 2, h = 8 - 3 + 1 = 6
    first = with_hook.annotations.iloc[0]
    assert (first["x"], first["y"], first["w"], first["h"]) == (1.0, 2.0, 5.0, 6.0)


@pytest.mark.parametrize("child", ["0", "always"])
def test_convert_one_big_file_counts_annotations(tmp_path: Path, child: str) -> None:
    """A single CVAT file has no files to count: the streamed conversion shows the annotations written so far
    (sample_data/cvat: 7 boxes, one chunk)."""
    r = run("convert", str(SAMPLE / "cvat" / "annotations.xml"), "-o", str(tmp_path / "c.json"),
            env={**PLAIN, "PRELABEL_READ_IN_CHILD": child})
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:4] == ["convert: reading", "convert: streaming 7 annotations", "convert: writing",
                                         "convert: writing 1/1 files"]
