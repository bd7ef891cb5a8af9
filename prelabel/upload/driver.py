"""The upload driver: one call for every target, blocking or as a Future, sharded, resumable.

``upload(coco, target)`` takes a COCO file path (or the first name of its shards ``out-001.json``, ...), a COCO
dict or a Dataset, and a Target or a spec string (``local:DIR``, ``labellerr:PROJECT_ID``,
``labelstudio:PROJECT_ID``). It validates every document (invalid input is refused with a ValidationError before
anything is sent), splits files over ``max_file_size`` into shards of whole images, uploads the shards with at
most ``workers`` at a time, and merges their results into one :class:`~prelabel.upload.base.UploadResult`.

The resume journal (default: ``<file>.upload-journal.json`` beside a COCO file; none for a dict or Dataset unless
``journal=PATH``) is keyed by the target and each shard's content hash. The job id of a shard is recorded as soon
as the server returns it, and the shard is marked done only when the server reports the job completed. A re-run
after a crash, Ctrl-C, a timeout or a failure skips the done shards, polls the jobs that were started instead of
sending their files again, and sends the rest: nothing is applied twice. (One window remains: a process killed
between the server's reply to a send and the journal write that follows it, a few milliseconds, sends that shard
again on the re-run; with ``mode="replace"`` the project ends the same.) Once every shard completed, the
target's entries are dropped (the file is deleted when empty), so running the same upload again sends it again.
A target that cannot be resumed (a Label Studio project created by the run) keeps no journal.

File names are matched by each target (:mod:`prelabel.upload.match`); ``match=MatchRules(...)`` adds the
optional rules (case, extension, prefixes to strip, a name map) for every target. A file over
``max_file_size`` is announced through ``notify`` (``build/out.json is 61.2 MB, over the 25 MB limit:
uploading it as 3 shards of whole images``).

``progress`` (optional) is called with an :class:`UploadProgress` once the shards are known (shards done by an
earlier run count as done) and after each shard finishes: shards done of the total, the annotations applied so
far, and an ETA in seconds (the mean wall time per shard finished by this run, times the shards left). The CLI
shows it as a rich bar on a terminal, else as plain lines (``upload: 1/3 shards, 12 annotations applied, ETA
0:00:02``). A failing callback is logged, never fails the upload.

``_async=True`` returns an :class:`UploadFuture` at once; the work runs on a background thread. ``timeout`` is
overall (seconds from the call): when it passes, the upload raises :class:`~prelabel.errors.UploadTimeoutError`
(the jobs already started keep running on the server; their ids stay in the journal). Cancellation:
``future.cancel()`` before the work started cancels it outright (returns True). Once it runs, ``cancel()``
returns False (the Future contract) but stops the upload at the next safe point: no further shard is sent,
retries and polling stop; jobs the server already accepted cannot be recalled and may still complete there (a
re-run polls them). ``future.result()`` then raises :class:`~prelabel.errors.UploadCancelledError`, which is a
``concurrent.futures.CancelledError``.

Example:
    >>> import tempfile, pathlib
    >>> from prelabel.upload.local import LocalProject
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> (tmp / "imgs").mkdir()
    >>> project, _ = LocalProject.init(tmp / "proj", images=tmp / "imgs", categories=["cat"])
    >>> coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
    ...         "categories": [{"id": 1, "name": "cat"}], "annotations": []}
    >>> r = upload(coco, f"local:{tmp / 'proj'}", dry_run=True)
    >>> r.status, r.dry_run, [u.name for u in r.files_not_matched]
    ('completed', True, ['a.jpg'])
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import orjson

from ..converters import coco as coco_io
from ..converters.reconcile import normalize_name
from ..errors import (
    AuthError,
    JobFailedError,
    NotFoundError,
    ShardTooLargeError,
    UnconfirmedUploadError,
    UploadCancelledError,
    UploadError,
    UploadTimeoutError,
    UsageError,
    ValidationError,
    by_face,
    option,
)
from ..memory import release_memory
from ..model import Dataset
from . import shardjson
from .base import ShardResult, Target, UnmatchedFile, UploadResult
from .journal import Journal, default_journal_path, shard_hash
from .labellerr import LabellerrTarget, check_conf_bucket
from .labelstudio import LabelStudioTarget
from .local import LocalTarget
from .match import MatchRules

__all__ = ["TARGET_FORMS", "UploadFuture", "UploadProgress", "parse_target", "run_in_thread", "upload"]

log = logging.getLogger("prelabel.upload")
T = TypeVar("T")

TARGET_FORMS = "local:DIR, labellerr:PROJECT_ID or labelstudio:PROJECT_ID"


class UploadFuture(cf.Future[UploadResult]):
    """A Future of an UploadResult whose ``cancel()`` also stops a running upload at its next safe point."""

    def __init__(self, cancel_event: threading.Event) -> None:
        super().__init__()
        self.cancel_event = cancel_event

    def cancel(self) -> bool:
        self.cancel_event.set()
        return bool(super().cancel())


LS_KINDS = ("labelstudio", "label-studio", "ls")


def parse_target(spec: str | Target, *, mode: str = "replace", match: MatchRules | None = None,
                 images: str | Path | None = None, create_project: str | None = None,
                 model_version: str | None = None, conf_bucket: str | None = None) -> Target:
    """A Target from ``local:DIR``, ``labellerr:PROJECT_ID`` or ``labelstudio:PROJECT_ID`` (or the Target itself).

    ``mode`` (``replace`` / ``append``) is given to the local project and Label Studio (and to a Target object
    that has a ``mode`` attribute); Labellerr applies its own semantics and refuses ``append``. ``match``: the
    optional file-name rules, for every target. Label Studio only: ``images`` (a folder: images that match no
    task are uploaded and get a task), ``create_project`` (the title of a project to create: the target is then
    ``labelstudio:new``) and ``model_version`` (written on each prediction; ``replace`` replaces that version's).
    Labellerr only: ``conf_bucket`` (``low``, ``medium`` or ``high``).
    """
    if conf_bucket is not None:
        check_conf_bucket(conf_bucket)
        if not isinstance(spec, str):
            if not hasattr(spec, "conf_bucket"):
                raise UsageError(f"conf_bucket is only for labellerr: targets, not {spec.describe()}")
            spec.conf_bucket = conf_bucket  # type: ignore[attr-defined]
        elif spec.partition(":")[0].strip().lower() != "labellerr":
            raise UsageError(f"--conf-bucket is only for labellerr: targets, not {spec}",
                             hint="drop the option, or upload to labellerr:PROJECT_ID")
    ls_opts = {k: v for k, v in (("images", images), ("create_project", create_project),
                                 ("model_version", model_version)) if v is not None}
    if not isinstance(spec, str):
        if mode != "replace":
            if not hasattr(spec, "mode"):
                raise UsageError(f"mode={mode!r} is not supported by {spec.describe()}")
            spec.mode = mode  # type: ignore[attr-defined]
        if match is not None and match.active:
            if not hasattr(spec, "match"):
                raise UsageError(f"file-name matching options are not supported by {spec.describe()}")
            spec.match = match  # type: ignore[attr-defined]
        if ls_opts:
            raise UsageError(f"{', '.join(ls_opts)}: give them to the target object {spec.describe()} itself")
        return spec
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not rest.strip():
        if kind in LS_KINDS and create_project is not None:
            rest = "new"
        else:
            raise UsageError(f"not an upload target: {spec!r}", hint=f"use {TARGET_FORMS}")
    rest = rest.strip()
    if ls_opts and kind not in LS_KINDS:
        flags = ", ".join("--" + k.replace("_", "-") for k in ls_opts)
        raise UsageError(f"{flags}: only for labelstudio: targets, not {kind}:",
                         hint="drop the option, or upload to labelstudio:PROJECT_ID")
    if kind == "local":
        return LocalTarget(rest, mode=mode, match=match)
    if kind == "labellerr":
        if mode != "replace":
            raise UsageError("--mode append is not supported by labellerr: targets",
                             hint="Labellerr applies its own rules to re-uploaded pre-annotations")
        return LabellerrTarget.from_env(rest, match=match, conf_bucket=conf_bucket)
    if kind in LS_KINDS:
        new = rest.lower() == "new"
        if new and create_project is None:
            raise UsageError(f"{spec} makes a new Label Studio project: give its title",
                             hint=f"add {option('create_project', 'TITLE')}")
        if create_project is not None and not new:
            raise UsageError(f"--create-project makes a new project, but {spec} names project {rest}",
                             hint="use --to labelstudio:new --create-project TITLE, or drop --create-project")
        if create_project is not None and not create_project.strip():
            raise UsageError("--create-project needs a project title")
        if images is not None and not Path(images).is_dir():
            raise UsageError(f"--images {images}: not a folder",
                             hint="give the folder that holds the images under their COCO file names")
        opts: dict[str, Any] = {"mode": mode, "match": match, "images": images}
        if new:
            opts.update(create_project=True, title=create_project.strip() if create_project else None)
        if model_version is not None:
            opts["model_version"] = model_version
        target: Target = LabelStudioTarget.from_env(None if new else rest, **opts)
        return target
    raise UsageError(f"unknown upload target {kind!r} in {spec!r}", hint=f"use {TARGET_FORMS}")


# ---------------------------------------------------------------------------------------------- shards
@dataclass
class _Shard:
    """A shard on disk: only its path, its size and its content hash stay in memory; the document is parsed
    again when the shard is sent, so one shard's document is in memory at a time."""

    index: int
    path: Path
    digest: str
    size: int

    def load(self) -> dict[str, Any]:
        doc = shardjson.loads(self.path.read_bytes())
        if not isinstance(doc, dict):  # checked when the shard was made; the file changed since
            raise ValidationError(f"{self.path}: not a COCO file (expected a JSON object)")
        return doc


def _source_name(coco: Any) -> str:
    return Path(coco).name if isinstance(coco, (str, Path)) else "upload.json"


def human_size(n: int) -> str:
    """``n`` bytes in the units of ``--max-file-size`` (1 MB = 1024 KB = 1024**2 bytes), one decimal at most.

    >>> human_size(64_172_851), human_size(25 * 1024**2), human_size(2048), human_size(900)
    ('61.2 MB', '25 MB', '2 KB', '900 bytes')
    """
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            v = round(n / size, 1)
            return f"{v:g} {unit}"
    return f"{n} bytes"


@dataclass
class _Input:
    """One document to upload: its file (None for a dict or a Dataset), the parsed document, its size and
    content hash, and its bytes only when they are not in a file already."""

    src: Path | None
    doc: dict[str, Any]
    size: int
    digest: str
    data: bytes | None


def _in_memory(doc: dict[str, Any], data: bytes) -> _Input:
    return _Input(None, doc, len(data), shard_hash(data), data)


def _inputs(coco: str | Path | Mapping[str, Any] | Dataset) -> Iterator[_Input]:
    """The documents to upload, one at a time. A file's bytes are let go once parsed: the document is
    validated (and split) without them."""
    if isinstance(coco, Dataset):
        doc = coco_io.to_coco(coco)
        yield _in_memory(doc, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
        return
    if isinstance(coco, Mapping):
        doc = dict(coco)
        try:
            data = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as e:
            raise UsageError(f"the COCO dict cannot be serialized: {e}") from None
        yield _in_memory(doc, data)
        return
    paths = coco_io.expand_shards(coco)
    if not paths:
        raise UsageError(f"{coco}: no such file (nor shards {Path(coco).stem}-001{Path(coco).suffix}, ...)")
    for p in paths:
        yield _read_input(p)   # not named here: the caller's del frees it before the next file is read


def _read_input(p: Path) -> _Input:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {p}: {e.strerror or e}") from None
    size, digest = len(data), shard_hash(data)
    try:
        doc = shardjson.loads(data)
    except orjson.JSONDecodeError:
        del data
        doc = coco_io.load(p)   # raises a ReadError naming the file and line
    if not isinstance(doc, dict):
        raise ValidationError(f"{p}: not a COCO file (expected a JSON object)")
    return _Input(p, doc, size, digest, None)


def _prepare(coco: str | Path | Mapping[str, Any] | Dataset, *, max_file_size: int,
             workdir: Path, notify: Callable[[str], None] | None = None) -> list[_Shard]:
    """Validate the input and split it into shards on disk (each a complete COCO under the limit), one input
    document in memory at a time. Every document is validated before any shard is sent."""
    name = _source_name(coco)
    stem, suffix = Path(name).stem, Path(name).suffix or ".json"
    out: list[_Shard] = []
    for item in _inputs(coco):
        src = item.src
        coco_io.fail_if_invalid(coco_io.validate(item.doc), str(src) if src else "the COCO to upload")
        if item.size <= max_file_size:
            p = src if src is not None else workdir / name
            if item.data is not None:
                coco_io.write_json_atomic(p, item.data)
            out.append(_Shard(len(out) + 1, p, item.digest, item.size))
            del item   # one input document in memory at a time
            release_memory()
            continue
        parts = coco_io.split_shards(item.doc, max_file_size=max_file_size)
        msg = (f"{src if src is not None else 'the COCO to upload'} is {human_size(item.size)}, over the "
               f"{human_size(max_file_size)} limit: uploading it as {len(parts)} shard{'s' if len(parts) != 1 else ''}"
               " of whole images")
        log.info("%s", msg)
        if notify is not None:
            notify(msg)
        del item
        for part in parts:
            pdata = orjson.dumps(part, option=orjson.OPT_SERIALIZE_NUMPY)
            sp = workdir / f"{(src.stem if src else stem)}-{len(out) + 1:03d}{suffix}"
            coco_io.write_json_atomic(sp, pdata)
            out.append(_Shard(len(out) + 1, sp, shard_hash(pdata), len(pdata)))
        del parts
        release_memory()
    return out


def _shard_from_journal(entry: Mapping[str, Any], shard: _Shard) -> ShardResult:
    raw = dict(entry.get("result") or {})
    names = {f.name for f in fields(ShardResult)}
    kw = {k: v for k, v in raw.items() if k in names}
    kw["files_not_matched"] = [UnmatchedFile(**u) for u in kw.get("files_not_matched") or []]
    kw.update(index=shard.index, path=str(shard.path), resumed=True)
    return ShardResult(**kw)


# ---------------------------------------------------------------------------------------------- progress
@dataclass(frozen=True)
class UploadProgress:
    """Where an upload stands, given to ``upload(progress=...)`` after each shard.

    >>> UploadProgress(shards_done=1, shards_total=3, annotations_applied=12, eta=2.0).shards_left
    2
    """

    shards_done: int
    shards_total: int
    annotations_applied: int
    eta: float | None = None    # seconds left; None until a shard of this run finished, or when all are done
    dry_run: bool = False       # annotations_applied: what would be applied

    @property
    def shards_left(self) -> int:
        return max(0, self.shards_total - self.shards_done)


class _Tracker:
    """Counts finished shards and tells ``progress`` (a no-op without one)."""

    def __init__(self, total: int, progress: Callable[[UploadProgress], None] | None, *, dry_run: bool) -> None:
        self.total, self.progress, self.dry_run = total, progress, dry_run
        self.done = self.sent = self.applied = 0
        self.t0 = time.monotonic()

    def start(self, resumed: Sequence[ShardResult] = ()) -> None:
        self.done, self.applied = len(resumed), sum(r.annotations_applied for r in resumed)
        self.t0 = time.monotonic()
        self._emit()

    def finished(self, r: ShardResult) -> None:
        self.done += 1
        self.sent += 1
        self.applied += r.annotations_applied
        self._emit()

    def _emit(self) -> None:
        if self.progress is None:
            return
        left = max(0, self.total - self.done)
        eta = (time.monotonic() - self.t0) / self.sent * left if self.sent and left else None
        try:
            self.progress(UploadProgress(shards_done=self.done, shards_total=self.total,
                                         annotations_applied=self.applied, eta=eta, dry_run=self.dry_run))
        except Exception as e:  # a display problem must not fail (or cancel) an upload
            log.debug("progress callback failed: %s", e)


def _journal_state(jr: Journal, key: str, shard: _Shard, *,
                   resend_unconfirmed: bool) -> tuple[ShardResult | None, str | None]:
    """(the shard's result when the journal settles it, else None; the job id to poll, else None)."""
    entry = jr.get(key)
    state = entry.get("state") if entry else None
    if entry and state == "done":
        return _shard_from_journal(entry, shard), None
    if entry and state == "unconfirmed" and not resend_unconfirmed:
        return ShardResult(index=shard.index, path=str(shard.path), status="failed",
                           errors=[f"shard {shard.index} was not sent again: {entry.get('error')}"]), None
    job = entry.get("job_id") if entry and state == "started" else None
    return None, str(job) if job else None


def _combine(shard: _Shard, label: str, parts: list[ShardResult]) -> ShardResult:
    """One ShardResult for a shard that was sent as several parts (after a 413)."""
    m = UploadResult.merge(label, parts, dry_run=False, duration=0.0)
    return ShardResult(index=shard.index, path=str(shard.path), status=m.status, activity_id=m.activity_id,
                       annotations_applied=m.annotations_applied, files_matched=m.files_matched,
                       files_not_matched=m.files_not_matched, categories_ignored=m.categories_ignored,
                       errors=m.errors, matched_by=m.matched_by, applied_source=m.applied_source,
                       files_not_matched_count=m.files_not_matched_count,
                       service_reply={"parts": [p.service_reply for p in parts]})


# ---------------------------------------------------------------------------------------------- the run
DEFAULT_WORKERS = 2
_FATAL = (AuthError, NotFoundError, UploadTimeoutError, UploadCancelledError, UsageError)


def _n_annotations(doc: Mapping[str, Any]) -> int:
    anns = doc.get("annotations")
    return len(anns) if isinstance(anns, list) else 0


def _shard_facts(r: ShardResult, doc: Mapping[str, Any], *, keeps_tags: bool) -> None:
    """What the driver knows of a shard from its document: its annotations (in all, per category) and its
    image-level tags, which no target keeps (``keeps_image_tags``) unless it says so."""
    r.annotations_in_file = _n_annotations(doc)
    names = {c.get("id"): str(c.get("name")) for c in doc.get("categories") or [] if isinstance(c, Mapping)}
    r.annotations_by_category = dict(Counter(names.get(a.get("category_id"), str(a.get("category_id")))
                                             for a in doc.get("annotations") or [] if isinstance(a, Mapping)))
    if keeps_tags:
        return
    tags: Counter[str] = Counter()
    for im in doc.get("images") or []:
        attrs = im.get("attributes") if isinstance(im, Mapping) else None
        if not isinstance(attrs, Mapping):
            continue
        seen: set[str] = set()
        for t in attrs.get("tags") or []:
            seen.add(str(t))
        choices = attrs.get("choices")
        if isinstance(choices, Mapping):
            for vals in choices.values():
                seen.update(str(v) for v in (vals if isinstance(vals, list) else [vals]))
        tags.update(seen)
    r.image_tags = dict(tags)


def _category_hints(res: UploadResult, tgt: Target) -> None:
    """For each ignored category that carries annotations, the project's category whose name differs from it
    only in case, spaces or separators (what ``push`` would reconcile it with)."""
    if not res.categories_ignored_annotations:
        return
    try:
        project = tgt.categories() or []
    except UploadError:
        return
    by_key: dict[str, list[str]] = {}
    for c in project:
        by_key.setdefault(normalize_name(c), []).append(c)
    for c in res.categories_ignored_annotations:
        hits = by_key.get(normalize_name(c), [])
        if len(hits) == 1:
            res.category_hints[c] = hits[0]


def _fail_if_nothing_applied(res: UploadResult, *, dry_run: bool = False) -> None:
    """A completed upload whose file held annotations but applied none is a failure: the user meant to change
    the project and nothing changed (a category spelled differently, names that match no image...). A dry run
    that would apply none fails the same way, so that a check before the upload says what the upload will."""
    if res.annotations_in_file == 0 or res.annotations_applied > 0:
        return
    why = []
    if res.files_matched == 0:
        why.append("no image matched a project file")
    elif res.files_not_matched:
        why.append(f"{len(res.files_not_matched)} image(s) matched no project file")
    if res.categories_ignored:
        why.append(f"the project ignored the categories {', '.join(res.categories_ignored)}")
    reason = "; ".join(why) or "the target applied none of them"
    res.status = "failed"
    fix = "If that is intended, pass " + by_face(cli="--allow-empty", python="allow_empty=True")
    res.errors.insert(0, f"none of the {res.annotations_in_file} annotations in the file would be applied "
                         f"({reason}): the upload would fail and replace nothing. {fix}" if dry_run else
                         f"none of the {res.annotations_in_file} annotations in the file were applied ({reason}); "
                         f"no pre-annotation of the project was replaced. {fix}")


def _run(coco: Any, target: str | Target, *, timeout: float | None, dry_run: bool, mode: str,
         journal: str | Path | bool | None, max_file_size: int | None, workers: int | None, wait: bool,
         allow_empty: bool, resend_unconfirmed: bool,
         cancel: threading.Event, started: float, target_options: Mapping[str, Any],
         notify: Callable[[str], None] | None,
         progress: Callable[[UploadProgress], None] | None = None) -> UploadResult:
    deadline = started + timeout if timeout is not None else None
    own = isinstance(target, str)
    tgt = parse_target(target, mode=mode, **target_options)
    workdir = Path(tempfile.mkdtemp(prefix="prelabel-upload-"))
    try:
        if max_file_size is None:   # the target's limit (Labellerr: under 25,000,000 bytes), else 25 MB
            max_file_size = int(getattr(tgt, "max_file_size", coco_io.DEFAULT_MAX_FILE_SIZE))
        shards = _prepare(coco, max_file_size=max_file_size, workdir=workdir, notify=notify)
        label = tgt.describe()
        keeps_tags = bool(getattr(tgt, "keeps_image_tags", False))
        if dry_run:   # every target resolves names and categories (with its match rules) and sends nothing
            tracker = _Tracker(len(shards), progress, dry_run=True)
            tracker.start()
            results = []
            for s in shards:
                doc = s.load()
                results.append(tgt.upload_shard(doc, index=s.index, path=s.path, dry_run=True, deadline=deadline,
                                                cancel=cancel))
                _shard_facts(results[-1], doc, keeps_tags=keeps_tags)
                del doc
                tracker.finished(results[-1])
            res = UploadResult.merge(tgt.describe(), results, dry_run=True, duration=time.monotonic() - started)
            _category_hints(res, tgt)
            if res.status == "completed" and not allow_empty:
                _fail_if_nothing_applied(res, dry_run=True)
            return res
        if journal is None:
            jpath = default_journal_path(coco) if isinstance(coco, (str, Path)) else None
        elif journal is False or journal is True:
            jpath = default_journal_path(coco) if journal and isinstance(coco, (str, Path)) else None
        else:
            jpath = Path(journal)
        if not getattr(tgt, "resumable", True):   # e.g. a Label Studio project this run creates: nothing to resume
            jpath = None
        jr = Journal(jpath)
        results_by_index: dict[int, ShardResult] = {}
        todo: list[tuple[_Shard, str, str | None]] = []
        for s in shards:
            key = Journal.key_of(label, s.digest)
            known, job = _journal_state(jr, key, s, resend_unconfirmed=resend_unconfirmed)
            if known is not None:
                results_by_index[s.index] = known
            else:
                todo.append((s, key, job))
        tracker = _Tracker(len(shards), progress, dry_run=False)
        tracker.start(list(results_by_index.values()))
        if todo:
            results_by_index.update(_send(tgt, todo, jr, deadline=deadline, cancel=cancel, wait=wait,
                                          workers=workers or int(getattr(tgt, "default_workers", DEFAULT_WORKERS)),
                                          on_result=tracker.finished, resend_unconfirmed=resend_unconfirmed,
                                          keeps_tags=keeps_tags))
        results = [results_by_index[s.index] for s in shards]
        res = UploadResult.merge(tgt.describe(), results, dry_run=False, duration=time.monotonic() - started)
        _category_hints(res, tgt)
        if res.status == "completed":
            jr.forget(label)
            if not allow_empty:
                _fail_if_nothing_applied(res)
        return res
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if own:
            tgt.close()


def _send(tgt: Target, todo: list[tuple[_Shard, str, str | None]], jr: Journal, *, deadline: float | None,
          cancel: threading.Event, wait: bool, workers: int,
          on_result: Callable[[ShardResult], None] | None = None,
          resend_unconfirmed: bool = False, keeps_tags: bool = False) -> dict[int, ShardResult]:
    two_step = callable(getattr(tgt, "start_shard", None)) and callable(getattr(tgt, "finish_shard", None))
    synchronous = bool(getattr(tgt, "synchronous", False))
    label = tgt.describe()

    def split(s: _Shard, doc: dict[str, Any], err: ShardTooLargeError) -> ShardResult:
        """A shard the server refused as too large (nothing was taken): send it as two or more parts."""
        parts = coco_io.split_shards(doc, max_file_size=max(1, s.size // 2))
        if len(parts) < 2:
            return ShardResult(index=s.index, path=str(s.path), status="failed",
                               errors=[f"{err}; shard {s.index} holds a single image and cannot be split further"])
        log.info("shard %d: %s; sending it as %d parts", s.index, err, len(parts))
        tmp = Path(tempfile.mkdtemp(prefix="prelabel-split-"))
        try:
            subs = []
            for i, part in enumerate(parts, start=1):
                data = orjson.dumps(part, option=orjson.OPT_SERIALIZE_NUMPY)
                sub = _Shard(s.index, tmp / f"{s.path.stem}-part{i}{s.path.suffix or '.json'}", shard_hash(data),
                             len(data))
                coco_io.write_json_atomic(sub.path, data)
                subs.append(sub)
            del parts
            results = []
            for sub in subs:
                skey = Journal.key_of(label, sub.digest)
                known, sjob = _journal_state(jr, skey, sub, resend_unconfirmed=resend_unconfirmed)
                results.append(known if known is not None else one(sub, skey, sjob))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return _combine(s, label, results)

    def one(s: _Shard, key: str, job: str | None) -> ShardResult:
        """Send one shard: its document is parsed here and freed once the shard is done."""
        if cancel.is_set():
            raise UploadCancelledError("upload cancelled before shard "
                                       f"{s.index} was sent; a re-run sends the rest")
        if deadline is not None and time.monotonic() >= deadline:
            raise UploadTimeoutError(f"the timeout passed before shard {s.index} was sent",
                                     hint="run the same upload again: the journal resumes where it stopped")
        doc = s.load()
        try:
            return send(s, doc, key, job)
        finally:
            del doc
            release_memory()   # the next shard's document does not stack on this one's freed pages

    def send(s: _Shard, doc: dict[str, Any], key: str, job: str | None) -> ShardResult:
        polling = False   # True while waiting for a job the server took: its errors keep the job in the journal
        try:
            if two_step:
                t: Any = tgt
                r: ShardResult | None = None
                if job is not None:
                    log.info("shard %d: polling job %s started by an earlier run", s.index, job)
                    polling = True
                    try:
                        r = t.finish_shard(job, index=s.index, path=s.path, coco=doc, deadline=deadline,
                                           cancel=cancel)
                    except NotFoundError:
                        log.info("shard %d: the server does not know job %s; sending the shard again", s.index, job)
                        job, polling = None, False
                if r is None:
                    job = str(t.start_shard(doc, index=s.index, path=s.path, deadline=deadline, cancel=cancel))
                    jr.mark_started(key, job, index=s.index)
                    if not wait and not synchronous:
                        return ShardResult(index=s.index, path=str(s.path), status="processing", activity_id=job)
                    polling = True
                    r = t.finish_shard(job, index=s.index, path=s.path, coco=doc, deadline=deadline, cancel=cancel)
            else:
                r = tgt.upload_shard(doc, index=s.index, path=s.path, dry_run=False, deadline=deadline, cancel=cancel)
        except _FATAL:
            raise
        except ShardTooLargeError as e:   # refused for its size: nothing was taken
            r = split(s, doc, e)
        except UnconfirmedUploadError as e:   # sent, reply lost: may be applied; a re-run must not resend blindly
            jr.mark_unconfirmed(key, str(e), index=s.index)
            return ShardResult(index=s.index, path=str(s.path), status="failed", errors=[str(e)],
                               annotations_in_file=_n_annotations(doc))
        except UploadError as e:
            if polling and job is not None and not isinstance(e, JobFailedError):
                # the server has the job: keep it 'started' so the re-run polls it instead of sending the file
                return ShardResult(index=s.index, path=str(s.path), status="failed", activity_id=job,
                                   errors=[f"{e}; job {job} stays in the journal: run the same upload again "
                                           "to poll it (the file is not sent again)"],
                                   annotations_in_file=_n_annotations(doc))
            # a job that failed, retries exhausted before anything was taken, a refused file: send again later
            jr.mark_failed(key, str(e), index=s.index, job_id=job)
            return ShardResult(index=s.index, path=str(s.path), status="failed", activity_id=job, errors=[str(e)],
                               annotations_in_file=_n_annotations(doc))
        _shard_facts(r, doc, keeps_tags=keeps_tags)
        if r.status == "completed":
            jr.mark_done(key, r.to_dict(), index=s.index)
        elif r.status == "failed":
            jr.mark_failed(key, "; ".join(r.errors) or "failed", index=s.index, job_id=r.activity_id)
        return r

    # a target that applies in this process (the local project: one SQLite writer) gains nothing from
    # parallel shards, and each would hold its document: one at a time
    if synchronous:
        workers = 1
    out: dict[int, ShardResult] = {}
    pool = cf.ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))), thread_name_prefix="prelabel-shard")
    futures = {pool.submit(one, s, key, job): s.index for s, key, job in todo}
    first_error: BaseException | None = None
    try:
        for f in cf.as_completed(futures):
            try:
                out[futures[f]] = f.result()
                if on_result is not None:
                    on_result(out[futures[f]])
            except BaseException as e:  # noqa: B036 - stop the other shards, re-raise the first error below
                cancel.set()
                if first_error is None:
                    first_error = e
    except BaseException:   # Ctrl-C while waiting: stop the workers at their next safe point
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)
    if first_error is not None:
        raise first_error
    return out


# ---------------------------------------------------------------------------------------------- the call
@overload
def upload(coco: str | Path | Mapping[str, Any] | Dataset, target: str | Target, *, _async: Literal[False] = ...,
           timeout: float | None = ..., dry_run: bool = ..., mode: str = ..., journal: str | Path | bool | None = ...,
           max_file_size: int | None = ..., workers: int | None = ..., wait: bool = ...,
           match: MatchRules | None = ..., images: str | Path | None = ..., create_project: str | None = ...,
           model_version: str | None = ..., notify: Callable[[str], None] | None = ...,
           progress: Callable[[UploadProgress], None] | None = ...,
           allow_empty: bool = ..., conf_bucket: str | None = ...,
           resend_unconfirmed: bool = ...) -> UploadResult: ...


@overload
def upload(coco: str | Path | Mapping[str, Any] | Dataset, target: str | Target, *, _async: Literal[True],
           timeout: float | None = ..., dry_run: bool = ..., mode: str = ..., journal: str | Path | bool | None = ...,
           max_file_size: int | None = ..., workers: int | None = ..., wait: bool = ...,
           match: MatchRules | None = ..., images: str | Path | None = ..., create_project: str | None = ...,
           model_version: str | None = ..., notify: Callable[[str], None] | None = ...,
           progress: Callable[[UploadProgress], None] | None = ...,
           allow_empty: bool = ..., conf_bucket: str | None = ...,
           resend_unconfirmed: bool = ...) -> UploadFuture: ...


def upload(coco: str | Path | Mapping[str, Any] | Dataset, target: str | Target, *, _async: bool = False,
           timeout: float | None = None, dry_run: bool = False, mode: str = "replace",
           journal: str | Path | bool | None = None, max_file_size: int | None = None,
           workers: int | None = None, wait: bool = True, match: MatchRules | None = None, images: str | Path | None = None,
           create_project: str | None = None, model_version: str | None = None,
           notify: Callable[[str], None] | None = None,
           progress: Callable[[UploadProgress], None] | None = None,
           allow_empty: bool = False, conf_bucket: str | None = None,
           resend_unconfirmed: bool = False) -> UploadResult | UploadFuture:
    """Upload COCO pre-annotations to a target (see the module docstring).

    ``match``: optional file-name rules (:class:`~prelabel.upload.match.MatchRules`: case, extension, prefixes
    to strip, a name map). ``images``, ``create_project``, ``model_version``: Label Studio options (see
    :func:`parse_target`). ``notify``: called with a line for the user when a file is split into shards.
    ``progress``: called with an :class:`UploadProgress` as shards finish (see the module docstring).

    ``mode``: ``replace`` (the uploaded annotations of an image replace its pre-annotations) or ``append``
    (local projects). ``journal``: None = the default path beside a COCO file, False = none, or a path.
    ``wait=False``: return once every shard was sent (status ``processing``, job ids in ``activity_id`` and the
    journal) instead of waiting for the jobs; a later run of the same upload polls them.

    ``allow_empty``: an upload whose file holds annotations but applies none of them (a category spelled
    differently from the project's, names that match no image) returns status ``failed`` with the reason,
    unless this is True. In ``replace`` mode, an image's pre-annotations are only replaced by annotations that
    are applied to it, so such an upload changes nothing in the project either way.

    ``workers`` and ``max_file_size`` default to the target's (``default_workers``, ``max_file_size``
    attributes): Labellerr one shard at a time, cut under 25,000,000 bytes; the others 2 and 25 MB.
    ``conf_bucket`` (Labellerr: ``low``, ``medium``, ``high``). ``resend_unconfirmed``: send again the shards
    an earlier run sent without a usable reply (they may have been applied: the journal keeps them
    ``unconfirmed`` and a re-run does not send them unless this is True).
    """
    if mode not in ("replace", "append"):
        raise UsageError(f"mode must be 'replace' or 'append', not {mode!r}")
    if workers is not None and workers < 1:
        raise UsageError("workers must be at least 1")
    if timeout is not None and timeout <= 0:
        raise UsageError("timeout must be positive (seconds)")
    started = time.monotonic()
    cancel = threading.Event()
    target_options = {"match": match, "images": images, "create_project": create_project,
                      "model_version": model_version, "conf_bucket": conf_bucket}
    kw: dict[str, Any] = {"timeout": timeout, "dry_run": dry_run, "mode": mode, "journal": journal,
                          "max_file_size": max_file_size, "workers": workers, "wait": wait, "cancel": cancel,
                          "started": started, "target_options": target_options, "notify": notify,
                          "progress": progress, "allow_empty": allow_empty,
                          "resend_unconfirmed": resend_unconfirmed}
    if not _async:
        try:
            return _run(coco, target, **kw)
        except KeyboardInterrupt:
            cancel.set()
            raise
    fut = UploadFuture(cancel)
    run_in_thread(fut, lambda: _run(coco, target, **kw), name="prelabel-upload")
    return fut


def run_in_thread(fut: cf.Future[T], fn: Callable[[], T], *, name: str) -> cf.Future[T]:
    """``fut``, returned at once, given the result or the exception of ``fn()``, which runs on a thread of its own
    called ``name`` (not a daemon: the program waits for it). ``fn`` does not run if ``fut`` was cancelled first."""
    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as e:  # noqa: B036 - delivered to the caller through the Future
            fut.set_exception(e)
        else:
            fut.set_result(result)

    threading.Thread(target=run, name=name, daemon=False).start()
    return fut
