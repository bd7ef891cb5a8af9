"""Remote inputs and outputs through fsspec: ``s3://``, ``gs://``, ``https://``, ``zip://``, ``memory://``, ...

The adapters read local files. A remote source is first *localized*: :func:`localize` copies it into a
temporary folder in the same relative layout, downloading the annotation files whole (``.txt``, ``.xml``,
``.json``, ``.yaml``, ... see :data:`ANNOTATION_EXTENSIONS`) and writing, for every image file, a local
stand-in holding only its first 64 KiB (:data:`prelabel.imagesize.HEADER_BYTES`), fetched with one ranged read
per image (``fs.cat_ranges``: concurrent on S3, GCS and HTTP). That is enough for :mod:`prelabel.imagesize`;
pixels are never downloaded. A JPEG whose size marker lies past the first 64 KiB (a large EXIF thumbnail) gets
one more ranged read, up to 1 MiB. Other files (videos, archives, ``.npy``, ...) are not fetched at all.
The normal adapter then reads the local copy; COCO ``file_name``\\ s are relative, so the output is
byte-identical to reading the same dataset from a local folder. Afterwards the dataset's image ``path`` column
and the report's sources name the remote URLs, not the deleted temporary files.

Outputs (the COCO file or its shards, the report) are written to a local temporary folder and uploaded with
``fs.put_file`` beside the given URL.

URLs: anything fsspec understands, including chained URLs. A dataset folder inside a zip is
``zip://yolo::/path/data.zip`` (or ``zip://yolo::file:///path/data.zip``, or ``zip://yolo::s3://bucket/data.zip``;
the root of the archive is ``zip://::/path/data.zip``). Paths without a protocol (and ``file://``) are local
and never localized.

Credentials and endpoints come from the usual places: for S3 the ``AWS_*`` variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` for MinIO, moto or
another S3-compatible server), fsspec's own ``FSSPEC_<PROTOCOL>_<OPTION>`` variables
(``FSSPEC_S3_ENDPOINT_URL``), and per call ``storage_options`` (CLI: ``--storage-option endpoint_url=...``,
repeatable; values are JSON when they parse as JSON, else strings). For a chained URL the options go to the
inner (remote) file system.

Example:
    >>> import fsspec
    >>> from prelabel.storage import is_url, localize
    >>> fs = fsspec.filesystem("memory")
    >>> fs.pipe("/doc/ds/labels/a.txt", b"0 0.5 0.5 0.2 0.2\\n")
    >>> fs.pipe("/doc/ds/images/a.png", b"\\x89PNG\\r\\n\\x1a\\n" + bytes(100_000))
    >>> is_url("memory://doc/ds"), is_url("sample_data/yolo")
    (True, False)
    >>> with localize("memory://doc/ds") as loc:
    ...     sorted(p.relative_to(loc.path).as_posix() for p in loc.path.rglob("*.*"))
    ...     (loc.path / "images" / "a.png").stat().st_size, loc.stats["headers"]
    ['images/a.png', 'labels/a.txt']
    (65536, 1)
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import adapters
from .adapters.base import ReadOptions
from .errors import ReadError, UsageError
from .imagesize import HEADER_BYTES, size_from_bytes
from .paths import IMAGE_EXTENSIONS, safe_relative
from .report import Diagnostic, Report

__all__ = ["ANNOTATION_EXTENSIONS", "JPEG_MAX_HEADER", "Localized", "is_url", "localize", "parse_storage_options",
           "put_files", "upload_written", "url_to_fs", "write_outputs"]

ANNOTATION_EXTENSIONS = frozenset({
    ".txt", ".xml", ".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".names", ".data", ".csv", ".tsv",
    ".parquet", ".pq",
})
JPEG_MAX_HEADER = 1024 * 1024  # a JPEG's SOF marker is looked for this far when not in the first 64 KiB
_BATCH = 512  # ranged reads / downloads per fsspec call (bounds memory, keeps the requests concurrent)
_IMG_EXT = frozenset(IMAGE_EXTENSIONS)
# a folder given as the source whose images live in a sibling folder (YOLO labels/ -> images/, VOC)
_SIBLING_IMAGES = {"labels": "images", "annotations": "JPEGImages"}
# a source file that refers to the files around it (YOLO data.yaml, Darknet obj.data, YOLO list or label files)
_DATASET_FILES = frozenset({".yaml", ".yml", ".data", ".txt"})


# ---------------------------------------------------------------------------------------------- URLs
def is_url(path: Any) -> bool:
    """True for a string naming a non-local fsspec URL (``s3://b/k``, ``zip://x::/d.zip``, ``memory://x``).

    ``Path`` objects, plain paths and ``file://`` URLs are local.

    >>> is_url("s3://bucket/yolo"), is_url("file:///tmp/x"), is_url("C:\\\\data"), is_url(None)
    (True, False, False, False)
    """
    if not isinstance(path, str) or ("://" not in path and "::" not in path):
        return False
    from fsspec.utils import get_protocol

    return get_protocol(path) not in ("file", "local")


def _local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def parse_storage_options(items: Iterable[str]) -> dict[str, Any]:
    """``["endpoint_url=http://127.0.0.1:9000", "anon=true"]`` -> ``{"endpoint_url": ..., "anon": True}``.

    Values that parse as JSON (numbers, ``true``, objects) are taken as such, the rest as strings.

    >>> parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "anon=true",
    ...                        'client_kwargs={"region_name": "eu-west-1"}'])
    {'endpoint_url': 'http://127.0.0.1:9000', 'anon': True, 'client_kwargs': {'region_name': 'eu-west-1'}}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--storage-option {item!r}: expected KEY=VALUE",
                             hint="for example --storage-option endpoint_url=http://127.0.0.1:9000")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def url_to_fs(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec file system and the path inside it for ``url``; ``storage_options`` go to the remote layer."""
    import fsspec

    opts = dict(storage_options or {})
    if "::" in url and opts:
        inner = [fsspec.utils.get_protocol(part) for part in url.split("::")[1:]]
        opts = {p: dict(opts) for p in inner if p not in ("file", "local")}
    try:
        fs, path = fsspec.core.url_to_fs(url, **opts)
    except ImportError as e:
        raise UsageError(f"{url}: {e}", hint="install the file system's package, e.g. pip install 'prelabel[s3]'") \
            from None
    except (ValueError, TypeError, OSError) as e:
        raise ReadError(url, f"cannot open: {e}") from None
    return fs, str(path)


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class Localized:
    """A remote source copied to a local folder: ``path`` is what to give the adapter.

    Use it as a context manager (or call :meth:`cleanup`): the temporary folder is removed at the end.
    """

    url: str
    path: Path
    workdir: Path
    remote_root: str = ""         # the URL that ``local_root`` stands for
    local_root: Path | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"files": 0, "file_bytes": 0, "headers": 0,
                                                             "header_bytes": 0, "skipped": 0})

    def __enter__(self) -> Localized:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def to_url(self, local: str) -> str:
        """The remote URL of a local path under this copy (other strings are returned as they are)."""
        if self.local_root is None:
            return local
        root = str(self.local_root)
        if local == root:
            return self.remote_root
        if local.startswith(root + os.sep):
            return self.remote_root.rstrip("/") + "/" + local[len(root) + 1:].replace(os.sep, "/")
        return local


def join_url(url: str, rel: str) -> str:
    """``url`` with ``rel`` appended to its path (the path of the outermost layer of a chained URL)."""
    head, sep, tail = url.partition("::")
    return head.rstrip("/") + "/" + rel + sep + tail


def localize(url: str, *, kind: str = "source", storage_options: Mapping[str, Any] | None = None,
             select: Callable[[str], bool] | None = None, placeholders: bool = False,
             workdir: str | Path | None = None) -> Localized:
    """Copy the source at ``url`` into a local temporary folder (see the module docstring).

    ``kind``: ``"source"`` (annotation files whole, image stand-ins, other files skipped) or ``"images"`` (an
    images root: image stand-ins only). A file URL is downloaded whole; a ``.yaml``, ``.data`` or ``.txt`` file
    (a YOLO data.yaml, obj.data, image list or label file) brings its whole folder, and ``path`` is the file. A folder named ``labels*`` or
    ``Annotations`` also brings its sibling ``images`` / ``JPEGImages`` folder (image stand-ins), where the
    YOLO and VOC adapters look for the images.

    ``select(rel)`` restricts what is fetched to the paths (relative to the temporary folder, ``yolo/labels/a.txt``)
    it accepts (used by the Dask engine, whose workers each fetch their own part); with ``placeholders`` the
    images it rejects still get an empty local file, so folder listings are complete. ``workdir`` is where the temporary folder goes (default: the
    system's temporary folder).
    """
    if kind not in ("source", "images"):
        raise UsageError(f"localize: unknown kind {kind!r}", hint="use 'source' or 'images'")
    fs, root = url_to_fs(url, storage_options)
    root = root.rstrip("/")
    tmp = Path(tempfile.mkdtemp(prefix="prelabel-remote-", dir=workdir))
    base = posixpath.basename(root) or "data"
    loc = Localized(url=url, path=tmp / base, workdir=tmp, remote_root=url, local_root=tmp / base)
    try:
        if _says(fs.isfile, root) and kind == "source" and posixpath.splitext(root)[1].lower() in _DATASET_FILES:
            # a data.yaml, obj.data or list file names files around it: bring its folder, point at the file
            loc.cleanup()
            parent = localize(_parent_url(url), kind=kind, storage_options=storage_options, select=select,
                              placeholders=placeholders, workdir=workdir)
            parent.url, parent.path = url, parent.path / posixpath.basename(root)
            return parent
        if _says(fs.isfile, root):
            info = fs.info(root)
            _fetch_whole(fs, [(root, loc.path, int(info.get("size") or 0))], loc, url)
            return loc
        if not _says(fs.isdir, root):
            raise ReadError(url, "no such file or folder")
        whole, heads = _plan(fs, root, tmp, base, kind=kind, select=select, placeholders=placeholders, loc=loc)
        low = base.lower()
        sib = _SIBLING_IMAGES.get("labels" if low.startswith("labels") else low)
        if kind == "source" and sib is not None:
            sib_root = posixpath.join(posixpath.dirname(root), sib)
            if sib_root != root and _says(fs.isdir, sib_root):
                more = _plan(fs, sib_root, tmp, sib, kind="images", select=select, placeholders=placeholders,
                             loc=loc)
                whole, heads = whole + more[0], heads + more[1]
                loc.local_root, loc.remote_root = tmp, _parent_url(url)  # the URLs of both folders
        _fetch_whole(fs, whole, loc, url)
        _fetch_headers(fs, heads, loc)
    except BaseException:
        loc.cleanup()
        raise
    return loc


def _parent_url(url: str) -> str:
    """The URL of the folder holding ``url`` (the outermost layer's path loses its last component)."""
    head, sep, tail = url.partition("::")
    proto, colon, rest = head.partition("://")
    if not colon:
        proto, rest = "", head
    rest = rest.rstrip("/")
    parent = rest.rsplit("/", 1)[0] if "/" in rest else ""
    return (f"{proto}://{parent}" if colon else parent) + sep + tail


def _says(check: Callable[[str], Any], path: str) -> bool:
    """``check(path)`` (a file system's ``isfile`` or ``isdir``) as a bool: False when the file system cannot tell."""
    try:
        return bool(check(path))
    except (OSError, ValueError):
        return False


Job = tuple[str, Path, int]  # remote path, local destination, size in bytes


def _plan(fs: Any, root: str, tmp: Path, base: str, *, kind: str, select: Callable[[str], bool] | None,
          placeholders: bool, loc: Localized) -> tuple[list[Job], list[Job]]:
    """(whole files, image headers) to fetch from the folder ``root`` into ``tmp / base``; ``select`` sees
    paths relative to ``tmp`` (``base/...``)."""
    try:
        found = fs.find(root, detail=True)
    except (OSError, ValueError) as e:
        raise ReadError(loc.url, f"cannot list: {e}") from None
    whole: list[Job] = []
    heads: list[Job] = []
    prefix = root + "/" if root else ""
    for path in sorted(found):
        info = found[path]
        if info.get("type", "file") != "file":
            continue
        p = str(path)
        raw_rel = p[len(prefix):] if p.startswith(prefix) else posixpath.relpath(p, root or "/")
        rel = safe_relative(raw_rel)
        if rel is None or rel.startswith("../"):
            loc.stats["skipped"] += 1  # a key such as 'a/../../x' would escape the folder: never written
            continue
        ext = posixpath.splitext(rel)[1].lower()
        size = int(info.get("size") or 0)
        key = f"{base}/{rel}"
        target = tmp / key
        if ext in _IMG_EXT:
            if select is None or select(key):
                heads.append((p, target, size))
            elif placeholders:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            continue
        if kind == "source" and ext in ANNOTATION_EXTENSIONS and (select is None or select(key)):
            whole.append((p, target, size))
        else:
            loc.stats["skipped"] += 1
    return whole, heads


def _batches(items: Sequence[Job]) -> Iterator[Sequence[Job]]:
    for i in range(0, len(items), _BATCH):
        yield items[i:i + _BATCH]


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        f.write(data)


def _fetch_whole(fs: Any, jobs: Sequence[Job], loc: Localized, url: str) -> None:
    for batch in _batches(jobs):
        paths = [j[0] for j in batch]
        try:
            got = fs.cat(paths, on_error="return") if len(paths) > 1 else {paths[0]: fs.cat_file(paths[0])}
        except (OSError, ValueError) as e:
            raise ReadError(url, f"cannot download: {e}") from None
        for path, target, _ in batch:
            data = got.get(path)
            if not isinstance(data, bytes):
                raise ReadError(path, f"cannot download: {data}")
            _write(target, data)
            loc.stats["files"] += 1
            loc.stats["file_bytes"] += len(data)


def _fetch_headers(fs: Any, jobs: Sequence[Job], loc: Localized) -> None:
    for batch in _batches(jobs):
        todo = [j for j in batch if j[2] > 0]
        for _, target, size in batch:
            if size <= 0:
                _write(target, b"")
        if not todo:
            continue
        ends = [min(size, HEADER_BYTES) for _, _, size in todo]
        try:
            got = fs.cat_ranges([j[0] for j in todo], [0] * len(todo), ends, on_error="return")
        except (OSError, ValueError) as e:
            raise ReadError(loc.url, f"cannot read image headers: {e}") from None
        for (path, target, size), data in zip(todo, got, strict=True):
            if not isinstance(data, bytes):
                raise ReadError(path, f"cannot read the image header: {data}")
            if size > len(data) and data[:2] == b"\xff\xd8" and size_from_bytes(data) is None:
                try:  # the JPEG's SOF marker lies beyond the first 64 KiB: read on, still not the whole file
                    data = data + fs.cat_file(path, start=len(data), end=min(size, JPEG_MAX_HEADER))
                except (OSError, ValueError) as e:
                    raise ReadError(path, f"cannot read the image header: {e}") from None
            _write(target, data)
            loc.stats["headers"] += 1
            loc.stats["header_bytes"] += len(data)


# ---------------------------------------------------------------------------------------------- outputs
def put_files(local: Sequence[str | Path], url: str, *,
              storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Upload local files into the folder of the file URL ``url`` (same base names); returns their URLs."""
    fs, path = url_to_fs(url, storage_options)
    folder = posixpath.dirname(path.rstrip("/"))
    out: list[str] = []
    url_folder = _parent_url(url)
    for p in local:
        name = os.path.basename(os.fspath(p))
        remote = posixpath.join(folder, name) if folder else name
        try:
            if folder:
                with contextlib.suppress(OSError, ValueError, NotImplementedError):
                    fs.makedirs(folder, exist_ok=True)
            fs.put_file(os.fspath(p), remote)
        except (OSError, ValueError) as e:
            raise ReadError(url, f"cannot upload {name}: {e}") from None
        out.append(join_url(url_folder, name))
    return out


@contextlib.contextmanager
def write_outputs(*targets: str | Path | None) -> Iterator[list[Any]]:
    """Local paths for output ``targets``: a URL becomes a file in a temporary folder of its own (upload it,
    and its shards, with :func:`upload_written` inside the ``with``); other targets are returned as they are.
    """
    tmp = Path(tempfile.mkdtemp(prefix="prelabel-out-"))
    try:
        local: list[Any] = []
        for i, t in enumerate(targets):
            if is_url(t):
                d = tmp / str(i)
                d.mkdir()
                local.append(d / (posixpath.basename(str(t).split("::")[0].rstrip("/")) or "out.json"))
            else:
                local.append(_local_path(t) if isinstance(t, str) else t)
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def upload_written(local: str | Path, url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Upload everything written in ``local``'s folder (the file and its shards) beside ``url``."""
    folder = Path(local).parent
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return put_files(files, url, storage_options=storage_options)


# ---------------------------------------------------------------------------------------------- reading
def read_source(src: str | Path, *, fmt: str | None = None, options: Any = None,
                storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read one source whose path (or ``options.images``) may be a URL: localize, run the adapter, relabel.

    Returns the adapter's :class:`~prelabel.model.Dataset` with image paths and report sources naming the URLs.
    """
    opts = options or ReadOptions()
    with contextlib.ExitStack() as stack:
        locs: list[Localized] = []
        if is_url(src):
            loc = stack.enter_context(localize(str(src), storage_options=storage_options))
            locs.append(loc)
            local = loc.path
        else:
            local = Path(_local_path(src) if isinstance(src, str) else src)
        if is_url(opts.images):
            iloc = stack.enter_context(localize(str(opts.images), kind="images", storage_options=storage_options))
            locs.append(iloc)
            opts = replace(opts, images=iloc.path)
        adapter = adapters.get(fmt or adapters.detect(local))
        report = Report()
        report.input = {"format": adapter.NAME, "source": str(src)}
        ds = adapter.read(local, options=opts, report=report)
        return relabel(ds, locs)


def relabel(ds: Any, locs: Sequence[Localized]) -> Any:
    """Make ``ds`` name the remote URLs instead of the local copies in ``locs`` (image paths, source files,
    report diagnostics and ledger sources); COCO ``file_name``\\ s are relative and stay as they are."""
    roots = [(str(loc.local_root), loc) for loc in locs if loc.local_root is not None]
    workdirs = [(str(loc.workdir), loc) for loc in locs]
    if not roots:
        return ds

    def fix(text: Any) -> Any:
        if not isinstance(text, str) or not any(w in text for w, _ in workdirs):
            return text
        for root, loc in roots:
            if root in text:
                text = text.replace(root, loc.remote_root.rstrip("/"))
        return text

    def fix_column(col: pd.Series) -> pd.Series:
        if not len(col):
            return col
        hit = col.map(lambda v: isinstance(v, str) and any(w in v for w, _ in workdirs))
        if not hit.any():
            return col
        out = col.copy()
        out[hit] = col[hit].map(fix)
        return out

    images = ds.images.copy()
    images["path"] = fix_column(images["path"])
    images["src_file"] = fix_column(images["src_file"])
    anns = ds.annotations
    if len(anns) and anns["src_file"].map(lambda v: isinstance(v, str) and v.startswith(tuple(w for w, _ in
                                                                                             workdirs))).any():
        anns = anns.copy()
        anns["src_file"] = fix_column(anns["src_file"])
    out = ds.replace(images=images, annotations=anns)
    rep = out.report
    rep.diagnostics = [Diagnostic(d.code, fix(d.source), fix(d.message), d.severity) for d in rep.diagnostics]
    for frames in (rep._drops, rep._changes):
        for i, f in enumerate(frames):
            if "source" in f.columns:
                frames[i] = f.assign(source=fix_column(f["source"].astype(object)),
                                     message=fix_column(f["message"].astype(object)) if "message" in f.columns
                                     else None)
    return out
