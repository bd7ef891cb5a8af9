"""The command line. Parsing and printing only: no format or platform logic lives here.

Exit codes: 0 success; 1 invalid data, a failed upload or a --strict failure; 2 usage errors
(unknown options, an ambiguous source, contradictory options).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _Group(click.Group):
    """Turns prelabel's errors into one line of what went wrong and one line of what to do."""

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import PrelabelError

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


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="prelabel")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.option("-v", "--verbose", is_flag=True, help="Print every diagnostic.")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """prelabel: bring existing labels and model predictions into annotation projects.

    \b
    Examples:
      prelabel convert sample_data/yolo -o out.json
      prelabel convert export.xml --from cvat -o out.json --report report.json
      prelabel validate out.json --images sample_data/images
      prelabel formats
    """
    ctx.ensure_object(dict)
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


def convert_options(f: Any) -> Any:
    """The options shared by 'convert' and 'push'."""
    opts = [
        click.option("--from", "fmt", metavar="FORMAT", help="Source format (default: detected). See 'prelabel formats'."),
        click.option("--images", type=click.Path(path_type=Path), help="Images root: sizes from headers, names checked."),
        click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write the report JSON here."),
        click.option("--strict", is_flag=True, help="Fail (exit 1) on any warning, drop or change."),
        click.option("--task", type=click.Choice(["detect", "segment", "obb", "pose"]), help="YOLO task."),
        click.option("--voc-origin", type=click.Choice(["0", "1"]), default="1", show_default=True,
                     help="VOC pixel origin: 1 = the spec's 1-based indices, 0 = files from 0-based tools."),
        click.option("--cvat-points", type=click.Choice(["skip", "keypoints"]), default="skip", show_default=True,
                     help="CVAT <points> shapes: report and skip, or keep as keypoints."),
        click.option("--frame-pattern", default="frame_{frame:06d}.png", show_default=True,
                     help="File name of a CVAT video frame image."),
        click.option("--ls-select", type=click.Choice(["auto", "annotations", "predictions", "both"]), default="auto",
                     show_default=True, help="Label Studio: what to read."),
        click.option("--ls-annotator", type=click.Choice(["first", "latest", "all"]), default="all",
                     show_default=True, help="Label Studio: which annotation when a task has several."),
        click.option("--column", "columns", multiple=True, metavar="ROLE=NAME",
                     help="Predictions: column for a role (image, category, x1, y1, x2, y2, x, y, w, h, cx, cy, score, ...)."),
        click.option("--box-format", type=click.Choice(["xyxy", "xywh", "cxcywh"]), help="Predictions: box columns."),
        click.option("--normalized/--absolute", default=None, help="Predictions: box values in [0, 1]."),
        click.option("--names", help="Class names, comma-separated, or a file (one per line / data.yaml)."),
        click.option("--images-from", type=click.Path(path_type=Path), help="COCO results: the GT file with the images."),
        click.option("--map", "mapping", type=click.Path(path_type=Path), help="Category mapping file (YAML or JSON)."),
        click.option("--schema", type=click.Path(path_type=Path), help="Target category schema file."),
        click.option("--unknown", type=click.Choice(["error", "drop", "keep"]), default="error", show_default=True,
                     help="Categories not in the schema."),
        click.option("--min-score", type=float, help="Drop predictions scored under this."),
        click.option("--min-area", type=float, default=0.0, show_default=True, help="Drop objects smaller than this (px²)."),
        click.option("--no-clip", is_flag=True, help="Keep geometry as it came (still validated)."),
        click.option("--max-file-size", default="25MB", show_default=True, help="Split larger COCO files into shards."),
        click.option("--rle", type=click.Choice(["compressed", "uncompressed"]), default="compressed", show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


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
    if names:
        p = Path(names)
        if p.is_file():
            from .adapters import names as names_mod

            name_list = names_mod.read_names(p)
        else:
            name_list = [n.strip() for n in names.split(",")]
    return ReadOptions(
        images=kw.get("images"), task=kw.get("task"), voc_origin=int(kw.get("voc_origin") or 1),
        cvat_points=kw.get("cvat_points") or "skip", frame_pattern=kw.get("frame_pattern") or "frame_{frame:06d}.png",
        ls_select=kw.get("ls_select") or "auto", ls_annotator=kw.get("ls_annotator") or "all",
        columns=columns, box_format=kw.get("box_format"), normalized=kw.get("normalized"), names=name_list,
        images_from=kw.get("images_from"),
    )


def run_convert(ctx: click.Context, src: tuple[Path, ...], out: Path, kw: dict[str, Any]) -> Any:
    """Run the conversion for 'convert' and 'push' and print the summary."""
    from .pipeline import convert

    try:
        result = convert(
            list(src), out, fmt=kw.get("fmt"), options=_read_options(kw), mapping=kw.get("mapping"),
            schema=kw.get("schema"), unknown=kw.get("unknown") or "error", clip=not kw.get("no_clip"),
            min_area=kw.get("min_area") or 0.0, min_score=kw.get("min_score"),
            max_file_size=_size(kw.get("max_file_size") or "25MB"), rle=kw.get("rle") or "compressed",
            report_path=kw.get("report_path"), strict=bool(kw.get("strict")))
    except Exception as e:
        from .errors import StrictError

        if isinstance(e, StrictError) and not ctx.obj.get("quiet"):
            click.echo("--strict: the report lists problems; no output was written", err=True)
        raise
    if not ctx.obj.get("quiet"):
        rep = result.report
        lines = rep.summary_lines()
        if not ctx.obj.get("verbose"):
            lines = lines[:25]
        for line in lines:
            click.echo(line, err=True)
        files = ", ".join(str(p) for p in result.paths)
        click.echo(f"wrote {rep.output.get('images')} image(s), {rep.output.get('annotations')} annotation(s), "
                   f"{rep.output.get('categories')} categories to {files}", err=True)
    return result


@main.command(context_settings=CONTEXT)
@click.argument("src", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="The COCO file to write.")
@convert_options
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
    Exit code 0 when valid, 1 when not.
    Example:
      prelabel validate out.json --images sample_data/images
    """
    import orjson

    from .converters.coco import validate as do_validate

    res = do_validate(file, images_root=images)
    if as_json:
        click.echo(orjson.dumps(res.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        c = res.counts
        for w in res.warnings:
            click.echo(f"warning: {w}", err=True)
        for e in res.errors:
            click.echo(f"error: {e}")
        if res.ok:
            click.echo(f"{file}: valid ({c.get('images', 0)} images, {c.get('annotations', 0)} annotations, "
                       f"{c.get('categories', 0)} categories)")
        else:
            click.echo(f"{file}: INVALID, {len(res.errors)} problem(s)")
    sys.exit(0 if res.ok else 1)


@main.command(context_settings=CONTEXT)
def formats() -> None:
    """List the source formats prelabel reads."""
    from . import adapters

    for name in sorted(adapters.FORMATS):
        try:
            desc = adapters.get(name).DESCRIPTION
        except ImportError:
            desc = "(not available)"
        aliases = sorted(a for a, n in adapters.ALIASES.items() if n == name)
        extra = f" (aliases: {', '.join(aliases)})" if aliases else ""
        click.echo(f"{name:<12} {desc}{extra}")


# ------------------------------------------------------------------------------------------------ upload
# (upload, push, project, serve: added by the upload work below this line)
