"""The command line. Parsing and printing only: no format or platform logic lives here.

Exit codes: see docs/cli.md, "Exit codes" (the one place they are listed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__

# The command line does no linear algebra: native thread pools (OpenBLAS, OpenMP, MKL, Arrow's jemalloc) stay
# unstarted, so this process keeps one OS thread and may fork its readers' workers (prelabel.workers).
for _var, _value in (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                     ("JE_ARROW_MALLOC_CONF", "background_thread:false")):
    os.environ.setdefault(_var, _value)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _global_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """-q / -v given after the command: the same as before it."""
    if value and param.name:
        ctx.ensure_object(dict)[param.name] = True


class _Group(click.Group):
    """Turns prelabel's errors into one line of what went wrong and one line of what to do; every command also
    takes the global -q and -v after its name."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, click.Group):
            cmd.params += [
                click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_global_flag,
                             help="Print only errors (no progress, no summary); also before the command."),
                click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_global_flag,
                             help="Print every diagnostic, dropped and changed annotation; also before the "
                                  "command.")]
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import PrelabelError, cli_spelling

        with cli_spelling():  # options named in errors, hints and the report are spelled as this command's flags
            try:
                return super().invoke(ctx)
            except PrelabelError as e:
                _fail(e)
            except KeyboardInterrupt:
                click.echo("interrupted", err=True)
                sys.exit(130)


def _fail(e: Any) -> NoReturn:
    click.echo(f"error: {e}", err=True)
    problems = getattr(e, "problems", None)
    if problems and len(problems) > 1:
        for p in problems[1:10]:
            click.echo(f"  {p}", err=True)
        if len(problems) > 10:
            click.echo(f"  ... and {len(problems) - 10} more", err=True)
    if getattr(e, "hint", ""):
        click.echo(f"hint: {e.hint}", err=True)
    sys.exit(int(getattr(e, "exit_code", 1)))


def _tune_allocator() -> None:
    """glibc malloc: a fixed mmap threshold, so that every large block (numpy arrays, joined file contents)
    is returned to the system when freed. By default glibc raises the threshold after the first large free,
    and later large blocks land in the heap, where the memory stays with the process: about 30 MB more peak
    resident memory on a 20,000-image conversion. Only the command line does this (a library leaves the
    process's allocator alone); elsewhere than glibc, nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: 128 KiB, its default starting value, now fixed
    except (OSError, AttributeError, TypeError):
        pass


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="prelabel")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors (no progress, no summary).")
@click.option("-v", "--verbose", is_flag=True, help="Print every diagnostic, dropped and changed annotation.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """prelabel: bring existing labels and model predictions into annotation projects.

    \b
    Progress goes to stderr: a bar on a terminal, else a line every 2 s for long steps (short runs stay
    silent). PRELABEL_PROGRESS=auto|rich|plain|off forces the choice; PRELABEL_PROGRESS_INTERVAL=SECONDS
    sets the least time between two plain lines (0: every step).

    \b
    Examples:
      prelabel convert sample_data/yolo -o out.json
      prelabel convert export.xml --from cvat -o out.json --report report.json
      prelabel validate out.json --images sample_data/images
      prelabel push sample_data/voc --to local:build/demo/project
      prelabel -q convert sample_data/voc -o out.json
      prelabel formats
      eval "$(prelabel completion bash)"
    """
    ctx.ensure_object(dict)
    _tune_allocator()
    ctx.obj["quiet"] = quiet
    ctx.obj["verbose"] = verbose


def _size(text: str) -> int:
    t = text.strip().upper()
    mult = 1
    for suffix, m in (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3), ("K", 1024), ("M", 1024**2),
                      ("G", 1024**3), ("B", 1)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        return int(float(t) * mult)
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (use e.g. 25MB)") from None


def _kpt_shape(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> list[int] | None:
    if value is None:
        return None
    parts = value.replace("x", ",").split(",")
    try:
        shape = [int(v.strip()) for v in parts]
    except ValueError:
        shape = []
    if len(shape) != 2 or shape[0] < 1 or shape[1] not in (2, 3):
        raise click.BadParameter(f"expected K,D (K keypoints, D = 2 or 3 values each), e.g. 17,3; got {value!r}")
    return shape


def _extra_source_options() -> list[Any]:
    """Format options that the adapters read from ``ReadOptions.extra`` (see :func:`_read_options`)."""
    return [
        click.option("--label-config", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="Label Studio: the labeling config XML (category order, keypoint names, image key)."),
        click.option("--data-yaml", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="YOLO: the data.yaml to take names, kpt_shape and kpt_names from (default: found "
                          "beside the labels)."),
        click.option("--kpt-shape", callback=_kpt_shape, metavar="K,D",
                     help="YOLO pose: K keypoints of D values (2: x y, 3: x y visibility), e.g. 17,3."),
    ]


def _reading_options(*, images_help: str) -> list[Any]:
    """The options that reach the adapters (ReadOptions): shared by convert, push, preview and inspect."""
    return [
        click.option("--from", "fmt", metavar="FORMAT", help="Source format (default: detected). See 'prelabel formats'."),
        click.option("--images", type=PATH_OR_URL, help=images_help),
        click.option("--task", type=click.Choice(["detect", "segment", "obb", "pose"]), help="YOLO task."),
        click.option("--voc-origin", type=click.Choice(["0", "1"]), default="1", show_default=True,
                     help="VOC pixel origin: 1 = the spec's 1-based indices, 0 = files from 0-based tools."),
        click.option("--cvat-points", type=click.Choice(["skip", "keypoints"]), default="skip", show_default=True,
                     help="CVAT <points> shapes: report and skip, or keep as keypoints."),
        click.option("--points", type=click.Choice(["skip", "keypoints"]), default="skip", show_default=True,
                     help="LabelMe point, line and linestrip shapes: report and skip, or keep as keypoints."),
        click.option("--frame-pattern", default="frame_{frame:06d}.png", show_default=True,
                     help="File name of a video frame image (CVAT tracks, Label Studio videorectangle), "
                          "formatted with frame=<0-based number>."),
        click.option("--ls-select", type=click.Choice(["auto", "annotations", "predictions", "both"]), default="auto",
                     show_default=True, help="Label Studio: what to read."),
        click.option("--ls-annotator", type=click.Choice(["first", "latest", "all"]), default="all",
                     show_default=True, help="Label Studio: which annotation when a task has several."),
        click.option("--column", "columns", multiple=True, metavar="ROLE=NAME",
                     help="Predictions: column for a role (image, category, x1, y1, x2, y2, x, y, w, h, cx, cy, score, ...)."),
        click.option("--box-format", type=click.Choice(["xyxy", "xywh", "cxcywh"]), help="Predictions: box columns."),
        click.option("--normalized/--absolute", default=None, help="Predictions: box values in [0, 1]."),
        click.option("--names", help="Class names, comma-separated, or a file (one per line / data.yaml), or 'coco': "
                                      "the 80 COCO class names of pretrained detectors."),
        click.option("--images-from", type=click.Path(path_type=Path), help="COCO results: the GT file with the images."),
        *_extra_source_options(),
    ]


def _decorated(f: Any, opts: list[Any]) -> Any:
    """``f`` with the click options ``opts``, listed in --help in their order."""
    for o in reversed(opts):
        f = o(f)
    return f


def convert_options(f: Any) -> Any:
    """The options shared by 'convert' and 'push'."""
    opts = [
        *_reading_options(images_help="Images root: sizes from headers, names checked."),
        click.option("--report", "report_path", type=PATH_OR_URL, help="Write the report JSON here."),
        click.option("--strict", is_flag=True, help="Fail (exit 1) on any warning, drop or change."),
        click.option("--map", "mapping", type=click.Path(path_type=Path), help="Category mapping file (YAML or JSON)."),
        click.option("--schema", type=click.Path(path_type=Path), help="Target category schema file."),
        click.option("--unknown", type=click.Choice(["error", "drop", "keep"]), default="error", show_default=True,
                     help="Categories not in the schema."),
        click.option("--min-score", type=float, help="Drop predictions scored under this."),
        click.option("--min-area", type=float, default=0.0, show_default=True, help="Drop objects smaller than this (px²)."),
        click.option("--min-size", type=float, default=0.0, show_default=True,
                     help="Drop objects whose box has a side (width or height) under this (px)."),
        click.option("--no-clip", is_flag=True, help="Keep geometry as it came (still validated)."),
        click.option("--max-file-size", default="25MB", show_default=True, help="Split larger COCO files into shards."),
        click.option("--rle", type=click.Choice(["compressed", "uncompressed"]), default="compressed", show_default=True),
        click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                     help="fsspec option for URL inputs/outputs, e.g. endpoint_url=http://127.0.0.1:9000 "
                          "(repeatable; see docs/distributed.md)."),
        click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
                     help="Read the files here, or on a Dask cluster."),
        click.option("--scheduler", metavar="ADDRESS",
                     help="--engine dask: the scheduler (tcp://host:8786); default: a local cluster."),
    ]
    return _decorated(f, opts)


def _read_options(kw: dict[str, Any]) -> Any:
    from .adapters.base import ReadOptions
    from .errors import UsageError

    columns: dict[str, str] = {}
    for item in kw.get("columns") or ():
        if "=" not in item:
            raise UsageError(f"--column {item!r}: expected ROLE=NAME", hint="for example --column score=conf")
        role, name = item.split("=", 1)
        columns[role.strip()] = name.strip()
    names = kw.get("names")
    name_list: list[str] | None = None
    if names and names.strip().lower() == "coco" and not Path(names).is_file():
        from .adapters.names import COCO_NAMES

        name_list = list(COCO_NAMES)
    elif names:
        p = Path(names)
        if p.is_file():
            from .adapters import names as names_mod

            name_list = names_mod.read_names(p)
        else:
            name_list = [n.strip() for n in names.split(",")]
    return ReadOptions(
        images=kw.get("images"), task=kw.get("task"), voc_origin=int(kw.get("voc_origin") or 1),
        cvat_points=kw.get("cvat_points") or "skip", points=kw.get("points") or "skip", frame_pattern=kw.get("frame_pattern") or "frame_{frame:06d}.png",
        ls_select=kw.get("ls_select") or "auto", ls_annotator=kw.get("ls_annotator") or "all",
        columns=columns, box_format=kw.get("box_format"), normalized=kw.get("normalized"), names=name_list,
        images_from=kw.get("images_from"), extra=_extra(kw),
    )


def _extra(kw: dict[str, Any]) -> dict[str, Any]:
    """``ReadOptions.extra`` from --label-config (labelstudio), --data-yaml and --kpt-shape (yolo)."""
    extra: dict[str, Any] = {}
    if kw.get("label_config") is not None:
        extra["label_config"] = str(kw["label_config"])
    if kw.get("data_yaml") is not None:
        extra["data_yaml"] = str(kw["data_yaml"])
    if kw.get("kpt_shape") is not None:
        extra["kpt_shape"] = list(kw["kpt_shape"])
    return extra


class _PathOrURL(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """A local path (as a Path) or an fsspec URL such as s3://bucket/key (kept as a string)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from .storage import is_url

        if isinstance(value, Path) or not is_url(value):
            return Path(value)
        return str(value)


PATH_OR_URL = _PathOrURL()


def _storage_options(kw: dict[str, Any]) -> dict[str, Any] | None:
    from .storage import parse_storage_options

    items = kw.get("storage_options") or ()
    return parse_storage_options(items) if items else None


def run_convert(ctx: click.Context, src: tuple[Path, ...], out: Path, kw: dict[str, Any], *,
                temporary: bool = False) -> Any:
    """Run the conversion for 'convert' and 'push' and print the summary (``temporary``: ``out`` is deleted
    after the upload, so its path is not printed)."""
    from .pipeline import convert
    from .progress import Stages, active

    show = active(not ctx.obj.get("quiet"))
    try:
        with Stages("convert", enabled=show) as stages:  # stage lines / a bar on stderr (prelabel.progress)
            result = convert(
                list(src), out, fmt=kw.get("fmt"), options=_read_options(kw), mapping=kw.get("mapping"),
                schema=kw.get("schema"), unknown=kw.get("unknown") or "error", clip=not kw.get("no_clip"),
                min_area=kw.get("min_area") or 0.0, min_size=kw.get("min_size") or 0.0, min_score=kw.get("min_score"),
                max_file_size=_size(kw.get("max_file_size") or "25MB"), rle=kw.get("rle") or "compressed",
                report_path=kw.get("report_path"), strict=bool(kw.get("strict")),
                storage_options=_storage_options(kw), engine=kw.get("engine") or "local",
                scheduler=kw.get("scheduler"), workers=kw.get("engine_workers"),
                progress=stages if show else None, stream=True)
    except Exception as e:
        from .errors import StrictError

        if isinstance(e, StrictError) and not ctx.obj.get("quiet"):
            click.echo("--strict: the report lists problems; no output was written", err=True)
        raise
    if not ctx.obj.get("quiet"):
        rep = result.report
        verbose = bool(ctx.obj.get("verbose"))
        lines = rep.summary_lines(every=verbose)
        if not verbose:
            lines = lines[:25]
        for line in lines:
            click.echo(line, err=True)
        files = ", ".join(str(p) for p in (getattr(result, "urls", None) or result.paths))
        if temporary:
            files = "a temporary file (-o FILE keeps it)"
        click.echo(f"wrote {rep.output.get('images')} image(s), {rep.output.get('annotations')} annotation(s), "
                   f"{rep.output.get('categories')} categories to {files}", err=True)
    n_read, n_written = int(result.report.read or 0), int(result.report.output.get("annotations") or 0)
    if n_read and not n_written:
        from .errors import PrelabelError

        raise PrelabelError(f"read {n_read} annotation(s) and wrote none: every one was dropped "
                            f"({', '.join(f'{k} {v}' for k, v in result.report.dropped_counts().items())})",
                            hint="see the report's drops (-v prints them all); image.missing: point --images at "
                                 "the folder that holds the images")
    return result


@main.command(context_settings=CONTEXT)
@click.argument("src", nargs=-1, required=True, type=PATH_OR_URL)
@click.option("-o", "--output", "out", required=True, type=PATH_OR_URL, help="The COCO file (path or URL) to write.")
@convert_options
@click.option("--workers", "engine_workers", type=click.IntRange(min=1),
              help="Processes to read with: 1 = this one only [default: by the input's size, or the environment "
                   "variable PRELABEL_WORKERS]; --engine dask without --scheduler: local worker processes "
                   "[default: 2].")
@click.pass_context
def convert(ctx: click.Context, /, src: tuple[Path, ...], out: Path, **kw: Any) -> None:
    """Convert SRC (one or more sources, merged) to one COCO file.

    \b
    SRC is what you naturally point at: a YOLO dataset root (data.yaml or classes.txt) or labels folder,
    a VOC root (Annotations/) or a folder of XML files, a CVAT XML file, a Label Studio JSON file,
    a COCO file, or a predictions CSV / Parquet file.

    \b
    Examples:
      prelabel convert sample_data/yolo -o out.json --report report.json
      prelabel convert VOC2012 --voc-origin 1 -o voc.json
      prelabel convert preds.csv --from predictions --images imgs/ --min-score 0.3 -o preds.json
      prelabel convert export.json --from labelstudio --map map.yaml --schema project.xml -o ls.json
    """
    run_convert(ctx, src, out, kw)


@main.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), help="Check every file_name exists with the recorded size.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(file: Path, images: Path | None, as_json: bool) -> None:
    """Validate a COCO file: keys, types, ids, references, geometry, RLE sizes, keypoints.

    \b
    FILE may name a sharded output: when out.json is absent, its shards out-001.json, out-002.json, ...
    are validated, one line each.
    Exit code 0 when valid (every shard), 1 when not.

    \b
    Examples:
      prelabel validate out.json --images sample_data/images
      prelabel validate out.json --json
    """
    import orjson

    from .converters.coco import expand_shards
    from .converters.coco import validate as do_validate
    from .errors import PrelabelError

    paths = list(expand_shards(file))
    if not paths:
        raise PrelabelError(f"no such file: {file} (nor shards {file.stem}-001{file.suffix} ...)",
                            hint="give the -o path that 'prelabel convert' wrote")
    sharded = paths != [file]
    results = [(p, do_validate(p, images_root=images)) for p in paths]
    ok = all(res.ok for _, res in results)
    if as_json:
        if sharded:
            doc: dict[str, Any] = {"valid": ok, "files": [{"file": str(p), **res.to_dict()} for p, res in results]}
        else:
            doc = results[0][1].to_dict()
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        sys.exit(0 if ok else 1)
    for p, res in results:
        where = f"{p}: " if sharded else ""
        c = res.counts
        for w in res.warnings:
            click.echo(f"warning: {where}{w}", err=True)
        for e in res.errors:
            click.echo(f"error: {where}{e}")
        if res.ok:
            click.echo(f"{p}: valid ({c.get('images', 0)} images, {c.get('annotations', 0)} annotations, "
                       f"{c.get('categories', 0)} categories)")
        else:
            click.echo(f"{p}: INVALID, {len(res.errors)} problem(s)")
    sys.exit(0 if ok else 1)


@main.command(context_settings=CONTEXT)
def formats() -> None:
    """List the source formats prelabel reads (the names that --from takes, and their aliases).

    \b
    Examples:
      prelabel formats
      prelabel convert labels/ --from yolo --names cat,dog --images images/ -o out.json
    """
    from . import adapters

    for name in sorted(adapters.FORMATS):
        try:
            desc = adapters.get(name).DESCRIPTION
        except ImportError:
            desc = "(not available)"
        aliases = sorted(a for a, n in adapters.ALIASES.items() if n == name)
        extra = f" (aliases: {', '.join(aliases)})" if aliases else ""
        click.echo(f"{name:<12} {desc}{extra}")


# ------------------------------------------------------------------------------------------------ look
def _source_options(f: Any) -> Any:
    """The reading options of 'preview' and 'inspect' (the same as 'convert''s)."""
    opts = [
        *_reading_options(images_help="Images root: sizes from headers, pixels to draw."),
        click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                     help="fsspec option for URL sources, e.g. endpoint_url=http://127.0.0.1:9000 (repeatable)."),
    ]
    return _decorated(f, opts)


@main.command("preview", context_settings=CONTEXT)
@click.argument("src", nargs=-1, required=True, type=PATH_OR_URL)
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="The PNG to write.")
@click.option("-n", "--n", "n", type=click.IntRange(min=1), default=16, show_default=True,
              help="The most images on the sheet.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which images, when there are more than --n.")
@click.option("--no-clip", is_flag=True, help="Draw the geometry as read, not clipped to the image.")
@click.option("--min-score", type=float, help="Leave out predictions scored under this (as push would).")
@_source_options
@click.pass_context
def preview_cmd(ctx: click.Context, /, src: tuple[Path, ...], out: Path, n: int, seed: int, no_clip: bool,
                min_score: float | None, **kw: Any) -> None:
    """Draw SRC (any source, or a COCO file) on a contact sheet PNG: see the result before uploading.

    \b
    Boxes, polygons, masks and keypoints in per-category colours with a legend, the file name under each
    image; images with problems (clipped, dropped, unmatched) come first, missing images are grey tiles.
    SRC may be a local project, local:DIR: its current pre-annotations, drawn on its images.
    Examples:
      prelabel preview sample_data/coco/instances.json --images sample_data/images -o preview.png
      prelabel preview sample_data/yolo -o preview.png --n 4 --seed 1
      prelabel preview local:build/demo/project -o project.png
    """
    import tempfile

    from . import preview as pv
    from .pipeline import prepare, read
    from .upload.local import LocalProject

    quiet = bool(ctx.obj.get("quiet"))
    storage_options = _storage_options(kw)
    with tempfile.TemporaryDirectory(prefix="prelabel-preview-") as tmp:
        sources: list[Any] = list(src)
        for i, s in enumerate(sources):
            if str(s).startswith("local:"):   # a local project: its pre-annotations as COCO, its images root
                proj = LocalProject(str(s)[len("local:"):])
                sources[i] = proj.export(Path(tmp) / f"project-{i}.json", max_file_size=2**62)[0]
                kw["images"] = kw.get("images") or proj.images_root
        raw = read(sources, fmt=kw.get("fmt"), options=_read_options(kw), storage_options=storage_options)
    ds = prepare(raw, unknown="keep", clip=not no_clip, min_score=min_score)
    path = pv.save(ds, out, images=kw.get("images"), n=n, seed=seed, source=raw, show_progress=not quiet,
                   storage_options=storage_options)
    if not quiet:
        shown = min(n, len(ds.images))
        flagged = len(pv.problem_images(ds, source=raw))
        extra = f", {flagged} image(s) with problems first" if flagged else ""
        click.echo(f"wrote {path}: {shown} of {len(ds.images)} image(s){extra}", err=True)


@main.command("inspect", context_settings=CONTEXT)
@click.argument("src", nargs=-1, required=True, type=PATH_OR_URL)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (keys: see prelabel.inspection.summarize).")
@_source_options
@click.pass_context
def inspect_cmd(ctx: click.Context, /, src: tuple[Path, ...], as_json: bool, **kw: Any) -> None:
    """What is in SRC: images, annotations per category and geometry kind, sizes, scores, problems.

    \b
    The problems are those 'convert' would report (clipping on, unknown categories kept), plus hints when
    the coordinates look written in another convention (normalized boxes where pixels were expected).
    Examples:
      prelabel inspect sample_data/cvat/annotations.xml
      prelabel inspect preds.csv --images imgs/ --json
    """
    import orjson

    from .inspection import print_summary, summarize
    from .pipeline import read
    from .progress import progress

    with progress(2, desc="inspecting", unit="steps", enabled=not ctx.obj.get("quiet")) as bar:
        ds = read(list(src), fmt=kw.get("fmt"), options=_read_options(kw), storage_options=_storage_options(kw))
        bar.advance()
        summary = summarize(ds)
        bar.advance()
    if as_json:
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        print_summary(summary, file=sys.stdout)

# ------------------------------------------------------------------------------------------------ upload
# (upload, push, project, serve: added by the upload work below this line)


def _upload_options(f: Any) -> Any:
    opts = [
        click.option("--to", "target", required=True, metavar="TARGET",
                     help="local:DIR, labellerr:PROJECT_ID, labelstudio:PROJECT_ID, or labelstudio:new with "
                          "--create-project TITLE."),
        click.option("--async", "async_", is_flag=True,
                     help="Submit and print the job id(s) without waiting (run the same command again to poll)."),
        click.option("--timeout", type=float, metavar="S", help="Give up after S seconds overall (exit 1)."),
        click.option("--dry-run", is_flag=True, help="Match file names and categories against the project; apply nothing."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
        click.option("--mode", type=click.Choice(["replace", "append"]), default="replace", show_default=True,
                     help="Uploaded annotations replace an image's pre-annotations (Label Studio: its predictions "
                          "of the same --model-version), or are added (local projects, Label Studio)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Shards uploaded at once (default: 1 for Labellerr, as its SDK does; 2 for the others)."),
        click.option("--journal", type=click.Path(path_type=Path),
                     help="Resume journal (default: FILE.upload-journal.json beside the COCO file)."),
        click.option("--no-journal", is_flag=True, help="Do not keep a resume journal."),
        click.option("--match-case-insensitive", "fold_case", is_flag=True,
                     help="Match file names that differ only in case (Cat.JPG = cat.jpg)."),
        click.option("--match-any-extension", "fold_extension", is_flag=True,
                     help="Match file names that differ only in the image extension (.jpg, .jpeg, .png, ...)."),
        click.option("--strip-prefix", "strip_prefixes", multiple=True, metavar="PREFIX",
                     help="Remove PREFIX from the start of COCO and project file names before matching "
                          "(repeatable), e.g. --strip-prefix data/."),
        click.option("--name-map", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="COCO file name -> project file name: a JSON object, or a CSV of coco_name,project_name."),
        click.option("--create-project", metavar="TITLE",
                     help="Label Studio: create a project titled TITLE (use --to labelstudio:new); its labeling "
                          "config comes from the COCO categories and shapes."),
        click.option("--model-version", metavar="NAME",
                     help="Label Studio: the predictions' model version (default: prelabel)."),
        click.option("--conf-bucket", type=click.Choice(["low", "medium", "high"]), default=None,
                     help="Labellerr: the confidence bucket of the pre-annotations (sent as the SDK's conf_bucket)."),
        click.option("--resend-unconfirmed", is_flag=True,
                     help="Send again the shards an earlier run sent without a usable reply (they may have been "
                          "applied: check the project first). Without it a re-run does not send them."),
        click.option("--allow-empty", is_flag=True,
                     help="Exit 0 even when the file holds annotations and none of them is applied "
                          "(by default that is a failure: exit 1)."),
    ]
    return _decorated(f, opts)


@main.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(path_type=Path))
@_upload_options
@click.option("--images", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Label Studio: upload the images that match no task from DIR (by their COCO file names) "
                   "and create their tasks.")
@click.option("--max-file-size", default=None,
              help="Upload larger files as shards (default: the target's limit: 25 MB; Labellerr under "
                   "25,000,000 bytes).")
@click.option("--strict", "--fail-on-unmatched", "strict", is_flag=True,
              help="Exit 1 when an image matched no project file or a category that carries annotations was "
                   "ignored (also with --dry-run).")
@click.pass_context
def upload(ctx: click.Context, /, file: Path, target: str, async_: bool, timeout: float | None, dry_run: bool,
           as_json: bool, mode: str, workers: int | None, journal: Path | None, no_journal: bool,
           max_file_size: str | None, images: Path | None, allow_empty: bool, resend_unconfirmed: bool,
           strict: bool, **kw: Any) -> None:
    """Upload a COCO file (or its shards FILE-001.json, ...) as pre-annotations.

    \b
    Prints what was applied, the images that matched no project file (with the closest names, how they
    differ and the option that fixes it), and the categories the project ignored. Exit 1 when the upload failed,
    or when the file holds annotations and none of them was applied (--allow-empty accepts that).
    --mode replace: an image's pre-annotations are replaced only by annotations applied to it; --dry-run
    says how many existing pre-annotations the upload would replace.
    A file over --max-file-size is uploaded as shards of whole images (one line on stderr says how many).
    A re-run after a crash, Ctrl-C or a timeout resumes: done shards are skipped, started jobs are polled.
    --async submits and prints the job id(s) with status 'processing'; run the same command again
    (without --async) to wait for them, or 'prelabel project status DIR' for a project served by 'prelabel serve'.
    Local projects and Label Studio apply within the command, so --async prints their final status.

    \b
    File names: exact, then a folder prefix dropped (local_upload/<id>/a.jpg = a.jpg) and Label Studio's
    upload renaming; --match-case-insensitive, --match-any-extension, --strip-prefix and --name-map add rules.

    \b
    Credentials:
      Labellerr: LABELLERR_API_KEY, LABELLERR_API_SECRET, LABELLERR_CLIENT_ID (LABELLERR_BASE_URL).
      Label Studio: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a legacy token or a personal access token).

    \b
    Label Studio: predictions go to the tasks whose image matches; --images DIR uploads the others and makes
    their tasks. --to labelstudio:new --create-project TITLE creates the project (labeling config from the
    COCO categories). --mode replace (default) replaces the tasks' predictions of the same --model-version,
    so uploading the same file twice leaves one prediction per task; --mode append adds another.

    \b
    Examples:
      prelabel upload out.json --to local:build/demo/project
      prelabel upload out.json --to labellerr:my_project_id --dry-run --match-case-insensitive
      prelabel upload out.json --to labelstudio:3 --images imgs/ --model-version yolo-v8
      prelabel upload out.json --to labelstudio:new --create-project "Street scenes" --images imgs/
    """
    if ctx.obj.get("verbose"):
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .cli_upload import run_upload, target_options

    run_upload(file, target=target, async_=async_, timeout=timeout, dry_run=dry_run, mode=mode, workers=workers,
               journal=journal, no_journal=no_journal,
               max_file_size=_size(max_file_size) if max_file_size else None, as_json=as_json,
               quiet=bool(ctx.obj.get("quiet")), target_options=target_options(kw, images=images),
               allow_empty=allow_empty, resend_unconfirmed=resend_unconfirmed, strict=strict)


def _is_labelstudio(target: str) -> bool:
    from .upload.driver import LS_KINDS

    return target.partition(":")[0].strip().lower() in LS_KINDS


@main.command(context_settings=CONTEXT)
@click.argument("src", nargs=-1, required=True, type=PATH_OR_URL)
@click.option("-o", "--output", "out", type=click.Path(path_type=Path),
              help="Keep the converted COCO here (and its resume journal); default: a temporary file.")
@_upload_options
@convert_options
@click.option("--fail-on-unmatched", is_flag=True,
              help="Exit 1 when an image matched no project file or a category that carries annotations was "
                   "ignored (--strict does this too, and also fails the conversion on any drop or change).")
@click.pass_context
def push(ctx: click.Context, /, src: tuple[Path, ...], out: Path | None, target: str, async_: bool,
         timeout: float | None, dry_run: bool, as_json: bool, mode: str, workers: int | None, journal: Path | None,
         no_journal: bool, allow_empty: bool, resend_unconfirmed: bool, fail_on_unmatched: bool, **kw: Any) -> None:
    """Convert SRC, validate and upload it in one command.

    \b
    When the target has a schema (its categories: a local project's, a Labellerr template's questions, a
    Label Studio labeling config's labels) and no --schema is given, the categories are reconciled against it:
    the mapping is printed on stderr, and --unknown decides what happens to the others (default: error,
    naming the closest project categories). Upload options as in 'prelabel upload'; for Label Studio,
    --images is both the images root of the conversion and the folder images are uploaded from.

    \b
    Examples:
      prelabel push sample_data/yolo --to local:build/demo/project
      prelabel push preds.csv --from predictions --images imgs/ --to labellerr:my_project_id --unknown drop
      prelabel push sample_data/yolo --images sample_data/images --to labelstudio:new --create-project demo
    """
    import tempfile

    from .cli_upload import echo_mapping, run_upload, target_options
    from .errors import UsageError
    from .upload.driver import parse_target

    quiet = bool(ctx.obj.get("quiet"))
    # --max-file-size not given: the conversion's default, and the target's own limit for the upload
    upload_limit_default = ctx.get_parameter_source("max_file_size") == click.core.ParameterSource.DEFAULT
    images = kw.get("images") if _is_labelstudio(target) else None
    if images is not None and not isinstance(images, Path):
        raise UsageError(f"--images {images}: Label Studio uploads images from a local folder, not a URL")
    topts = target_options(kw, images=images)
    tgt = parse_target(target, mode=mode, **topts)
    try:
        from_target = False
        if kw.get("schema") is None:
            cats = tgt.categories()
            if cats:
                kw["schema"] = list(cats)
                from_target = True
                if not quiet:
                    click.echo(f"categories: reconciling with the schema of {tgt.describe()}: {', '.join(cats)}",
                               err=True)
        with tempfile.TemporaryDirectory(prefix="prelabel-push-") as tmp:
            dest = out if out is not None else Path(tmp) / "push.coco.json"
            result = run_convert(ctx, src, dest, kw, temporary=out is None)
            mapping = list(getattr(result.report, "mapping", None) or [])
            if from_target and mapping and not quiet:
                click.echo("category mapping (source -> project):", err=True)
                echo_mapping(mapping, str(kw.get("unknown") or "error"))
            run_upload(dest, target=tgt, async_=async_, timeout=timeout, dry_run=dry_run, mode=mode,
                       workers=workers, journal=journal, no_journal=no_journal or out is None,
                       max_file_size=None if upload_limit_default else _size(kw.get("max_file_size") or "25MB"),
                       as_json=as_json, quiet=quiet, allow_empty=allow_empty,
                       resend_unconfirmed=resend_unconfirmed, strict=fail_on_unmatched or bool(kw.get("strict")),
                       temporary=out is None)
    finally:
        tgt.close()


@main.group(cls=_Group, context_settings=CONTEXT)
def project() -> None:
    """A local project on disk: the default upload target (local:DIR).

    \b
    Examples:
      prelabel project init build/demo/project --images sample_data/images --categories cat,dog
      prelabel upload out.json --to local:build/demo/project
      prelabel project status build/demo/project
      prelabel project export build/demo/project -o current.json
    """


@project.command("init", context_settings=CONTEXT)
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--images", required=True, type=click.Path(path_type=Path), help="The project's images folder.")
@click.option("--categories", help="Category names, comma-separated.")
@click.option("--schema", type=click.Path(path_type=Path),
              help="Categories from a schema file (COCO, names .txt / data.yaml, Label Studio XML, ...).")
@click.option("--project-id", help="The id the project answers to over 'prelabel serve' (default: random).")
@click.pass_context
def project_init(ctx: click.Context, dir: Path, images: Path, categories: str | None,  # noqa: A002
                 schema: Path | None, project_id: str | None) -> None:
    """Create a project in DIR for the images under --images (re-run: adds new images and categories).

    \b
    Examples:
      prelabel project init build/demo/project --images sample_data/images --categories cat,dog
      prelabel project init build/demo/project --images sample_data/images --schema sample_data/coco/instances.json
    """
    from .errors import UsageError
    from .upload.local import LocalProject, load_schema_names

    if categories and schema:
        raise UsageError("give --categories or --schema, not both")
    names = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    if schema is not None:
        names = load_schema_names(schema)
    proj, summary = LocalProject.init(dir, images=images, categories=names, project_id=project_id)
    verb = "created" if summary["created"] else "updated"
    if (ctx.obj or {}).get("quiet"):
        return
    click.echo(f"{verb} project {proj.project_id} in {dir}: {summary['assets']} image(s) "
               f"({summary['assets_added']} new), categories: {', '.join(summary['categories']) or '(none yet)'}")
    if summary["unreadable"]:
        click.echo(f"  skipped {len(summary['unreadable'])} file(s) that are not readable images: "
                   f"{', '.join(summary['unreadable'][:5])}", err=True)


@project.command("status", context_settings=CONTEXT)
@click.argument("dir", type=click.Path(path_type=Path))
@click.argument("activity", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def project_status(dir: Path, activity: str | None, as_json: bool) -> None:  # noqa: A002
    """Counts of the project in DIR, and its activities (or one ACTIVITY in full).

    \b
    Examples:
      prelabel project status build/demo/project
      prelabel project status build/demo/project ACTIVITY_ID --json
    """
    import orjson

    from .upload.base import UnmatchedFile
    from .upload.local import LocalProject
    from .upload.match import unmatched_line

    proj = LocalProject(dir)
    if activity:
        act = proj.activity(activity)
        if as_json:
            click.echo(orjson.dumps(act, option=orjson.OPT_INDENT_2).decode())
            return
        c, m = act["counts"], act["metadata"]
        click.echo(f"activity {act['id']}: {act['status']} ({act['mode']}, {act['source']}, {act['created_at']})")
        for k in ("annotations_applied", "annotations_replaced", "files_matched", "files_not_matched",
                  "annotations_skipped_unmatched", "annotations_skipped_category"):
            if k in c:
                click.echo(f"  {k.replace('_', ' ')}: {c[k]}")
        for u in m.get("files_not_matched") or []:
            click.echo(f"    {unmatched_line(UnmatchedFile(**u))}")
        if m.get("questions_ignored"):
            click.echo(f"  categories ignored: {', '.join(m['questions_ignored'])}")
        if m.get("error"):
            click.echo(f"  error: {m['error']}")
        return
    st = proj.status()
    acts = proj.activities()
    if as_json:
        st["recent_activities"] = acts[-20:]
        click.echo(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"project {st['project_id']} in {st['root']} (images: {st['images_root']})")
    click.echo(f"  images: {st['assets']}, with pre-annotations: {st['annotated_assets']}")
    click.echo(f"  pre-annotations: {st['annotations']}")
    for name, n in st["categories"].items():
        click.echo(f"    {name}: {n}")
    click.echo(f"  activities: {', '.join(f'{k} {v}' for k, v in st['activities'].items()) or 'none'}")
    for a in acts[-10:]:
        click.echo(f"    {a['id']}  {a['created_at']}  {a['status']:<10} {a['mode']:<7} {a['source']}  "
                   f"applied {a['counts'].get('annotations_applied', 0)}")


@project.command("export", context_settings=CONTEXT)
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="The COCO file to write.")
@click.option("--max-file-size", default="25MB", show_default=True, help="Split larger files into shards.")
def project_export(dir: Path, out: Path, max_file_size: str) -> None:  # noqa: A002
    """Write the project's current pre-annotations as COCO.

    \b
    Examples:
      prelabel project export build/demo/project -o current.json
      prelabel project export build/demo/project -o current.json --max-file-size 10MB
    """
    from .upload.local import LocalProject

    proj = LocalProject(dir)
    paths = proj.export(out, max_file_size=_size(max_file_size))
    st = proj.status()
    click.echo(f"wrote {st['assets']} image(s), {st['annotations']} annotation(s) to "
               f"{', '.join(str(p) for p in paths)}")


@main.command(context_settings=CONTEXT)
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--port", type=int, default=0, show_default=True, help="TCP port on 127.0.0.1 (0: a free one).")
@click.option("--api-key", envvar="LABELLERR_API_KEY", help="Accepted api key [env LABELLERR_API_KEY].")
@click.option("--api-secret", envvar="LABELLERR_API_SECRET", help="Accepted api secret [env LABELLERR_API_SECRET].")
@click.option("--client-id", envvar="LABELLERR_CLIENT_ID", help="Accepted client id [env LABELLERR_CLIENT_ID].")
@click.option("--faults", metavar="PLAN", help="Inject faults, e.g. 'upload_answers:500,429;status:slow=3;job:fail'.")
@click.option("--metadata", type=click.Choice(["sdk", "docs"]), default="sdk", show_default=True,
              help="Job metadata shape: the SDK's (files_not_updated) or the docs' (matched_files).")
@click.option("--job-delay", type=float, default=0.0, show_default=True, help="Seconds each job stays processing.")
@click.pass_context
def serve(ctx: click.Context, dir: Path, port: int, api_key: str | None, api_secret: str | None,  # noqa: A002
          client_id: str | None, faults: str | None, metadata: str, job_delay: float) -> None:
    """Serve the local project in DIR over the Labellerr HTTP API on 127.0.0.1 (Ctrl-C stops).

    \b
    Clients must send the credentials given here (stored hashed in the project; later runs may omit them).

    \b
    Examples:
      LABELLERR_API_KEY=k LABELLERR_API_SECRET=s LABELLERR_CLIENT_ID=c prelabel serve build/demo/project --port 8765
      LABELLERR_BASE_URL=http://127.0.0.1:8765 prelabel upload out.json --to labellerr:PROJECT_ID
    """
    import logging

    from .errors import UsageError
    from .upload.credentials import Credentials
    from .upload.server import LabellerrServer

    given = [v for v in (api_key, api_secret, client_id) if v]
    if given and len(given) != 3:
        raise UsageError("give all three of --api-key, --api-secret and --client-id (or their env variables)")
    creds = Credentials(api_key or "", api_secret or "", client_id or "") if given else None
    if not ctx.obj.get("quiet"):
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    srv = LabellerrServer(dir, credentials=creds, port=port, faults=faults, metadata=metadata, job_delay=job_delay,
                          access_log=not ctx.obj.get("quiet"))
    pid = srv.project.project_id
    click.echo(f"serving project {pid} ({dir}) at {srv.url}", nl=True)
    click.echo(f"  upload with: LABELLERR_BASE_URL={srv.url} prelabel upload FILE --to labellerr:{pid}")
    sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


# ------------------------------------------------------------------------------------------------ completion
COMPLETION_SHELLS = ("bash", "zsh", "fish")


@main.command("completion", context_settings=CONTEXT)
@click.argument("shell", required=False, type=click.Choice(COMPLETION_SHELLS))
def completion(shell: str | None) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish; default: the one in $SHELL).

    \b
    It is click's: the same script as _PRELABEL_COMPLETE=bash_source prelabel (zsh_source, fish_source).
    Commands, options and their choices complete; file and folder arguments complete as paths.

    \b
    Examples:
      eval "$(prelabel completion bash)"                  # this shell; add the line to ~/.bashrc to keep it
      eval "$(prelabel completion zsh)"                   # likewise, in ~/.zshrc
      prelabel completion fish > ~/.config/fish/completions/prelabel.fish
      prelabel completion bash > ~/.prelabel-complete.bash && echo '. ~/.prelabel-complete.bash' >> ~/.bashrc
    """
    import os

    from click.shell_completion import get_completion_class

    from .errors import UsageError

    if shell is None:
        shell = Path(os.environ.get("SHELL") or "bash").name
        if shell not in COMPLETION_SHELLS:
            raise UsageError(f"no completion for the shell {shell!r} (from $SHELL)",
                             hint=f"name one: prelabel completion {'|'.join(COMPLETION_SHELLS)}")
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise UsageError(f"click has no completion for {shell}")
    click.echo(cls(main, {}, "prelabel", "_PRELABEL_COMPLETE").source())
