"""The resume journal: which shards of an upload a target has started, finished or failed.

One JSON file (written atomically after every change) keyed by ``<target>|<sha256 of the shard's bytes>``:

- ``started`` with the server's job id: the shard was sent; a re-run polls that job instead of sending again;
- ``done`` with the shard's result: the server reported the job completed; a re-run skips the shard;
- ``failed`` with the message: a re-run sends the shard again (the target proved nothing was applied: it
  refused the file, or its job failed);
- ``unconfirmed`` with the message: the shard was sent but the reply was lost (a read timeout, a dropped
  connection, a 500 after the file was taken): it may have been applied, so a re-run does not send it again
  unless told to (``resend_unconfirmed=True``, ``--resend-unconfirmed``).

A shard is marked ``done`` only after the server reported its job completed, so a crash or Ctrl-C at any point
leaves either nothing applied for the shard, or a job id that the next run polls: nothing is applied twice.
The journal never holds credentials (the key names the target by its display form). The driver drops a
target's entries once every shard completed (and deletes the file when it is empty).

Example:
    >>> import tempfile, pathlib
    >>> j = Journal(pathlib.Path(tempfile.mkdtemp()) / "out.json.upload-journal.json")
    >>> k = j.key("local:/p", b'{"images": []}')
    >>> j.mark_started(k, "job-1", index=1)
    >>> Journal(j.path).get(k)["job_id"]
    'job-1'
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from ..converters.coco import write_json_atomic
from ..errors import UsageError

__all__ = ["Journal", "default_journal_path", "shard_hash"]

VERSION = 1


def shard_hash(data: bytes) -> str:
    """The sha256 of a shard's bytes."""
    return hashlib.sha256(data).hexdigest()


def default_journal_path(coco_path: str | Path) -> Path:
    """``out.json`` -> ``out.json.upload-journal.json`` (for shards ``out-001.json``: beside the first one)."""
    p = Path(coco_path)
    return p.with_name(p.name + ".upload-journal.json")


class Journal:
    """A thread-safe, atomically written record of shard states (see the module docstring)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                doc = orjson.loads(self.path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as e:
                raise UsageError(f"the upload journal {self.path} is unreadable: {e}",
                                 hint="delete it to start the upload from scratch") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
                raise UsageError(f"the upload journal {self.path} is not a prelabel journal",
                                 hint="delete it to start the upload from scratch")
            self.entries = {str(k): dict(v) for k, v in doc["entries"].items() if isinstance(v, dict)}

    @staticmethod
    def key(target: str, data: bytes) -> str:
        return Journal.key_of(target, shard_hash(data))

    @staticmethod
    def key_of(target: str, digest: str) -> str:
        """The key of a shard whose content hash (:func:`shard_hash`) is ``digest``."""
        return f"{target}|{digest}"

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            e = self.entries.get(key)
            return dict(e) if e is not None else None

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"version": VERSION, "entries": self.entries}
        write_json_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    def _set(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            entry["updated"] = round(time.time(), 3)
            self.entries[key] = entry
            self._save()

    def mark_started(self, key: str, job_id: str, *, index: int) -> None:
        self._set(key, {"state": "started", "job_id": job_id, "index": index})

    def mark_done(self, key: str, result: dict[str, Any], *, index: int) -> None:
        self._set(key, {"state": "done", "job_id": result.get("activity_id"), "index": index, "result": result})

    def mark_failed(self, key: str, message: str, *, index: int, job_id: str | None = None) -> None:
        self._set(key, {"state": "failed", "job_id": job_id, "index": index, "error": message})

    def mark_unconfirmed(self, key: str, message: str, *, index: int) -> None:
        self._set(key, {"state": "unconfirmed", "job_id": None, "index": index, "error": message})

    def forget(self, target: str) -> None:
        """Drop the entries of ``target`` (every shard completed); delete the file when nothing is left."""
        with self._lock:
            self.entries = {k: v for k, v in self.entries.items() if not k.startswith(f"{target}|")}
            if self.path is None:
                return
            if self.entries:
                self._save()
            else:
                self.path.unlink(missing_ok=True)
