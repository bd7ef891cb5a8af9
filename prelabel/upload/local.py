"""The local project: an annotation project on disk, the embedded default target (``local:DIR``).

A project is a folder holding ``project.sqlite3`` (stdlib sqlite3, WAL, busy timeout) and ``inbox/``:

- ``assets``: the images under the images root given at ``init`` (file names relative to it, forward slashes,
  sizes read from the headers with :mod:`prelabel.imagesize`);
- ``categories``: the project's schema (empty until given, or until the first upload brings its categories);
- ``annotations``: the current pre-annotations, one row per object, tied to the activity that applied it;
- ``activities``: one row per upload (id, times, mode, counts, status, metadata JSON);
- ``meta``: project id, images root, and the hashed credentials that ``prelabel serve`` checks.

An upload runs the five steps of the platform: **receive** (the file is copied into ``inbox/`` and an activity
is recorded with status ``processing``), **validate** (COCO rules; categories the project does not know are
``categories_ignored`` and their annotations are not applied), **resolve** file names with
:mod:`prelabel.upload.match`, **apply** in ONE transaction (``BEGIN IMMEDIATE``: two processes uploading at once
are serialized, never mixed), and **return** a status. In ``replace`` mode (the default) the annotations applied
to an image replace the image's pre-annotations; an image none of whose annotations is applied (an ignored
category, ...) keeps its pre-annotations. ``append`` adds to them. Applying an activity that is
no longer ``processing`` does nothing, so an activity is applied at most once.

Example:
    >>> import tempfile, pathlib, struct, zlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> (tmp / "imgs").mkdir()
    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 64, 48) + bytes(5)
    >>> _ = (tmp / "imgs" / "a.png").write_bytes(png)
    >>> project, summary = LocalProject.init(tmp / "proj", images=tmp / "imgs", categories=["cat"])
    >>> summary["assets"], project.categories()
    (1, ['cat'])
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
    ...         "categories": [{"id": 1, "name": "cat"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12,
    ...                          "iscrowd": 0, "segmentation": []}]}
    >>> import orjson
    >>> act = project.process(project.receive(orjson.dumps(coco), source="a.json"))
    >>> act["status"], act["counts"]["annotations_applied"]
    ('completed', 1)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import unicodedata
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..adapters.names import read_names
from ..converters import coco as coco_io
from ..converters import reconcile
from ..errors import JobFailedError, NotFoundError, PrelabelError, UsageError
from ..imagesize import image_sizes
from ..model import Dataset
from ..paths import IMAGE_EXTENSIONS
from .base import ShardResult, UnmatchedFile
from .credentials import Credentials
from .match import MatchRules
from .resolve import resolve_shard

__all__ = ["DB_NAME", "MODES", "LocalProject", "LocalTarget", "load_schema_names", "project_init"]

DB_NAME = "project.sqlite3"
INBOX = "inbox"
MODES = ("replace", "append")
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    id INTEGER PRIMARY KEY, file_name TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS categories (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, supercategory TEXT NOT NULL DEFAULT '',
    keypoints TEXT, skeleton TEXT);
CREATE TABLE IF NOT EXISTS activities (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, finished_at TEXT, kind TEXT NOT NULL, status TEXT NOT NULL,
    mode TEXT NOT NULL, source TEXT NOT NULL, sha256 TEXT NOT NULL, counts TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY, asset_id INTEGER NOT NULL REFERENCES assets(id),
    category_id INTEGER NOT NULL REFERENCES categories(id),
    x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL, area REAL, iscrowd INTEGER NOT NULL,
    score REAL, segmentation TEXT, keypoints TEXT, attributes TEXT, activity_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS annotations_asset ON annotations(asset_id);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json(v: Any) -> str | None:
    return None if v is None else orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _digest(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}\0{value}".encode()).hexdigest()


def load_schema_names(path: str | Path) -> list[str]:
    """Category names from a schema file: the reconciliation step's loader when it offers one, else a COCO
    file or categories list (JSON), a Label Studio config (XML), or a names file (.txt / data.yaml)."""
    p = Path(path)
    loader = getattr(reconcile, "load_schema", None)
    if callable(loader):
        schema = loader(p)
        names = _names_of(schema)
        if names is not None:
            return names
    if p.suffix.lower() == ".json":
        doc = coco_io.load(p)
        cats = doc.get("categories") if isinstance(doc, dict) else doc
        names = _names_of(cats)
        if names is None:
            raise UsageError(f"{p}: expected a COCO file or a JSON list of categories")
        return names
    return read_names(p)


def _names_of(schema: Any) -> list[str] | None:
    if isinstance(schema, Mapping) and "categories" in schema:
        schema = schema["categories"]
    if isinstance(schema, pd.DataFrame) and "name" in schema:
        return [str(n) for n in schema["name"]]
    if isinstance(schema, Mapping):
        return [str(k) for k in schema]
    if isinstance(schema, (list, tuple)):
        out = []
        for c in schema:
            if isinstance(c, Mapping) and "name" in c:
                out.append(str(c["name"]))
            elif isinstance(c, str):
                out.append(c)
            elif hasattr(c, "name"):
                out.append(str(c.name))
            else:
                return None
        return out
    return None


def _scan_images(images: Path) -> tuple[list[str], list[Path]]:
    found: list[tuple[str, Path]] = []
    for p in images.rglob("*"):
        rel = p.relative_to(images)
        if any(part.startswith(".") for part in rel.parts) or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.is_file():
            found.append((unicodedata.normalize("NFC", rel.as_posix()), p))
    found.sort()
    return [r for r, _ in found], [p for _, p in found]


class LocalProject:
    """A project on disk (see the module docstring). Open an existing one with ``LocalProject(DIR)``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        if not self.db_path.is_file():
            raise NotFoundError(f"no prelabel project in {self.root} (no {DB_NAME})",
                                hint=f"create one with: prelabel project init {self.root} --images IMGDIR")
        meta = self.meta()
        self.project_id = meta.get("project_id", "")
        self.images_root = Path(meta.get("images_root", ""))

    def __repr__(self) -> str:
        return f"LocalProject({str(self.root)!r}, project_id={self.project_id!r})"

    # ------------------------------------------------------------------ connections
    @staticmethod
    def _connect(db_path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: takes the write lock first, so writers queue)."""
        with self._immediate(self.db_path) as conn:
            yield conn

    @classmethod
    @contextmanager
    def _immediate(cls, db_path: Path) -> Iterator[sqlite3.Connection]:
        conn = cls._connect(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect(self.db_path)
        try:
            yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------ creation
    @classmethod
    def init(cls, root: str | Path, *, images: str | Path, categories: Sequence[str] | None = None,
             project_id: str | None = None) -> tuple[LocalProject, dict[str, Any]]:
        """Create a project in ``root`` for the images under ``images`` (or update one: new images and new
        categories are added). Returns the project and a summary of what was added."""
        root, img_root = Path(root), Path(images)
        if not img_root.is_dir():
            raise UsageError(f"--images {img_root}: not a folder")
        rels, paths = _scan_images(img_root)
        sizes = image_sizes(paths)
        unreadable = [r for r, s in zip(rels, sizes, strict=True) if s is None]
        rows = [(r, s[0], s[1], p.stat().st_size) for r, p, s in zip(rels, paths, sizes, strict=True) if s]
        root.mkdir(parents=True, exist_ok=True)
        (root / INBOX).mkdir(exist_ok=True)
        setup = cls._connect(root / DB_NAME)
        try:
            setup.execute("PRAGMA journal_mode = WAL")
            setup.executescript(_SCHEMA)
        finally:
            setup.close()
        with cls._immediate(root / DB_NAME) as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            abs_root = str(img_root.resolve())
            if meta and meta.get("images_root") != abs_root:
                raise UsageError(f"{root} is already a project for the images in {meta.get('images_root')}",
                                 hint="use another project folder")
            new = not meta
            if new:
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                    ("project_id", project_id or uuid.uuid4().hex[:16]), ("images_root", abs_root),
                    ("created_at", _now()), ("schema_version", "1"), ("salt", secrets.token_hex(16))])
            before = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
            conn.executemany("INSERT OR IGNORE INTO assets (file_name, width, height, bytes) VALUES (?, ?, ?, ?)",
                             rows)
            added = conn.execute("SELECT count(*) FROM assets").fetchone()[0] - before
            conn.executemany("INSERT OR IGNORE INTO categories (name) VALUES (?)",
                             [(c,) for c in dict.fromkeys(categories or [])])
        project = cls(root)
        summary = {"created": new, "assets": len(project.assets()), "assets_added": added,
                   "unreadable": unreadable, "categories": project.categories(), "project_id": project.project_id}
        return project, summary

    # ------------------------------------------------------------------ reading
    def meta(self) -> dict[str, str]:
        with self.reader() as c:
            return dict(c.execute("SELECT key, value FROM meta").fetchall())

    def categories(self) -> list[str]:
        with self.reader() as c:
            return [r[0] for r in c.execute("SELECT name FROM categories ORDER BY id")]

    def assets(self) -> list[str]:
        with self.reader() as c:
            return [r[0] for r in c.execute("SELECT file_name FROM assets ORDER BY id")]

    @staticmethod
    def _activity_row(row: Sequence[Any]) -> dict[str, Any]:
        keys = ("id", "created_at", "finished_at", "kind", "status", "mode", "source", "sha256")
        d = dict(zip(keys, row[:8], strict=True))
        d["counts"] = json.loads(row[8])
        d["metadata"] = json.loads(row[9])
        return d

    _ACT_COLS = "id, created_at, finished_at, kind, status, mode, source, sha256, counts, metadata"

    def activity(self, activity_id: str) -> dict[str, Any]:
        with self.reader() as c:
            row = c.execute(f"SELECT {self._ACT_COLS} FROM activities WHERE id = ?", (activity_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no activity {activity_id} in the project {self.root}")
        return self._activity_row(row)

    def activities(self) -> list[dict[str, Any]]:
        with self.reader() as c:
            rows = c.execute(f"SELECT {self._ACT_COLS} FROM activities ORDER BY rowid").fetchall()
        return [self._activity_row(r) for r in rows]

    def status(self) -> dict[str, Any]:
        """Counts of the project: assets, categories, pre-annotations (per category), activities by status."""
        with self.reader() as c:
            n_assets = c.execute("SELECT count(*) FROM assets").fetchone()[0]
            n_ann = c.execute("SELECT count(*) FROM annotations").fetchone()[0]
            n_annotated = c.execute("SELECT count(DISTINCT asset_id) FROM annotations").fetchone()[0]
            per_cat = dict(c.execute("SELECT c.name, count(a.id) FROM categories c LEFT JOIN annotations a "
                                     "ON a.category_id = c.id GROUP BY c.id ORDER BY c.id").fetchall())
            by_status = dict(c.execute("SELECT status, count(*) FROM activities GROUP BY status "
                                       "ORDER BY status").fetchall())
        return {"project_id": self.project_id, "root": str(self.root), "images_root": str(self.images_root),
                "assets": n_assets, "annotated_assets": n_annotated, "annotations": n_ann,
                "categories": per_cat, "activities": by_status}

    def existing(self, assets: Sequence[str]) -> tuple[int, int]:
        """``(pre-annotations, images holding any)`` among the assets named: what a replace of them removes."""
        with self.reader() as c:
            c.execute("CREATE TEMP TABLE wanted (file_name TEXT PRIMARY KEY)")
            c.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(a,) for a in assets])
            n, m = c.execute("SELECT count(a.id), count(DISTINCT a.asset_id) FROM annotations a "
                             "JOIN assets s ON s.id = a.asset_id JOIN wanted w ON w.file_name = s.file_name"
                             ).fetchone()
        return int(n), int(m)

    # ------------------------------------------------------------------ credentials (for prelabel serve)
    def set_credentials(self, creds: Credentials) -> None:
        """Store the credentials ``prelabel serve`` accepts (hashed with the project's salt, never in clear)."""
        salt = self.meta()["salt"]
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
                ("api_key_sha256", _digest(salt, creds.api_key)),
                ("api_secret_sha256", _digest(salt, creds.api_secret)),
                ("client_id_sha256", _digest(salt, creds.client_id))])

    def has_credentials(self) -> bool:
        return "api_secret_sha256" in self.meta()

    def check_credentials(self, *, api_key: str, api_secret: str, client_id: str) -> bool:
        meta = self.meta()
        salt = meta["salt"]
        ok = True
        for field_name, value in (("api_key", api_key), ("api_secret", api_secret), ("client_id", client_id)):
            want = meta.get(f"{field_name}_sha256")
            ok = want is not None and hmac.compare_digest(want, _digest(salt, value)) and ok
        return ok

    # ------------------------------------------------------------------ the five steps
    def receive(self, data: bytes, *, source: str, mode: str = "replace", kind: str = "pre-annotations",
                match: MatchRules | None = None, exact: bool = False) -> str:
        """Step 1: copy the file into the inbox and record an activity (status ``processing``); returns its id.

        ``match``: the optional file-name rules (case, extension, prefixes, name map) the resolve step applies;
        kept in the activity's metadata. ``exact``: match file names exactly and case-sensitively, by no other
        rule (as Labellerr does: ``prelabel serve``)."""
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        aid = str(uuid.uuid4())
        coco_io.write_json_atomic(self.root / INBOX / f"{aid}.json", data)
        meta: dict[str, Any] = {"match": match.to_dict()} if match is not None and match.active else {}
        if exact:
            meta["exact"] = True
        with self.transaction() as c:
            c.execute("INSERT INTO activities (id, created_at, kind, status, mode, source, sha256, counts, metadata) "
                      "VALUES (?, ?, ?, 'processing', ?, ?, ?, '{}', ?)",
                      (aid, _now(), kind, mode, source, hashlib.sha256(data).hexdigest(), _json(meta)))
        return aid

    def process(self, activity_id: str, *, fail: str | None = None,
                doc: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Steps 2 to 5 for a received activity, in one transaction; returns the activity record.

        An activity that is already ``completed`` or ``failed`` is returned as it is (never applied twice).
        ``fail`` forces the job to fail with that message (fault injection for tests). ``doc``: the received
        file already parsed by the caller in this process (it is not parsed again from the inbox).
        """
        with self.transaction() as c:
            row = c.execute("SELECT status, mode, metadata FROM activities WHERE id = ?", (activity_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no activity {activity_id} in the project {self.root}")
            status, mode, raw_meta = row
            if status == "processing":
                meta_in = json.loads(raw_meta or "{}")
                rules = MatchRules.from_dict(meta_in.get("match"))
                c.execute("SAVEPOINT apply")
                try:
                    counts, metadata = self._apply(c, activity_id, mode, fail, rules, doc,
                                                   exact=bool(meta_in.get("exact")))
                    status = "completed"
                except PrelabelError as e:
                    c.execute("ROLLBACK TO apply")
                    counts, metadata, status = {}, {"activity_id": activity_id, "error": str(e)}, "failed"
                c.execute("RELEASE apply")
                c.execute("UPDATE activities SET status = ?, finished_at = ?, counts = ?, metadata = ? WHERE id = ?",
                          (status, _now(), _json(counts), _json(metadata), activity_id))
        return self.activity(activity_id)

    def _apply(self, c: sqlite3.Connection, aid: str, mode: str, fail: str | None, rules: MatchRules,
               given: Mapping[str, Any] | None, *, exact: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        if fail:
            raise JobFailedError(fail)
        doc = given if given is not None else coco_io.load(self.root / INBOX / f"{aid}.json")
        res = coco_io.validate(doc)
        if not res.ok:
            raise JobFailedError(f"invalid COCO: {len(res.errors)} problem(s): {res.errors[0]}")
        proj = dict(c.execute("SELECT name, id FROM categories").fetchall())
        if not proj:  # no schema yet: the first upload brings it
            c.executemany("INSERT OR IGNORE INTO categories (name, supercategory, keypoints, skeleton) "
                          "VALUES (?, ?, ?, ?)",
                          [(str(k["name"]), str(k.get("supercategory") or ""), _json(k.get("keypoints")),
                            _json(k.get("skeleton"))) for k in doc["categories"]])
            proj = dict(c.execute("SELECT name, id FROM categories").fetchall())
        asset_ids = dict(c.execute("SELECT file_name, id FROM assets").fetchall())
        r = resolve_shard(doc, assets=list(asset_ids), categories=list(proj), match=rules, exact=exact)
        cat_map = {int(k["id"]): proj[str(k["name"])] for k in doc["categories"] if str(k["name"]) in proj}
        anns = doc["annotations"]

        def rows() -> Iterator[tuple[Any, ...]]:
            """The rows to insert, made as SQLite takes them: never a list of the whole shard's rows."""
            for i in r.keep:
                a = anns[i]
                x, y, w, h = (float(v) for v in a["bbox"])
                seg = a.get("segmentation")
                yield (asset_ids[r.image_asset[int(a["image_id"])]], cat_map[int(a["category_id"])], x, y, w, h,
                       a.get("area"), int(a.get("iscrowd", 0)), a.get("score"), _json(seg) if seg else None,
                       _json(a.get("keypoints")), _json(a.get("attributes")), aid)

        replaced = images_replaced = 0
        if mode == "replace":   # only the images that receive an annotation: skipped ones keep theirs
            for aid_ in sorted({asset_ids[n] for n in r.applied_assets}):
                n = c.execute("DELETE FROM annotations WHERE asset_id = ?", (aid_,)).rowcount
                replaced += n
                images_replaced += n > 0
        c.executemany("INSERT INTO annotations (asset_id, category_id, x, y, w, h, area, iscrowd, score, "
                      "segmentation, keypoints, attributes, activity_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      rows())
        counts = {"images": len(doc["images"]), "annotations": len(anns), "annotations_applied": len(r.keep),
                  "annotations_replaced": replaced, "images_replaced": images_replaced,
                  "files_matched": r.files_matched,
                  "files_not_matched": len(r.unmatched), "annotations_skipped_unmatched": r.skipped_unmatched,
                  "annotations_skipped_category": r.skipped_category}
        metadata = {"activity_id": aid, "files_not_updated": [u.name for u in r.unmatched],
                    "questions_ignored": r.categories_ignored, "matched_by": r.how,
                    "files_not_matched": [asdict(u) for u in r.unmatched]}
        if rules.active:
            metadata["match"] = rules.to_dict()
        return counts, metadata

    # ------------------------------------------------------------------ export
    def to_dataset(self) -> Dataset:
        """The project's assets, categories and current pre-annotations as a Dataset."""
        with self.reader() as c:
            assets = pd.read_sql_query("SELECT id, file_name, width, height FROM assets ORDER BY id", c)
            cats = pd.read_sql_query("SELECT id, name, supercategory, keypoints, skeleton FROM categories "
                                     "ORDER BY id", c)
            anns = pd.read_sql_query("SELECT a.asset_id, c.name AS category, a.x, a.y, a.w, a.h, a.iscrowd, a.score, "
                                     "a.segmentation, a.keypoints, a.attributes FROM annotations a "
                                     "JOIN categories c ON c.id = a.category_id ORDER BY a.asset_id, a.id", c)
        pos = pd.Series(np.arange(len(assets), dtype=np.int64), index=assets["id"].to_numpy())

        def parsed(col: pd.Series) -> list[Any]:
            return [orjson.loads(v) if isinstance(v, (str, bytes)) else None for v in col.tolist()]

        segs = [None if s is None else (s if isinstance(s, dict) else [np.asarray(p, dtype=np.float64) for p in s])
                for s in parsed(anns["segmentation"])]
        kps = [None if k is None else np.asarray(k, dtype=np.float64).reshape(-1, 3) for k in parsed(anns["keypoints"])]
        images = {"file_name": assets["file_name"].tolist(), "width": assets["width"].to_numpy(),
                  "height": assets["height"].to_numpy(),
                  "path": [str(self.images_root / f) for f in assets["file_name"].tolist()]}
        categories = {"name": cats["name"].tolist(), "supercategory": cats["supercategory"].tolist(),
                      "keypoints": parsed(cats["keypoints"]), "skeleton": parsed(cats["skeleton"]),
                      "id": pd.array(cats["id"].to_numpy(), dtype="Int64")}
        annotations = {"image": pos.loc[anns["asset_id"].to_numpy()].to_numpy(), "category": anns["category"].tolist(),
                       "x": anns["x"].to_numpy(dtype=np.float64), "y": anns["y"].to_numpy(dtype=np.float64),
                       "w": anns["w"].to_numpy(dtype=np.float64), "h": anns["h"].to_numpy(dtype=np.float64),
                       "iscrowd": anns["iscrowd"].to_numpy(dtype=np.int8),
                       "score": pd.to_numeric(anns["score"]).to_numpy(dtype=np.float64, na_value=np.nan),
                       "segmentation": segs, "keypoints": kps, "attributes": parsed(anns["attributes"]),
                       "src_file": [str(self.db_path)] * len(anns)}
        return Dataset.build(images=images, categories=categories, annotations=annotations)

    def export(self, out: str | Path, *, max_file_size: int = coco_io.DEFAULT_MAX_FILE_SIZE) -> list[Path]:
        """Write the current pre-annotations as COCO (all assets, the project's category ids)."""
        return coco_io.write(self.to_dataset(), out, max_file_size=max_file_size)


def project_init(root: str | Path, *, images: str | Path, categories: Sequence[str] | None = None,
                 project_id: str | None = None) -> LocalProject:
    """Create a local project in ``root`` for the images under ``images`` (or update one: new images and
    categories are added) and return it; upload to it with ``local:ROOT``. ``LocalProject.init`` does the same
    and also returns a summary of what was added.

    >>> import tempfile, pathlib
    >>> p = project_init(pathlib.Path(tempfile.mkdtemp()) / "proj", images="sample_data/images",
    ...                  categories=["cat", "dog"])
    >>> p.categories(), len(p.assets())
    (['cat', 'dog'], 5)
    """
    return LocalProject.init(root, images=images, categories=categories, project_id=project_id)[0]


def shard_result(act: Mapping[str, Any], *, index: int, path: str) -> ShardResult:
    """A ShardResult from a local activity record."""
    counts, meta = act.get("counts") or {}, act.get("metadata") or {}
    unmatched = [UnmatchedFile(name=u["name"], closest=list(u.get("closest") or []), why=u.get("why", ""),
                               hint=str(u.get("hint") or ""))
                 for u in meta.get("files_not_matched") or []]
    errors = [str(meta["error"])] if meta.get("error") else []
    return ShardResult(index=index, path=path, status=str(act["status"]), activity_id=str(act["id"]),
                       annotations_applied=int(counts.get("annotations_applied", 0)),
                       files_matched=int(counts.get("files_matched", 0)), files_not_matched=unmatched,
                       categories_ignored=list(meta.get("questions_ignored") or []), errors=errors,
                       matched_by={str(k): int(v) for k, v in (meta.get("matched_by") or {}).items()},
                       annotations_replaced=_int_or_none(counts.get("annotations_replaced")),
                       images_replaced=_int_or_none(counts.get("images_replaced")))


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


class LocalTarget:
    """``local:DIR``: uploads into a :class:`LocalProject` in this process (one transaction per shard).

    ``mode="replace"`` (default): the uploaded annotations of an image replace its pre-annotations;
    ``"append"`` adds them. ``match``: the optional file-name rules (:class:`~prelabel.upload.match.MatchRules`).
    """

    synchronous = True   # the work happens in finish_shard, in this process: --async cannot leave it to a server

    def __init__(self, root: str | Path, *, mode: str = "replace", match: MatchRules | None = None) -> None:
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.project = LocalProject(root)
        self.mode = mode
        self.match = match or MatchRules()

    def __repr__(self) -> str:
        return f"LocalTarget({self.describe()!r}, mode={self.mode!r})"

    def describe(self) -> str:
        return f"local:{self.project.root}"

    def categories(self) -> list[str] | None:
        return self.project.categories() or None

    def assets(self) -> list[str]:
        return self.project.assets()

    def start_shard(self, coco: dict[str, Any], *, index: int, path: Path, deadline: float | None,
                    cancel: threading.Event) -> str:
        return self.project.receive(Path(path).read_bytes(), source=Path(path).name, mode=self.mode,
                                    match=self.match)

    def finish_shard(self, job_id: str, *, index: int, path: Path, coco: dict[str, Any] | None,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        return shard_result(self.project.process(job_id, doc=coco), index=index, path=str(path))

    def upload_shard(self, coco: dict[str, Any], *, index: int, path: Path, dry_run: bool,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        if dry_run:
            r = resolve_shard(coco, assets=self.assets(), categories=self.categories(), match=self.match)
            res = r.shard_result(index=index, path=str(path))
            if self.mode == "replace":
                res.annotations_replaced, res.images_replaced = self.project.existing(r.applied_assets)
            else:
                res.annotations_replaced = res.images_replaced = 0
            return res
        job = self.start_shard(coco, index=index, path=path, deadline=deadline, cancel=cancel)
        return self.finish_shard(job, index=index, path=path, coco=coco, deadline=deadline, cancel=cancel)

    def close(self) -> None:
        return None
