"""What the command line prints for 'upload' and 'push', and how it runs them (imported on first use by
``cli.py``, so ``prelabel --help`` does not load the upload targets).

Example:
    >>> from prelabel.upload.base import UploadResult
    >>> r = UploadResult(status="completed", target="local:p", annotations_applied=0, annotations_in_file=3,
    ...                  categories_ignored=["bus", "car"], categories_ignored_annotations={"car": 3},
    ...                  category_hints={"car": "Car"})
    >>> for line in ignored_lines(r):
    ...     print(line)
      categories ignored (not in the project's schema; their annotations are not applied): car (3 annotations)
        car: differs only in case from the project's `Car`: use `push` (it reconciles), or `convert --map` before uploading
      1 more category not in the project's schema, with no annotations (nothing lost)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from .converters.reconcile import match_rule
from .progress import active, progress
from .upload.driver import UploadProgress
from .upload.driver import upload as do_upload
from .upload.match import MatchRules, load_name_map, unmatched_line

__all__ = ["echo_mapping", "ignored_lines", "print_upload", "run_upload", "strict_problems", "target_options"]

RULE_WORDS = {"exact": "by exact name", "prefix": "by dropping a folder prefix",
              "sanitized": "after the platform's upload renaming", "case": "ignoring case",
              "extension": "ignoring the extension", "name-map": "by the name map",
              "strip-prefix": "after --strip-prefix", "uploaded": "uploaded as new tasks"}


def _plural(n: int, word: str) -> str:
    """``n`` and the word, plural when ``n`` is not 1.

    >>> _plural(1, "category"), _plural(2, "category"), _plural(2, "image")
    ('1 category', '2 categories', '2 images')
    """
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def _unmatched_count(result: Any) -> int:
    """How many images matched no project file: the service's count, else the names listed."""
    n = result.files_not_matched_count
    return len(result.files_not_matched) if n is None else int(n)


def ignored_lines(result: Any) -> list[str]:
    """The "categories ignored" lines: the categories that carry annotations by name, each with the project's
    category it differs from only in case (or spaces, separators) and the fix; the others as one count."""
    ignored = list(result.categories_ignored)
    if not ignored:
        return []
    counts: dict[str, int] = dict(getattr(result, "categories_ignored_annotations", None) or {})
    hints: dict[str, str] = dict(getattr(result, "category_hints", None) or {})
    lines = []
    carrying = [c for c in ignored if counts.get(c)]
    if carrying:
        lines.append("  categories ignored (not in the project's schema; their annotations are not applied): "
                     + ", ".join(f"{c} ({_plural(counts[c], 'annotation')})" for c in carrying))
        for c in carrying:
            if c in hints:
                rule = match_rule(c, hints[c])
                how = "case" if rule == "case" else rule
                lines.append(f"    {c}: differs only in {how} from the project's `{hints[c]}`: use `push` (it reconciles), "
                             "or `convert --map` before uploading")
    empty = len(ignored) - len(carrying)
    if empty:
        lines.append(f"  {_plural(empty, 'more category' if carrying else 'category')} not in the project's "
                     "schema, with no annotations (nothing lost)")
    return lines


def strict_problems(result: Any) -> list[str]:
    """What ``--strict`` fails an upload for: images that matched no project file, categories ignored that
    carry annotations. Empty: nothing to fail for.

    >>> from prelabel.upload.base import UploadResult
    >>> strict_problems(UploadResult(status="completed", target="t", files_not_matched_count=2,
    ...                              categories_ignored_annotations={"car": 3}))
    ['2 image(s) matched no project file', '1 category ignored with 3 annotation(s): car']
    """
    out = []
    n = _unmatched_count(result)
    if n:
        out.append(f"{n} image(s) matched no project file")
    counts = dict(getattr(result, "categories_ignored_annotations", None) or {})
    if counts:
        out.append(f"{_plural(len(counts), 'category')} ignored with {sum(counts.values())} annotation(s): "
                   f"{', '.join(counts)}")
    return out


def print_upload(result: Any, *, as_json: bool, quiet: bool = False, temporary: bool = False) -> None:
    """The result on stdout (``--json``: as JSON); with ``quiet``, only a failed upload's errors, on stderr.
    ``temporary``: the uploaded file is deleted afterwards (push without -o): its path is not printed."""
    if as_json:
        doc = result.to_dict()
        if temporary:
            for s in doc["shards"]:
                s["path"] = "(a temporary file: -o FILE keeps it)"
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    if quiet:
        if result.status == "failed":
            for e in result.errors[:10]:
                click.echo(f"error: {e}", err=True)
        return
    n_shards = len(result.shards)
    resumed = sum(1 for s in result.shards if s.resumed)
    what = "dry run against" if result.dry_run else "upload to"
    act = f" (activity {result.activity_id})" if result.activity_id else ""
    click.echo(f"{what} {result.target}: {result.status}{act}")
    if result.status == "processing":
        click.echo("  the server is still processing: run the same command again to wait for the result "
                   "(the journal makes it poll these jobs, not send them again)")
        return
    if result.status == "failed" and result.shards and not any(s.status == "completed" for s in result.shards):
        for e in result.errors[:10]:   # no shard completed: there are no counts to show, only what went wrong
            click.echo(f"  error: {e}")
        return
    verb = "would be applied" if result.dry_run else "applied"
    shards = f" in {n_shards} shards" if n_shards > 1 else ""
    res_txt = f", {resumed} shard(s) done by an earlier run" if resumed else ""
    source = ""
    if getattr(result, "applied_source", "service") == "estimate" and not result.dry_run:
        source = " (prelabel's estimate: the service reported no count)"
    click.echo(f"  annotations {verb}: {result.annotations_applied}{source}{shards}{res_txt}")
    if result.annotations_replaced is not None and (result.dry_run or result.annotations_replaced):
        n, m = result.annotations_replaced, result.images_replaced or 0
        what = f"{_plural(n, 'existing pre-annotation')} on {_plural(m, 'image')}"
        click.echo(f"  {'would replace' if result.dry_run else 'replaced'} {what}")
    how = result.matched_by or {}
    detail = (", ".join(f"{n} {RULE_WORDS.get(k, k)}" for k, n in sorted(how.items()) if n)
              if set(how) - {"exact"} else "")
    click.echo(f"  images matched: {result.files_matched}" + (f" ({detail})" if detail else ""))
    n_unmatched = _unmatched_count(result)
    if n_unmatched and not result.files_not_matched:
        click.echo(f"  images not matched: {n_unmatched} (the service gave the count, not the names)")
    if result.files_not_matched:
        click.echo(f"  images not matched: {n_unmatched} (their annotations are not applied)")
        for u in result.files_not_matched[:20]:
            click.echo(f"    {unmatched_line(u)}")
        if len(result.files_not_matched) > 20:
            click.echo(f"    ... and {len(result.files_not_matched) - 20} more (--json lists them all)")
    for line in ignored_lines(result):
        click.echo(line)
    tags = dict(getattr(result, "image_tags_not_kept", None) or {})
    if tags:
        keep = "would not keep" if result.dry_run else "did not keep"
        click.echo(f"  image tags the target {keep} (it takes object annotations only): "
                   + ", ".join(f"{t} ({_plural(n, 'image')})" for t, n in sorted(tags.items())))
    for e in result.errors[:10]:
        click.echo(f"  error: {e}")


def target_options(kw: dict[str, Any], *, images: Any = None) -> dict[str, Any]:
    """The upload call's target options from the CLI's: match rules and the Label Studio options."""
    name_map = kw.get("name_map")
    rules = MatchRules(fold_case=bool(kw.get("fold_case")), fold_extension=bool(kw.get("fold_extension")),
                       strip_prefixes=tuple(kw.get("strip_prefixes") or ()),
                       name_map=load_name_map(name_map) if name_map is not None else {})
    return {"match": rules if rules.active else None, "images": images, "create_project": kw.get("create_project"),
            "model_version": kw.get("model_version"), "conf_bucket": kw.get("conf_bucket")}


def run_upload(coco: Any, *, target: Any, async_: bool, timeout: float | None, dry_run: bool, mode: str,
               workers: int | None, journal: Path | None, no_journal: bool, max_file_size: int | None,
               as_json: bool, quiet: bool = False, target_options: dict[str, Any] | None = None,
               allow_empty: bool = False, resend_unconfirmed: bool = False, strict: bool = False,
               temporary: bool = False) -> None:
    """Upload, print the result, and exit 1 when it failed (or, with ``strict``, left images or annotated
    categories out)."""
    show = active(not quiet)
    # stderr only: "upload: 1/3 shards, 12 annotations applied, ETA 0:00:02" (a bar on a terminal)
    with progress(None, desc="upload:", unit="shards", enabled=show) as bar:
        notify = None if quiet else (bar.echo if show else (lambda msg: click.echo(msg, err=True)))

        def on_progress(p: UploadProgress) -> None:
            verb = "would be applied" if p.dry_run else "applied"
            bar.update(completed=p.shards_done, total=p.shards_total, eta=p.eta,
                       note=f"{_plural(p.annotations_applied, 'annotation')} {verb}")

        result = do_upload(coco, target, timeout=timeout, dry_run=dry_run, mode=mode, workers=workers,
                           journal=False if no_journal else journal, max_file_size=max_file_size,
                           wait=not async_, notify=notify, progress=on_progress if show else None,
                           allow_empty=allow_empty, resend_unconfirmed=resend_unconfirmed,
                           **(target_options or {}))
    print_upload(result, as_json=as_json, quiet=quiet, temporary=temporary)
    problems = strict_problems(result) if strict and result.status in ("completed", "failed") else []
    if problems:
        click.echo(f"error: --strict: {'; '.join(problems)}", err=True)
    if result.status == "failed" or problems:
        sys.exit(1)


def echo_mapping(mapping: list[dict[str, Any]], unknown: str) -> None:
    """The category mapping of a push (report.mapping), one line per source category that carries annotations
    (the others as one count), on stderr. A name matched after normalization says which rule: ``case``, ...
    """
    unused = 0
    for m in mapping:
        n = int(m.get("annotations") or 0)
        count = _plural(n, "annotation")
        how = str(m.get("how"))
        if m.get("target") is None:
            if how == "unused":
                unused += 1
                continue
            why = {"dropped": "mapped to null by --map",
                   "unknown-dropped": f"not in the schema: dropped (--unknown {unknown})"}.get(how, how)
            click.echo(f"  {m['source']}: {why}: {count}", err=True)
        else:
            if how == "normalized":
                how = match_rule(str(m["source"]), str(m["target"]))
            extra = " (added: --unknown keep)" if how == "unknown-kept" else ""
            click.echo(f"  {m['source']} -> {m['target']} (id {m['id']}, {how}){extra}: {count}", err=True)
    if unused:
        click.echo(f"  {_plural(unused, 'more source category')} not in the schema, with no annotations",
                   err=True)
